//! The three measurements, each a set of targets started together and measured in
//! interleaved rounds ([`crate::rounds`]):
//!
//! - `grpc`: gRPC unary calls (h2load) straight to the helloworld World server and
//!   through one Plexus h2 router, with Plexus and the server sharing a core, and with
//!   Plexus on a core of its own; for reference, through nghttpx (a bare HTTP/2 proxy
//!   in C) and the bench's own bare forwarder on `h2`, with and without Linkerd's
//!   headers ([`crate::forward`]).
//! - `mesh`: HTTP/1.1 (wrk) through the two-hop path of the per-host mesh (outgoing
//!   router on 127.0.1.1, incoming router on 127.0.2.1, then the backend), with the
//!   hop in HTTP/1.1, upgraded to HTTP/2 (`peerUpgrades: [h2]`), in TLS, and both.
//! - `tls`: one router in front of the backend, plain and with TLS, on keep-alive
//!   connections (wrk) and with a new connection, so a full handshake, per request.
//! - `thrift`: serial Thrift calls straight to the Thrift helloworld, through one
//!   thrift router, and through two Plexus peers with the hop in plain Thrift and
//!   upgraded to one Mux session (`peerUpgrades: [mux]`).

use std::net::SocketAddr;
use std::path::Path;

use anyhow::Context;

use crate::connect::ConnectSpec;
use crate::procs::{self, BackendKind, Proc};
use crate::rounds::{Counted, Load, Target, run_rounds};
use crate::setup::{self, CERT_NAME, Certs, Ready};
use crate::{LOAD_CPU, SERVER_CPU, Settings, forward, grpc};

/// A measured section: its targets with their samples, and what the report says
/// about how it was measured and what was found.
pub(crate) struct Section {
    pub(crate) title: &'static str,
    /// How it was measured, one line each.
    pub(crate) method: Vec<String>,
    pub(crate) targets: Vec<Target>,
    /// Checks and goals, one line each.
    pub(crate) findings: Vec<String>,
}

/// What every section needs.
pub(crate) struct Ctx<'a> {
    pub(crate) settings: &'a Settings,
    pub(crate) plexus: &'a Path,
    /// A second Plexus measured beside the first in the gRPC section
    /// (`PLEXUS_BENCH_BASELINE`), and its name in the tables
    /// (`PLEXUS_BENCH_BASELINE_LABEL`, default `plexus-base`).
    pub(crate) baseline: Option<(&'a Path, &'a str)>,
    pub(crate) dir: &'a Path,
}

fn counted(role: &'static str, proc: &Proc, plexus: bool) -> Counted {
    Counted {
        role,
        pid: proc.pid(),
        plexus,
    }
}

fn free_addr(ip: &str) -> anyhow::Result<SocketAddr> {
    Ok(format!("{ip}:{}", procs::free_port()?).parse()?)
}

fn wrk_load(settings: &Settings, url: String) -> Load {
    Load::Wrk {
        url,
        headers: Vec::new(),
        conns: settings.conns,
    }
}

/// The measured rounds of a section, with every process checked afterwards.
fn measure(ctx: &Ctx<'_>, name: &str, targets: &mut [Target]) -> anyhow::Result<()> {
    let s = ctx.settings;
    run_rounds(
        name,
        targets,
        s.rounds,
        s.round_secs(),
        s.warmup_secs,
        s.load_cpu(),
    )
}

/// gRPC unary, direct and through one h2 router.
pub(crate) fn grpc(ctx: &Ctx<'_>, helloworld: &Path) -> anyhow::Result<Section> {
    let s = ctx.settings;
    let dir = ctx.dir.join("grpc");
    std::fs::create_dir_all(&dir)?;
    let body = dir.join("request.bin");
    grpc::write_body(&body)?;
    // Where the server runs in each layout; Plexus always has CPU 1 (SERVER_CPU).
    let layouts: Vec<(&str, &str, Option<usize>)> = if s.pin {
        vec![
            ("shared core", "shared", Some(SERVER_CPU)),
            ("own core", "own", Some(LOAD_CPU)),
        ]
    } else {
        vec![("unpinned", "unpinned", None)]
    };
    let mut servers = Vec::new();
    let mut targets = Vec::new();
    let mut addrs = Vec::new();
    for (label, slug, server_cpu) in layouts {
        let world_addr = free_addr("127.0.0.1")?;
        let world = setup::start_world(
            helloworld,
            &format!("world-{slug}"),
            world_addr,
            server_cpu,
            &dir,
        )?;
        let disco = dir.join(format!("disco-{slug}"));
        std::fs::create_dir_all(&disco)?;
        std::fs::write(
            disco.join("helloworld.World"),
            format!("{} {}\n", world_addr.ip(), world_addr.port()),
        )?;
        let h2 = |a: SocketAddr| Load::H2load {
            url: format!("http://{a}{}", grpc::PATH),
            body: body.clone(),
            conns: s.h2_conns,
            streams: s.h2_streams,
        };
        let direct_index = targets.len();
        targets.push(Target::new(
            format!("direct ({label})"),
            h2(world_addr),
            vec![counted("server", &world, false)],
            &dir,
        )?);
        addrs.push(world_addr);
        let binaries = std::iter::once(("plexus", ctx.plexus))
            .chain(ctx.baseline.map(|(bin, name)| (name, bin)));
        for (name, bin) in binaries {
            let addr = free_addr("127.0.0.1")?;
            let config = format!(
                "namers:\n- kind: io.l5d.fs\n  rootDir: {}\n\
                 routers:\n- protocol: h2\n  label: grpc\n  dtab: /svc => /#/io.l5d.fs;\n\
                 \x20 identifier:\n    kind: io.l5d.header.path\n    segments: 1\n\
                 \x20 servers:\n  - ip: {}\n    port: {}\n",
                disco.display(),
                addr.ip(),
                addr.port()
            );
            let p = setup::start_plexus(
                bin,
                &format!("{name}-{slug}"),
                "127.0.0.1",
                &config,
                s.server_cpu(),
                &dir,
                &Ready::Grpc(addr),
            )?;
            let mut through = Target::new(
                format!("{name} h2 ({label})"),
                h2(addr),
                vec![
                    counted("plexus", &p.proc, true),
                    counted("server", &world, false),
                ],
                &dir,
            )?;
            through.reference = Some(direct_index);
            through.procs.push(p.proc);
            targets.push(through);
            addrs.push(addr);
        }
        // References, not goals: what a bare HTTP/2 proxy in C reaches in the layout,
        // and the bench's bare forwarder on `h2`, plain and with Linkerd's headers.
        for (name, role, file, headers) in [
            ("nghttpx h2", "nghttpx", "nghttpx", None),
            ("h2 forwarder", "forwarder", "forward", Some(false)),
            (
                "h2 forwarder + l5d headers",
                "forwarder",
                "forward-l5d",
                Some(true),
            ),
        ] {
            let addr = free_addr("127.0.0.1")?;
            let file = format!("{file}-{slug}");
            let proxy = match headers {
                None => setup::start_nghttpx(&file, addr, world_addr, s.server_cpu(), &dir)?,
                Some(headers) => {
                    forward::start(&file, addr, world_addr, headers, s.server_cpu(), &dir)?
                }
            };
            let mut reference = Target::new(
                format!("{name} ({label})"),
                h2(addr),
                vec![
                    counted(role, &proxy, false),
                    counted("server", &world, false),
                ],
                &dir,
            )?;
            reference.reference = Some(direct_index);
            reference.procs.push(proxy);
            targets.push(reference);
            addrs.push(addr);
        }
        servers.push(world);
    }
    measure(ctx, "grpc", &mut targets)?;
    let mut findings = Vec::new();
    for (t, addr) in targets.iter_mut().zip(&addrs) {
        let a = grpc::call(*addr).with_context(|| format!("calling {} after the runs", t.name))?;
        t.note = format!(
            "after the runs: HTTP {}, grpc-status {}, message {:?}",
            a.status,
            a.grpc_status.as_deref().unwrap_or("none"),
            String::from_utf8_lossy(a.message.get(2..).unwrap_or_default())
        );
    }
    for through in &targets {
        let Some(direct) = through.reference.and_then(|i| targets.get(i)) else {
            continue;
        };
        let of_medians = crate::report::median_rps(through) / crate::report::median_rps(direct);
        let (ratio, lo, hi) = crate::report::paired_ratio(through, direct);
        let verdict = if !through.counted.iter().any(|c| c.plexus) {
            "(reference)"
        } else if ratio >= 0.7 {
            "**met**"
        } else {
            "**not met**"
        };
        findings.push(format!(
            "{}: {:.0} % of direct throughput, the median of the rounds' own ratios \
             ({:.0}–{:.0} %; {:.0} % from the two medians) (goal ≥ 70 %; Linkerd 1.x \
             reached 18 %): {verdict}",
            through.name,
            100.0 * ratio,
            100.0 * lo,
            100.0 * hi,
            100.0 * of_medians,
        ));
    }
    for mut p in servers {
        p.check_alive()?;
    }
    Ok(Section {
        title: "gRPC unary through one h2 router",
        method: vec![
            format!(
                "Server: `helloworld -protocol grpc -text world` (tonic), method `{}`, \
                 empty request (a 5-byte gRPC frame), answer `world!`.",
                grpc::PATH
            ),
            "Plexus: one `protocol: h2` router, identifier `io.l5d.header.path` \
             (segments 1), `io.l5d.fs` namer, dtab `/svc => /#/io.l5d.fs;`."
                .into(),
            format!(
                "Load: `h2load -t1 -c{} -m{} -D<secs>`, POST with `content-type: \
                 application/grpc` and `te: trailers`, closed loop. Each target is also \
                 called once with a gRPC client that checks `grpc-status: 0`.",
                s.h2_conns, s.h2_streams
            ),
            if s.pin {
                format!(
                    "Layouts: *shared core*: the server and Plexus share CPU {SERVER_CPU}, \
                     h2load has CPU {LOAD_CPU} (as in the HTTP/1.1 proxy bench); *own core*: \
                     Plexus alone on CPU {SERVER_CPU}, the server and h2load share CPU \
                     {LOAD_CPU}. Plexus runs one worker either way."
                )
            } else {
                "Nothing pinned.".into()
            },
        ],
        targets,
        findings,
    })
}

/// The two-hop mesh path, with and without the HTTP/2 upgrade and TLS on the hop.
pub(crate) fn mesh(ctx: &Ctx<'_>, certs: &Certs) -> anyhow::Result<Section> {
    let s = ctx.settings;
    let dir = ctx.dir.join("mesh");
    std::fs::create_dir_all(&dir)?;
    let backend_port = procs::free_port()?;
    let mut backend = procs::start_backend(
        BackendKind::Hyper,
        s.backend_threads,
        backend_port,
        s.server_cpu(),
        &dir,
    )?;
    let mut targets = vec![Target::new(
        "direct",
        wrk_load(s, format!("http://127.0.0.1:{backend_port}/")),
        vec![counted("backend", &backend, false)],
        &dir,
    )?];
    let variants = [
        ("HTTP/1.1", "h1", false, false),
        ("HTTP/2 (peerUpgrades: [h2])", "h2", true, false),
        ("HTTP/1.1 in TLS", "h1-tls", false, true),
        ("HTTP/2 in TLS (peerUpgrades: [h2])", "h2-tls", true, true),
    ];
    let mut incoming_addrs = Vec::new();
    let mut admins = Vec::new();
    for (label, slug, h2, tls) in variants {
        let inc = free_addr("127.0.2.1")?;
        let server_tls = if tls {
            format!("    tls: {}\n", certs.server_yaml())
        } else {
            String::new()
        };
        let incoming = setup::start_plexus(
            ctx.plexus,
            &format!("incoming-{slug}"),
            "127.0.2.1",
            &format!(
                "routers:\n- protocol: http\n  label: incoming\n\
                 \x20 dtab: /svc => /$/inet/127.0.0.1/{backend_port};\n\
                 \x20 servers:\n  - ip: {}\n    port: {}\n{server_tls}",
                inc.ip(),
                inc.port()
            ),
            s.server_cpu(),
            &dir,
            &if tls {
                Ready::Listening(inc)
            } else {
                Ready::Http(inc)
            },
        )?;
        let mut client = String::new();
        if h2 || tls {
            client.push_str("  client:\n");
        }
        if h2 {
            client.push_str("    peerUpgrades: [h2]\n");
        }
        if tls {
            client.push_str(&format!("    tls: {}\n", certs.client_yaml()));
        }
        let out = free_addr("127.0.1.1")?;
        let outgoing = setup::start_plexus(
            ctx.plexus,
            &format!("outgoing-{slug}"),
            "127.0.1.1",
            &format!(
                "routers:\n- protocol: http\n  label: outgoing\n\
                 \x20 dtab: /svc => /$/inet/{}/{};\n{client}\
                 \x20 servers:\n  - ip: {}\n    port: {}\n",
                inc.ip(),
                inc.port(),
                out.ip(),
                out.port()
            ),
            s.server_cpu(),
            &dir,
            &Ready::Http(out),
        )?;
        let mut t = Target::new(
            format!("two hops, {label}"),
            wrk_load(s, format!("http://{out}/")),
            vec![
                counted("outgoing", &outgoing.proc, true),
                counted("incoming", &incoming.proc, true),
                counted("backend", &backend, false),
            ],
            &dir,
        )?;
        t.reference = Some(0);
        incoming_addrs.push(inc);
        admins.push((incoming.admin, outgoing.admin));
        t.procs.push(outgoing.proc);
        t.procs.push(incoming.proc);
        targets.push(t);
    }
    measure(ctx, "mesh", &mut targets)?;
    backend.check_alive()?;
    let mut findings = Vec::new();
    for ((t, inc), (admin, out_admin)) in targets[1..].iter_mut().zip(&incoming_addrs).zip(&admins)
    {
        let m = setup::metrics(*admin)?;
        let key = |k: &str| format!("rt/incoming/server/{}/{}/{k}", inc.ip(), inc.port());
        let h2 = setup::metric(&m, &key("protocol/h2/requests"));
        let h1 = setup::metric(&m, &key("protocol/http/1.1/requests"));
        let tls = setup::metric(&m, &key("tls/connections"));
        let state = setup::http_get(*out_admin, "/client_state.json").unwrap_or_default();
        let negotiated = serde_json::from_str::<serde_json::Value>(&state)
            .ok()
            .and_then(|v| {
                v.as_object()?
                    .values()
                    .find_map(|c| c["protocols"][inc.to_string()].as_str().map(String::from))
            })
            .unwrap_or_else(|| "none listed".into());
        t.note = format!(
            "incoming saw {h2:.0} h2 and {h1:.0} HTTP/1.1 requests, {tls:.0} TLS \
             connections; outgoing's client_state: {negotiated}"
        );
        findings.push(format!("{}: {}", t.name, t.note));
    }
    Ok(Section {
        title: "Two-hop mesh path (outgoing → incoming → backend)",
        method: vec![
            "Backend: the HTTP/1.1 hyper server of the proxy bench (`GET /` → 12 bytes). \
             wrk sends HTTP/1.1 keep-alive to the outgoing router."
                .into(),
            "Outgoing router on 127.0.1.1, dtab `/svc => /$/inet/127.0.2.1/<port>;`; \
             incoming router on 127.0.2.1, dtab to the backend. TLS: certificates from \
             `plexus tls init` / `plexus tls issue --dns plexus-bench` (ECDSA P-256), \
             `tls:` on the incoming server and the outgoing client."
                .into(),
            format!(
                "Load: `wrk -t1 -c{} -d<secs>s --latency`. Pinning: wrk on CPU {LOAD_CPU}; \
                 both Plexus processes and the backend share CPU {SERVER_CPU}, so every \
                 microsecond of either hop costs throughput.",
                s.conns
            ),
        ],
        targets,
        findings,
    })
}

/// TLS cost on one router: keep-alive requests and new connections, plain and TLS.
pub(crate) fn tls(ctx: &Ctx<'_>, certs: &Certs) -> anyhow::Result<Section> {
    let s = ctx.settings;
    let dir = ctx.dir.join("tls");
    std::fs::create_dir_all(&dir)?;
    let backend_port = procs::free_port()?;
    let mut backend = procs::start_backend(
        BackendKind::Hyper,
        s.backend_threads,
        backend_port,
        s.server_cpu(),
        &dir,
    )?;
    let router = |addr: SocketAddr, tls: &str| {
        format!(
            "routers:\n- protocol: http\n  label: incoming\n\
             \x20 dtab: /svc => /$/inet/127.0.0.1/{backend_port};\n\
             \x20 servers:\n  - ip: {}\n    port: {}\n{tls}",
            addr.ip(),
            addr.port()
        )
    };
    let plain_addr = free_addr("127.0.0.1")?;
    let mut plain = setup::start_plexus(
        ctx.plexus,
        "plain",
        "127.0.0.1",
        &router(plain_addr, ""),
        s.server_cpu(),
        &dir,
        &Ready::Http(plain_addr),
    )?;
    let tls_addr = free_addr("127.0.0.1")?;
    let mut tls = setup::start_plexus(
        ctx.plexus,
        "tls",
        "127.0.0.1",
        &router(tls_addr, &format!("    tls: {}\n", certs.server_yaml())),
        s.server_cpu(),
        &dir,
        &Ready::Listening(tls_addr),
    )?;
    let with_backend = |p: &Proc| {
        vec![
            counted("plexus", p, true),
            counted("backend", &backend, false),
        ]
    };
    let connect = |addr: SocketAddr, tls: bool| {
        Load::Connect(ConnectSpec {
            addr,
            tls: tls.then(|| (certs.ca.clone(), CERT_NAME.to_string())),
            concurrency: s.connect_conns,
        })
    };
    let mut targets = vec![
        Target::new(
            "keep-alive, plain",
            wrk_load(s, format!("http://{plain_addr}/")),
            with_backend(&plain.proc),
            &dir,
        )?,
        Target::new(
            "keep-alive, TLS",
            wrk_load(s, format!("https://{tls_addr}/")),
            with_backend(&tls.proc),
            &dir,
        )?,
        Target::new(
            "new connection per request, plain",
            connect(plain_addr, false),
            with_backend(&plain.proc),
            &dir,
        )?,
        Target::new(
            "new connection per request, TLS (full handshake)",
            connect(tls_addr, true),
            with_backend(&tls.proc),
            &dir,
        )?,
    ];
    targets[1].reference = Some(0);
    targets[3].reference = Some(2);
    measure(ctx, "tls", &mut targets)?;
    for p in [&mut plain.proc, &mut tls.proc, &mut backend] {
        p.check_alive()?;
    }
    let m = setup::metrics(tls.admin)?;
    let key = format!(
        "rt/incoming/server/{}/{}/tls/connections",
        tls_addr.ip(),
        tls_addr.port()
    );
    let handshakes = setup::metric(&m, &key);
    let failures: Vec<String> = m
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| {
            let kind = k.split("/tls/handshake_failures/").nth(1)?;
            Some(format!("{kind} {}", v.as_f64()?))
        })
        .collect();
    let failures = if failures.is_empty() {
        "no handshake failures".to_string()
    } else {
        format!(
            "handshake failures {} (the readiness probe's bare TCP connect, and one per \
             wrk `https://` run, count here)",
            failures.join(", ")
        )
    };
    let connected: u64 = targets[3].samples.iter().map(|x| x.requests).sum();
    let findings = vec![format!(
        "The TLS router counted {handshakes:.0} TLS connections and {failures} over the \
         whole section (warm-up included); the new-connection client completed \
         {connected} TLS requests in the measured rounds, one per connection."
    )];
    Ok(Section {
        title: "TLS cost on one router",
        method: vec![
            "One http router in front of the backend (keep-alive to it), plain on one port \
             and with `tls:` (the certificate of the mesh section) on another."
                .into(),
            format!(
                "Keep-alive: `wrk -t1 -c{} -d<secs>s`, `http://` and `https://` (wrk's \
                 OpenSSL, HTTP/1.1).",
                s.conns
            ),
            format!(
                "New connection per request: the bench's own client ({} connections at \
                 once on one tokio thread): connect, handshake, `GET /` with `Connection: \
                 close`, read the answer, close. With TLS it uses Plexus's client TLS \
                 (rustls, *ring*) with a fresh configuration per connection, so every \
                 connection is a full TLS 1.3 handshake (no resumption).",
                s.connect_conns
            ),
            format!(
                "Pinning: the load generator on CPU {LOAD_CPU}; Plexus and the backend on \
                 CPU {SERVER_CPU}. CPU per request is Plexus's, so for new connections it \
                 is the cost of accepting (and handshaking) one connection plus one request."
            ),
        ],
        targets,
        findings,
    })
}

/// Thrift calls: direct, one router, and two peers with and without the Mux upgrade.
pub(crate) fn thrift(ctx: &Ctx<'_>, helloworld: &Path) -> anyhow::Result<Section> {
    let s = ctx.settings;
    let dir = ctx.dir.join("thrift");
    std::fs::create_dir_all(&dir)?;
    let world_addr = free_addr("127.0.0.1")?;
    let mut world = setup::start_thrift_world(helloworld, world_addr, s.server_cpu(), &dir)?;
    let load = |addr: SocketAddr| {
        Load::Thrift(crate::thrift::ThriftSpec {
            addr,
            conns: s.conns,
        })
    };
    let router = |label: &str, ip: &str, port: u16, dtab: String, client: &str| {
        format!(
            "routers:\n- protocol: thrift\n  label: {label}\n  dtab: {dtab}\n{client}\
             \x20 servers:\n  - ip: {ip}\n    port: {port}\n"
        )
    };
    let to_world = format!("/svc => /$/inet/{}/{};", world_addr.ip(), world_addr.port());
    let mut targets = vec![Target::new(
        "direct",
        load(world_addr),
        vec![counted("server", &world, false)],
        &dir,
    )?];
    let one = free_addr("127.0.0.1")?;
    let p = setup::start_plexus(
        ctx.plexus,
        "one-hop",
        "127.0.0.1",
        &router("thrift", "127.0.0.1", one.port(), to_world.clone(), ""),
        s.server_cpu(),
        &dir,
        &Ready::Thrift(one),
    )?;
    let mut t = Target::new(
        "one thrift router",
        load(one),
        vec![
            counted("plexus", &p.proc, true),
            counted("server", &world, false),
        ],
        &dir,
    )?;
    t.reference = Some(0);
    t.procs.push(p.proc);
    targets.push(t);
    let mut incoming_addrs = Vec::new();
    let mut admins = Vec::new();
    for (label, slug, client) in [
        ("two hops, plain Thrift", "plain", ""),
        (
            "two hops, Mux (peerUpgrades: [mux])",
            "mux",
            "  client:\n    peerUpgrades: [mux]\n",
        ),
    ] {
        let inc = free_addr("127.0.2.1")?;
        let incoming = setup::start_plexus(
            ctx.plexus,
            &format!("incoming-{slug}"),
            "127.0.2.1",
            &router("incoming", "127.0.2.1", inc.port(), to_world.clone(), ""),
            s.server_cpu(),
            &dir,
            &Ready::Thrift(inc),
        )?;
        let out = free_addr("127.0.1.1")?;
        let outgoing = setup::start_plexus(
            ctx.plexus,
            &format!("outgoing-{slug}"),
            "127.0.1.1",
            &router(
                "outgoing",
                "127.0.1.1",
                out.port(),
                format!("/svc => /$/inet/{}/{};", inc.ip(), inc.port()),
                client,
            ),
            s.server_cpu(),
            &dir,
            &Ready::Thrift(out),
        )?;
        let mut t = Target::new(
            label,
            load(out),
            vec![
                counted("outgoing", &outgoing.proc, true),
                counted("incoming", &incoming.proc, true),
                counted("server", &world, false),
            ],
            &dir,
        )?;
        t.reference = Some(0);
        incoming_addrs.push(inc);
        admins.push(incoming.admin);
        t.procs.push(outgoing.proc);
        t.procs.push(incoming.proc);
        targets.push(t);
    }
    measure(ctx, "thrift", &mut targets)?;
    world.check_alive()?;
    let mut findings = Vec::new();
    for (t, (inc, admin)) in targets[2..]
        .iter_mut()
        .zip(incoming_addrs.iter().zip(&admins))
    {
        let m = setup::metrics(*admin)?;
        let key = |k: &str| {
            format!(
                "rt/incoming/server/{}/{}/protocol/{k}/requests",
                inc.ip(),
                inc.port()
            )
        };
        t.note = format!(
            "incoming saw {:.0} thriftmux and {:.0} plain Thrift calls",
            setup::metric(&m, &key("thriftmux")),
            setup::metric(&m, &key("thrift"))
        );
        findings.push(format!("{}: {}", t.name, t.note));
    }
    for through in &targets[1..] {
        let ratio = crate::report::median_rps(through) / crate::report::median_rps(&targets[0]);
        findings.push(format!(
            "{}: {:.0} % of direct throughput",
            through.name,
            100.0 * ratio
        ));
    }
    Ok(Section {
        title: "Thrift calls: one router, and two peers with and without Mux",
        method: vec![
            "Server: `helloworld -protocol thrift -text world` (framed, strict binary), \
             method `greet`."
                .into(),
            format!(
                "Load: the bench's Thrift client (`PLEXUS_BENCH_ROLE=thrift-load`), {} \
                 connections, one call in flight on each (serial Thrift), every reply checked.",
                s.conns
            ),
            "Two hops: outgoing router on 127.0.1.1, incoming router on 127.0.2.1, both \
             `protocol: thrift`; with Mux, the outgoing client has `peerUpgrades: [mux]` and \
             all its calls share one Mux session per worker."
                .into(),
        ],
        targets,
        findings,
    })
}
