//! Benchmarks of the naming hot paths: reading and showing a realistic 50-entry dtab,
//! binding and explaining a path through a chain of five rewrites that ends at a static
//! namer, and reading a typical `l5d-dtab` override header.
//!
//! Run with `cargo bench --bench naming`. No timing is asserted.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::Arc;

use criterion::Criterion;
use plexus::naming::{
    Activity, Address, Dtab, NameTree, Namers, Path, StaticNamer, SystemNamer, local_dtab,
};

/// The path bound through the chain, with a residual.
const CHAIN_PATH: &str = "/svc/web/api/v1";

/// A realistic 50-entry router dtab: per-service host entries (some with weighted
/// canaries, some with fail-over alternatives), wildcards, and a five-step chain
/// `/svc/web -> /host/web -> /srv/web -> /rollout/web-v1 -> /dc/east/web-v1 ->
/// /#/io.l5d.fs/web-v1` spread across it.
fn router_dtab_text() -> String {
    let mut entries: Vec<String> = vec![
        "/ph=>/$/io.buoyant.rinet".into(),
        "/svc=>/ph/80".into(),
        "/svc=>/$/io.buoyant.porthostPfx/ph".into(),
        "/k8s=>/#/io.l5d.k8s".into(),
        "/portNsSvc=>/#/portNsSvcToK8s".into(),
        "/host=>/portNsSvc/http/default".into(),
        "/host=>/portNsSvc/http".into(),
        "/svc/*=>/$/io.buoyant.http.domainToPathPfx/host".into(),
        "/svc=>/host".into(),
        "/srv=>/rollout".into(),
        "/rollout=>/dc/west".into(),
        "/dc/west=>/#/io.l5d.k8s/west/http".into(),
        "/dc/east=>/#/io.l5d.fs".into(),
        "/rollout/web-v1=>/dc/east/web-v1 | /dc/west/web-v1".into(),
    ];
    let mut i = 0;
    while entries.len() < 48 {
        entries.push(match i % 6 {
            0 => format!("/host/svc{i}=>0.9*/srv/svc{i}-v1 & 0.1*/srv/svc{i}-v2"),
            1 => format!("/host/svc{i}=>/srv/svc{i}-canary | /srv/svc{i}-v1 | /$/fail"),
            2 => format!("/host/svc{i}/*=>/srv/svc{i}"),
            3 => format!("/srv/svc{i}=>(/dc/east | /dc/west) & 0.25*/dc/backup"),
            4 => format!("/host/svc{i}=>~"),
            _ => format!("/host/svc{i}=>/$/inet/10.0.{}.{}/8080", i / 256, i % 256),
        });
        i += 1;
    }
    entries.push("/host/web=>/srv/web".into());
    entries.push("/srv/web=>/rollout/web-v1".into());
    assert_eq!(entries.len(), 50);
    entries.join(";\n")
}

fn namers() -> Namers {
    let fs = Path::from_strs(["#", "io.l5d.fs"]);
    let mut services = BTreeMap::new();
    for (i, name) in ["web-v1", "web-v2", "api", "auth", "users"]
        .into_iter()
        .enumerate()
    {
        let addrs = (0..3u8)
            .map(|h| Address::new(SocketAddr::from(([10, 1, i as u8, h], 8080))))
            .collect();
        services.insert(Path::from_strs([name]), addrs);
    }
    Namers::new(SystemNamer::default())
        .mount(fs.clone(), Arc::new(StaticNamer::new(fs, 1, services)))
}

fn main() {
    let text = router_dtab_text();
    let dtab = Dtab::read(&text).expect("the bench dtab parses");
    assert_eq!(dtab.len(), 50);
    let namers = namers();
    let path = Path::read(CHAIN_PATH).expect("a valid path");

    // The chain must really end at the static namer, with the residual kept.
    match namers.bind(&dtab, &path) {
        Activity::Ok(NameTree::Leaf(bound)) => {
            assert_eq!(bound.id.show(), "/#/io.l5d.fs/web-v1");
            assert_eq!(bound.residual.show(), "/api/v1");
        }
        other => panic!("unexpected binding: {other:?}"),
    }

    let header = b"/svc/web=>/srv/web-v2;/host/api=>0.9*/srv/api-v1 & 0.1*/srv/api-v2";
    let ctx = b"/host/users=>/srv/users-canary | /srv/users";
    let headers: [(&str, &[u8]); 3] = [
        ("l5d-ctx-dtab", &ctx[..]),
        ("content-type", b"application/json"),
        ("l5d-dtab", &header[..]),
    ];
    assert_eq!(local_dtab(headers).expect("valid headers").len(), 3);

    let mut c = Criterion::default().configure_from_args();

    c.bench_function("dtab_read_50_entries", |b| {
        b.iter(|| Dtab::read(black_box(&text)))
    });
    c.bench_function("dtab_show_50_entries", |b| {
        b.iter(|| black_box(&dtab).show())
    });
    c.bench_function("dtab_lookup_50_entries", |b| {
        b.iter(|| black_box(&dtab).lookup(black_box(&path)))
    });
    c.bench_function("bind_5_rewrites_to_static_namer", |b| {
        b.iter(|| namers.bind(black_box(&dtab), black_box(&path)))
    });
    c.bench_function("delegate_5_rewrites_to_json", |b| {
        b.iter(|| {
            namers
                .delegate(black_box(&dtab), black_box(&path))
                .map(|t| t.to_json())
        })
    });
    c.bench_function("local_dtab_override_header", |b| {
        b.iter(|| local_dtab(black_box(headers)))
    });

    c.final_summary();
}
