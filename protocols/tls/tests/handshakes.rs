//! Real handshakes between a `ServerTls` and a `ClientTls` over loopback TCP, with
//! certificates minted in each test: what works, what fails and how the failure is
//! named, certificate rotation, and the tutorial's legacy certificates. Every test runs
//! under a deadline so that a hung handshake fails instead of hanging.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use plexus_tls::{
    ClientAuthSettings, ClientTls, ClientTlsSettings, ServerTls, ServerTlsSettings, TlsError,
    TlsStream, TlsVersion,
};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, DnValue,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
    date_time_ymd,
};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// No test may take longer than this; a handshake that hangs fails the test.
const DEADLINE: Duration = Duration::from_secs(30);

async fn within<T>(f: impl Future<Output = T>) -> T {
    tokio::time::timeout(DEADLINE, f)
        .await
        .expect("the test finished within its deadline")
}

struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

fn dn(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn
}

fn new_ca(cn: &str) -> Ca {
    ca_named(dn(cn))
}

/// A CA with exactly the tutorial CA's subject (`C=US, CN=My CA`) but its own key.
fn impostor_ca() -> Ca {
    let mut name = DistinguishedName::new();
    name.push(
        DnType::CountryName,
        DnValue::PrintableString("US".try_into().expect("printable")),
    );
    name.push(DnType::CommonName, "My CA");
    ca_named(name)
}

fn ca_named(name: DistinguishedName) -> Ca {
    let mut params = CertificateParams::default();
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let key = KeyPair::generate().expect("CA key");
    let cert = params.self_signed(&key).expect("CA certificate");
    Ca {
        pem: cert.pem(),
        issuer: Issuer::new(params, key),
    }
}

struct Leaf {
    cert_pem: String,
    key_pem: String,
    der: Vec<u8>,
}

struct LeafSpec<'a> {
    cn: &'a str,
    dns: &'a [&'a str],
    serial: u64,
    years: (i32, i32),
}

impl<'a> LeafSpec<'a> {
    fn new(cn: &'a str, dns: &'a [&'a str]) -> Self {
        LeafSpec {
            cn,
            dns,
            serial: 1,
            years: (2020, 4000),
        }
    }
}

fn issue(ca: &Ca, spec: LeafSpec<'_>) -> Leaf {
    let mut params = CertificateParams::default();
    params.distinguished_name = dn(spec.cn);
    params.subject_alt_names = spec
        .dns
        .iter()
        .map(|d| SanType::DnsName((*d).try_into().expect("DNS name")))
        .collect();
    params.serial_number = Some(SerialNumber::from(spec.serial));
    params.not_before = date_time_ymd(spec.years.0, 1, 1);
    params.not_after = date_time_ymd(spec.years.1, 1, 1);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let key = KeyPair::generate().expect("leaf key");
    let cert = params
        .signed_by(&key, &ca.issuer)
        .expect("leaf certificate");
    Leaf {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        der: cert.der().to_vec(),
    }
}

fn write(dir: &Path, name: &str, contents: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, contents).expect("write test file");
    path
}

fn server_settings(dir: &Path, leaf: &Leaf) -> ServerTlsSettings {
    ServerTlsSettings {
        cert_path: write(dir, "server.pem", &leaf.cert_pem),
        key_path: write(dir, "server-key.pem", &leaf.key_pem),
        ..Default::default()
    }
}

fn client_settings(dir: &Path, ca: &Ca, common_name: &str) -> ClientTlsSettings {
    ClientTlsSettings {
        common_name: Some(common_name.into()),
        trust_certs: vec![write(dir, "trust.pem", &ca.pem)],
        ..Default::default()
    }
}

struct Outcome {
    client: Result<TlsStream<TcpStream>, TlsError>,
    server: Result<TlsStream<TcpStream>, TlsError>,
}

/// One handshake over a fresh loopback connection.
async fn handshake(server: &ServerTls, client: &ClientTls, name: &str) -> Outcome {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let server = server.clone();
    let accepted = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.expect("accept");
        server.accept(tcp).await
    });
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let client = client.connect(name, tcp).await;
    let server = accepted.await.expect("server task");
    Outcome { client, server }
}

/// Sends a ping from client to server and a pong back.
async fn exchange(client: &mut TlsStream<TcpStream>, server: &mut TlsStream<TcpStream>) {
    client.write_all(b"ping").await.expect("client writes");
    client.flush().await.expect("client flushes");
    let mut buf = [0u8; 4];
    server.read_exact(&mut buf).await.expect("server reads");
    assert_eq!(&buf, b"ping");
    server.write_all(b"pong").await.expect("server writes");
    server.flush().await.expect("server flushes");
    client.read_exact(&mut buf).await.expect("client reads");
    assert_eq!(&buf, b"pong");
}

fn ok<T>(r: Result<T, TlsError>, side: &str) -> T {
    match r {
        Ok(t) => t,
        Err(e) => panic!("{side} handshake failed: {e} ({})", e.metric_label()),
    }
}

fn err<T>(r: Result<T, TlsError>, side: &str) -> TlsError {
    match r {
        Ok(_) => panic!("{side} handshake succeeded, expected a failure"),
        Err(e) => e,
    }
}

#[tokio::test]
async fn a_verified_handshake_agrees_on_alpn_and_carries_data() {
    within(async {
        let dir = TempDir::new().expect("tempdir");
        let ca = new_ca("Test mesh CA");
        let leaf = issue(&ca, LeafSpec::new("node-a", &["node-a.mesh", "linkerd"]));
        let server = ServerTls::new(&server_settings(dir.path(), &leaf), &[b"h2", b"http/1.1"])
            .expect("server");
        let client =
            ClientTls::new(&client_settings(dir.path(), &ca, "linkerd"), &[b"h2"]).expect("client");
        let out = handshake(&server, &client, "linkerd").await;
        let mut c = ok(out.client, "client");
        let mut s = ok(out.server, "server");
        assert_eq!(c.alpn_protocol(), Some(&b"h2"[..]));
        assert_eq!(s.alpn_protocol(), Some(&b"h2"[..]));
        assert_eq!(c.protocol_version(), Some(TlsVersion::Tls13));
        assert_eq!(s.server_name(), Some("linkerd"), "SNI is the common name");
        assert_eq!(c.server_name(), Some("linkerd"));
        assert!(s.is_server() && !c.is_server());
        let presented = c.peer_certificates().expect("server certificate");
        assert_eq!(presented[0].as_ref(), leaf.der.as_slice());
        assert!(
            s.peer_certificates().is_none(),
            "no client certificate was asked for"
        );
        exchange(&mut c, &mut s).await;
    })
    .await;
}

#[tokio::test]
async fn versions_and_cipher_suites_follow_the_settings() {
    within(async {
        let dir = TempDir::new().expect("tempdir");
        let ca = new_ca("Test mesh CA");
        let leaf = issue(&ca, LeafSpec::new("node-a", &["node-a.mesh"]));
        let mut settings = server_settings(dir.path(), &leaf);
        settings.protocols = Some(vec!["TLSv1.1".into(), "TLSv1.2".into()]);
        settings.ciphers = Some(vec![
            "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA".into(),
            "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256".into(),
        ]);
        let server = ServerTls::new(&settings, &[]).expect("server");
        let client =
            ClientTls::new(&client_settings(dir.path(), &ca, "node-a.mesh"), &[]).expect("client");
        let out = handshake(&server, &client, "node-a.mesh").await;
        let mut c = ok(out.client, "client");
        let mut s = ok(out.server, "server");
        assert_eq!(c.protocol_version(), Some(TlsVersion::Tls12));
        assert_eq!(
            s.cipher_suite().as_deref(),
            Some("TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256")
        );
        assert_eq!(c.alpn_protocol(), None);
        exchange(&mut c, &mut s).await;

        // A client that only speaks TLS 1.3 shares no version with that server.
        let mut only13 = client_settings(dir.path(), &ca, "node-a.mesh");
        only13.protocols = Some(vec!["TLSv1.3".into()]);
        let client = ClientTls::new(&only13, &[]).expect("client");
        let out = handshake(&server, &client, "node-a.mesh").await;
        let e = err(out.client, "client");
        assert_eq!(e.metric_label(), "protocol_mismatch", "{e}");
        let e = err(out.server, "server");
        assert_eq!(e.metric_label(), "protocol_mismatch", "{e}");
    })
    .await;
}

#[tokio::test]
async fn no_common_alpn_protocol_is_a_protocol_mismatch() {
    within(async {
        let dir = TempDir::new().expect("tempdir");
        let ca = new_ca("Test mesh CA");
        let leaf = issue(&ca, LeafSpec::new("node-a", &["node-a.mesh"]));
        let server = ServerTls::new(&server_settings(dir.path(), &leaf), &[b"h2"]).expect("server");
        let client = ClientTls::new(
            &client_settings(dir.path(), &ca, "node-a.mesh"),
            &[b"http/1.1"],
        )
        .expect("client");
        let out = handshake(&server, &client, "node-a.mesh").await;
        let s = err(out.server, "server");
        assert_eq!(s.metric_label(), "protocol_mismatch", "{s}");
        assert!(s.to_string().contains("ALPN"), "{s}");
        let c = err(out.client, "client");
        assert_eq!(c.metric_label(), "protocol_mismatch", "{c}");
    })
    .await;
}

#[tokio::test]
async fn a_certificate_from_another_ca_is_an_unknown_ca() {
    within(async {
        let dir = TempDir::new().expect("tempdir");
        let trusted = new_ca("Trusted CA");
        let other = new_ca("Some other CA");
        let leaf = issue(&other, LeafSpec::new("node-a", &["node-a.mesh"]));
        let server = ServerTls::new(&server_settings(dir.path(), &leaf), &[]).expect("server");
        let client = ClientTls::new(&client_settings(dir.path(), &trusted, "node-a.mesh"), &[])
            .expect("client");
        let out = handshake(&server, &client, "node-a.mesh").await;
        let c = err(out.client, "client");
        assert_eq!(c.metric_label(), "unknown_ca", "{c}");
        assert!(c.to_string().contains("not issued by a trusted CA"), "{c}");
        let s = err(out.server, "server");
        assert_eq!(s.metric_label(), "peer_rejected", "{s}");
        assert!(s.to_string().contains("UnknownCA"), "{s}");
    })
    .await;
}

#[tokio::test]
async fn a_certificate_for_another_name_is_a_name_mismatch_naming_both() {
    within(async {
        let dir = TempDir::new().expect("tempdir");
        let ca = new_ca("Test mesh CA");
        let leaf = issue(&ca, LeafSpec::new("node-a", &["node-a.mesh"]));
        let server = ServerTls::new(&server_settings(dir.path(), &leaf), &[]).expect("server");
        let client =
            ClientTls::new(&client_settings(dir.path(), &ca, "world.mesh"), &[]).expect("client");
        let out = handshake(&server, &client, "world.mesh").await;
        match err(out.client, "client") {
            TlsError::NameMismatch {
                ref expected,
                ref presented,
            } => {
                assert_eq!(expected, "world.mesh");
                assert_eq!(presented, &vec!["node-a.mesh".to_string()]);
            }
            other => panic!(
                "expected a name mismatch, got {other} ({})",
                other.metric_label()
            ),
        }

        // A v3 certificate with the name only in its CN: strict verification says why.
        let cn_only = issue(&ca, LeafSpec::new("world.mesh", &[]));
        let server = ServerTls::new(&server_settings(dir.path(), &cn_only), &[]).expect("server");
        let out = handshake(&server, &client, "world.mesh").await;
        let e = err(out.client, "client");
        assert_eq!(e.metric_label(), "name_mismatch");
        assert!(e.to_string().contains("subject CN"), "{e}");
    })
    .await;
}

#[tokio::test]
async fn an_expired_certificate_is_refused_with_its_dates() {
    within(async {
        let dir = TempDir::new().expect("tempdir");
        let ca = new_ca("Test mesh CA");
        let mut spec = LeafSpec::new("node-a", &["node-a.mesh"]);
        spec.years = (2000, 2001);
        let leaf = issue(&ca, spec);
        let server = ServerTls::new(&server_settings(dir.path(), &leaf), &[]).expect("server");
        let client =
            ClientTls::new(&client_settings(dir.path(), &ca, "node-a.mesh"), &[]).expect("client");
        let out = handshake(&server, &client, "node-a.mesh").await;
        match err(out.client, "client") {
            e @ TlsError::Expired { .. } => {
                assert_eq!(e.metric_label(), "expired");
                assert!(
                    e.to_string().contains("expired at 2001-01-01T00:00:00Z"),
                    "{e}"
                );
            }
            other => panic!("expected expired, got {other}"),
        }
    })
    .await;
}

#[tokio::test]
async fn mutual_tls_checks_client_certificates() {
    within(async {
        let dir = TempDir::new().expect("tempdir");
        let ca = new_ca("Test mesh CA");
        let server_leaf = issue(&ca, LeafSpec::new("node-a", &["node-a.mesh"]));
        let client_leaf = issue(&ca, LeafSpec::new("node-b", &["node-b.mesh"]));
        let mut settings = server_settings(dir.path(), &server_leaf);
        settings.ca_cert_path = Some(write(dir.path(), "clients-ca.pem", &ca.pem));
        settings.require_client_auth = true;
        let server = ServerTls::new(&settings, &[]).expect("server");

        let mut with_cert = client_settings(dir.path(), &ca, "node-a.mesh");
        with_cert.client_auth = Some(ClientAuthSettings {
            cert_path: write(dir.path(), "client.pem", &client_leaf.cert_pem),
            key_path: write(dir.path(), "client-key.pem", &client_leaf.key_pem),
            intermediate_certs_path: None,
        });
        let client = ClientTls::new(&with_cert, &[]).expect("client");
        let out = handshake(&server, &client, "node-a.mesh").await;
        let mut c = ok(out.client, "client");
        let mut s = ok(out.server, "server");
        let seen = s.peer_certificates().expect("client certificate");
        assert_eq!(seen[0].as_ref(), client_leaf.der.as_slice());
        exchange(&mut c, &mut s).await;

        // No client certificate: the server refuses, and so the client learns (with
        // TLS 1.3 on its first read, after its side of the handshake finished).
        let without =
            ClientTls::new(&client_settings(dir.path(), &ca, "node-a.mesh"), &[]).expect("client");
        let out = handshake(&server, &without, "node-a.mesh").await;
        let s = err(out.server, "server");
        assert_eq!(s.metric_label(), "client_cert_required", "{s}");
        let client_side = match out.client {
            Err(e) => e,
            Ok(mut stream) => {
                let mut buf = [0u8; 1];
                match stream.read(&mut buf).await {
                    Err(e) => TlsError::from_io(e),
                    Ok(n) => panic!("client read {n} bytes from a server that refused it"),
                }
            }
        };
        assert_eq!(
            client_side.metric_label(),
            "client_cert_required",
            "{client_side}"
        );

        // A client certificate from another CA is an unknown CA for the server.
        let stranger_ca = new_ca("Stranger CA");
        let stranger = issue(&stranger_ca, LeafSpec::new("intruder", &["intruder.mesh"]));
        let mut wrong = client_settings(dir.path(), &ca, "node-a.mesh");
        wrong.client_auth = Some(ClientAuthSettings {
            cert_path: write(dir.path(), "stranger.pem", &stranger.cert_pem),
            key_path: write(dir.path(), "stranger-key.pem", &stranger.key_pem),
            intermediate_certs_path: None,
        });
        let client = ClientTls::new(&wrong, &[]).expect("client");
        let out = handshake(&server, &client, "node-a.mesh").await;
        let s = err(out.server, "server");
        assert_eq!(s.metric_label(), "unknown_ca", "{s}");
    })
    .await;
}

#[tokio::test]
async fn optional_client_auth_accepts_clients_without_certificates() {
    within(async {
        let dir = TempDir::new().expect("tempdir");
        let ca = new_ca("Test mesh CA");
        let leaf = issue(&ca, LeafSpec::new("node-a", &["node-a.mesh"]));
        let mut settings = server_settings(dir.path(), &leaf);
        settings.ca_cert_path = Some(write(dir.path(), "clients-ca.pem", &ca.pem));
        let server = ServerTls::new(&settings, &[]).expect("server");
        let client =
            ClientTls::new(&client_settings(dir.path(), &ca, "node-a.mesh"), &[]).expect("client");
        let out = handshake(&server, &client, "node-a.mesh").await;
        let mut c = ok(out.client, "client");
        let mut s = ok(out.server, "server");
        exchange(&mut c, &mut s).await;
    })
    .await;
}

#[tokio::test]
async fn disable_validation_accepts_any_certificate() {
    within(async {
        let dir = TempDir::new().expect("tempdir");
        let ca = new_ca("Unknown CA");
        let leaf = issue(&ca, LeafSpec::new("whatever", &["whatever.example"]));
        let server = ServerTls::new(&server_settings(dir.path(), &leaf), &[]).expect("server");
        let settings = ClientTlsSettings {
            disable_validation: true,
            ..Default::default()
        };
        let client = ClientTls::new(&settings, &[]).expect("client");
        let out = handshake(&server, &client, "not-the-name.example").await;
        let mut c = ok(out.client, "client");
        let mut s = ok(out.server, "server");
        exchange(&mut c, &mut s).await;
    })
    .await;
}

#[tokio::test]
async fn a_silent_peer_times_out() {
    within(async {
        let dir = TempDir::new().expect("tempdir");
        let ca = new_ca("Test mesh CA");
        let leaf = issue(&ca, LeafSpec::new("node-a", &["node-a.mesh"]));
        let server = ServerTls::new(&server_settings(dir.path(), &leaf), &[])
            .expect("server")
            .with_handshake_timeout(Duration::from_millis(200));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        // Connects and says nothing.
        let _silent = TcpStream::connect(addr).await.expect("connect");
        let (tcp, _) = listener.accept().await.expect("accept");
        let e = err(server.accept(tcp).await, "server");
        assert_eq!(e.metric_label(), "timeout", "{e}");
    })
    .await;
}

fn write_pair(dir: &Path, leaf: &Leaf) {
    write(dir, "server.pem", &leaf.cert_pem);
    write(dir, "server-key.pem", &leaf.key_pem);
}

/// The certificate a server presents to a new client. A new client each time: a
/// client that resumes a TLS session is not shown a certificate again, and would report
/// the one of the session it resumed.
async fn presented(server: &ServerTls, client_settings: &ClientTlsSettings) -> Vec<u8> {
    let client = ClientTls::new(client_settings, &[]).expect("client");
    let out = handshake(server, &client, "node-a.mesh").await;
    let c = ok(out.client, "client");
    ok(out.server, "server");
    c.peer_certificates().expect("server certificate")[0].to_vec()
}

#[tokio::test]
async fn rotated_certificates_are_picked_up_and_broken_ones_are_not() {
    within(async {
        let dir = TempDir::new().expect("tempdir");
        let ca = new_ca("Test mesh CA");
        let mut spec = LeafSpec::new("node-a", &["node-a.mesh"]);
        spec.serial = 1;
        let first = issue(&ca, spec);
        let server = ServerTls::with_reload_interval(
            &server_settings(dir.path(), &first),
            &[],
            Duration::ZERO,
        )
        .expect("server");
        let client_settings = client_settings(dir.path(), &ca, "node-a.mesh");
        let client = ClientTls::new(&client_settings, &[]).expect("client");
        assert_eq!(presented(&server, &client_settings).await, first.der);

        // A connection made before the rotation keeps working after it.
        let out = handshake(&server, &client, "node-a.mesh").await;
        let mut old_c = ok(out.client, "client");
        let mut old_s = ok(out.server, "server");

        let mut spec = LeafSpec::new("node-a", &["node-a.mesh"]);
        spec.serial = 2;
        let second = issue(&ca, spec);
        write_pair(dir.path(), &second);
        assert_eq!(
            presented(&server, &client_settings).await,
            second.der,
            "rotated without a restart"
        );
        exchange(&mut old_c, &mut old_s).await;

        // Garbage in the certificate file: the certificate in service stays.
        write(dir.path(), "server.pem", "this is not a certificate\n");
        assert_eq!(presented(&server, &client_settings).await, second.der);
        let e = server.reload_now().expect_err("garbage is refused");
        assert_eq!(e.metric_label(), "no_certificate", "{e}");

        // Half a rotation (new certificate, old key): refused, the old one stays.
        let mut spec = LeafSpec::new("node-a", &["node-a.mesh"]);
        spec.serial = 3;
        let third = issue(&ca, spec);
        write(dir.path(), "server.pem", &third.cert_pem);
        assert_eq!(presented(&server, &client_settings).await, second.der);
        let e = server.reload_now().expect_err("mismatched key");
        assert_eq!(e.metric_label(), "key_mismatch", "{e}");

        // The key arrives: the new certificate goes into service.
        write(dir.path(), "server-key.pem", &third.key_pem);
        assert_eq!(presented(&server, &client_settings).await, third.der);
        assert!(
            !server.reload_now().expect("unchanged files"),
            "nothing new to load"
        );
    })
    .await;
}

#[tokio::test]
async fn client_certificates_are_reloaded_too() {
    within(async {
        let dir = TempDir::new().expect("tempdir");
        let ca = new_ca("Test mesh CA");
        let server_leaf = issue(&ca, LeafSpec::new("node-a", &["node-a.mesh"]));
        let mut settings = server_settings(dir.path(), &server_leaf);
        settings.ca_cert_path = Some(write(dir.path(), "clients-ca.pem", &ca.pem));
        settings.require_client_auth = true;
        let server = ServerTls::new(&settings, &[]).expect("server");
        let first = issue(&ca, LeafSpec::new("node-b", &["node-b.mesh"]));
        let mut client_settings = client_settings(dir.path(), &ca, "node-a.mesh");
        client_settings.client_auth = Some(ClientAuthSettings {
            cert_path: write(dir.path(), "client.pem", &first.cert_pem),
            key_path: write(dir.path(), "client-key.pem", &first.key_pem),
            intermediate_certs_path: None,
        });
        let client = ClientTls::new(&client_settings, &[]).expect("client");
        let mut spec = LeafSpec::new("node-b", &["node-b.mesh"]);
        spec.serial = 7;
        let second = issue(&ca, spec);
        write(dir.path(), "client.pem", &second.cert_pem);
        write(dir.path(), "client-key.pem", &second.key_pem);
        assert!(
            client.reload_now().expect("reloads"),
            "a new client certificate"
        );
        let out = handshake(&server, &client, "node-a.mesh").await;
        ok(out.client, "client");
        let s = ok(out.server, "server");
        assert_eq!(
            s.peer_certificates().expect("client certificate")[0].as_ref(),
            second.der
        );
    })
    .await;
}

#[test]
fn setup_errors_name_the_file_and_the_problem() {
    let dir = TempDir::new().expect("tempdir");
    let ca = new_ca("Test mesh CA");
    let leaf = issue(&ca, LeafSpec::new("node-a", &["node-a.mesh"]));
    let other = issue(&ca, LeafSpec::new("node-b", &["node-b.mesh"]));
    let good = server_settings(dir.path(), &leaf);

    let missing = ServerTlsSettings {
        cert_path: dir.path().join("nope.pem"),
        ..good.clone()
    };
    let e = ServerTls::new(&missing, &[]).expect_err("missing file");
    assert_eq!(e.metric_label(), "file_unreadable");
    assert!(e.to_string().contains("nope.pem"), "{e}");

    let mismatched = ServerTlsSettings {
        key_path: write(dir.path(), "other-key.pem", &other.key_pem),
        ..good.clone()
    };
    let e = ServerTls::new(&mismatched, &[]).expect_err("wrong key");
    assert_eq!(e.metric_label(), "key_mismatch");
    assert!(e.to_string().contains("other-key.pem"), "{e}");

    let swapped = ServerTlsSettings {
        key_path: good.cert_path.clone(),
        ..good.clone()
    };
    let e = ServerTls::new(&swapped, &[]).expect_err("certificate as key");
    assert_eq!(e.metric_label(), "no_private_key");
    assert!(e.to_string().contains("swapped"), "{e}");

    let no_cert = ServerTlsSettings {
        cert_path: write(dir.path(), "empty.pem", "nothing here\n"),
        ..good.clone()
    };
    let e = ServerTls::new(&no_cert, &[]).expect_err("no certificate");
    assert_eq!(e.metric_label(), "no_certificate");

    let needs_ca = ServerTlsSettings {
        require_client_auth: true,
        ..good.clone()
    };
    let e = ServerTls::new(&needs_ca, &[]).expect_err("requireClientAuth without CA");
    assert_eq!(e.metric_label(), "settings");
    assert!(e.to_string().contains("caCertPath"), "{e}");

    // No trust configured: the system's CA bundle, as the JVM's default trust store;
    // a bundle that does not exist is named.
    let no_trust = ClientTlsSettings {
        common_name: Some("node-a.mesh".into()),
        ..Default::default()
    };
    let system = std::env::var_os("SSL_CERT_FILE")
        .map(std::path::PathBuf::from)
        .into_iter()
        .chain(
            [
                "/etc/ssl/certs/ca-certificates.crt",
                "/etc/pki/tls/certs/ca-bundle.crt",
                "/etc/ssl/cert.pem",
            ]
            .map(std::path::PathBuf::from),
        )
        .find(|p| p.is_file());
    match (system, ClientTls::new(&no_trust, &[])) {
        (Some(_), built) => assert!(built.is_ok(), "system bundle refused: {:?}", built.err()),
        (None, built) => {
            let e = built.expect_err("no trust store at all");
            assert!(e.to_string().contains("ca-certificates.crt"), "{e}");
        }
    }

    let disabled = ClientTlsSettings {
        enabled: false,
        ..Default::default()
    };
    assert!(ClientTls::new(&disabled, &[]).is_err());

    let garbage_bundle = ClientTlsSettings {
        common_name: Some("node-a.mesh".into()),
        trust_certs_bundle: Some(write(
            dir.path(),
            "bundle.pem",
            "-----BEGIN CERTIFICATE-----\nAAAA\n",
        )),
        ..Default::default()
    };
    let e = ClientTls::new(&garbage_bundle, &[]).expect_err("broken PEM");
    assert_eq!(e.metric_label(), "bad_pem", "{e}");
    assert!(e.to_string().contains("bundle.pem"), "{e}");
}

fn tutorial(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/tutorial")
        .join(name)
}

fn tutorial_server(key: &str) -> ServerTls {
    ServerTls::new(
        &ServerTlsSettings {
            cert_path: tutorial("certificate.pem"),
            key_path: tutorial(key),
            ..Default::default()
        },
        &[],
    )
    .expect("the tutorial's certificate and key load")
}

fn tutorial_client(common_name: &str, legacy: bool) -> ClientTls {
    ClientTls::new(
        &ClientTlsSettings {
            common_name: Some(common_name.into()),
            trust_certs: vec![tutorial("cacertificate.pem")],
            legacy_certificates: legacy,
            ..Default::default()
        },
        &[],
    )
    .expect("client")
}

#[tokio::test]
async fn the_tutorial_certificates_need_the_legacy_option() {
    within(async {
        // PKCS#8 (what Linkerd reads) and PKCS#1 keys both load.
        let server = tutorial_server("key.pk8");
        tutorial_server("key.pem");

        let strict = tutorial_client("linkerd", false);
        let out = handshake(&server, &strict, "linkerd").await;
        let e = err(out.client, "client");
        assert_eq!(e.metric_label(), "bad_certificate", "{e}");
        let text = e.to_string();
        assert!(
            text.contains("X.509 v1") && text.contains("legacyCertificates"),
            "{text}"
        );

        let legacy = tutorial_client("linkerd", true);
        let out = handshake(&server, &legacy, "linkerd").await;
        let mut c = ok(out.client, "client");
        let mut s = ok(out.server, "server");
        exchange(&mut c, &mut s).await;

        // RSA handshake signatures over TLS 1.2 verify too.
        let client = ClientTls::new(
            &ClientTlsSettings {
                common_name: Some("linkerd".into()),
                trust_certs: vec![tutorial("cacertificate.pem")],
                legacy_certificates: true,
                protocols: Some(vec!["TLSv1.2".into()]),
                ..Default::default()
            },
            &[],
        )
        .expect("client");
        let out = handshake(&server, &client, "linkerd").await;
        let mut c = ok(out.client, "client");
        let mut s = ok(out.server, "server");
        assert_eq!(c.protocol_version(), Some(TlsVersion::Tls12));
        exchange(&mut c, &mut s).await;

        // Legacy still checks the name...
        let out = handshake(&server, &tutorial_client("world", true), "world").await;
        match err(out.client, "client") {
            TlsError::NameMismatch {
                expected,
                presented,
            } => {
                assert_eq!(expected, "world");
                assert_eq!(presented, vec!["linkerd".to_string()]);
            }
            other => panic!("expected a name mismatch, got {other}"),
        }

        // ...and the issuer: a CA of our own did not sign the tutorial's certificate.
        let dir = TempDir::new().expect("tempdir");
        let ours = impostor_ca();
        let client = ClientTls::new(
            &ClientTlsSettings {
                legacy_certificates: true,
                ..client_settings(dir.path(), &ours, "linkerd")
            },
            &[],
        )
        .expect("client");
        let out = handshake(&server, &client, "linkerd").await;
        let e = err(out.client, "client");
        assert_eq!(e.metric_label(), "bad_certificate", "{e}");
        assert!(e.to_string().contains("does not verify"), "{e}");
        let stranger = new_ca("Stranger CA");
        let client = ClientTls::new(
            &ClientTlsSettings {
                legacy_certificates: true,
                ..client_settings(dir.path(), &stranger, "linkerd")
            },
            &[],
        )
        .expect("client");
        let out = handshake(&server, &client, "linkerd").await;
        let e = err(out.client, "client");
        assert_eq!(e.metric_label(), "unknown_ca", "{e}");
        assert!(e.to_string().contains("My CA"), "{e}");
    })
    .await;
}

#[tokio::test]
async fn legacy_verification_still_checks_modern_certificates() {
    within(async {
        let dir = TempDir::new().expect("tempdir");
        let ca = new_ca("Test mesh CA");
        let leaf = issue(&ca, LeafSpec::new("node-a", &["node-a.mesh"]));
        let server = ServerTls::new(&server_settings(dir.path(), &leaf), &[b"h2"]).expect("server");
        let legacy = ClientTlsSettings {
            legacy_certificates: true,
            ..client_settings(dir.path(), &ca, "node-a.mesh")
        };
        let client = ClientTls::new(&legacy, &[b"h2"]).expect("client");
        let out = handshake(&server, &client, "node-a.mesh").await;
        let mut c = ok(out.client, "client");
        let mut s = ok(out.server, "server");
        exchange(&mut c, &mut s).await;

        // The server certificate's own expiry is still checked.
        let mut spec = LeafSpec::new("node-a", &["node-a.mesh"]);
        spec.years = (2000, 2001);
        let expired = issue(&ca, spec);
        let server =
            ServerTls::new(&server_settings(dir.path(), &expired), &[b"h2"]).expect("server");
        let out = handshake(&server, &client, "node-a.mesh").await;
        let e = err(out.client, "client");
        assert_eq!(e.metric_label(), "expired", "{e}");

        // And over TLS 1.2, where the handshake signature is checked differently.
        let mut tls12 = legacy.clone();
        tls12.protocols = Some(vec!["TLSv1.2".into()]);
        let client = ClientTls::new(&tls12, &[b"h2"]).expect("client");
        let server = ServerTls::new(&server_settings(dir.path(), &leaf), &[b"h2"]).expect("server");
        let out = handshake(&server, &client, "node-a.mesh").await;
        let mut c = ok(out.client, "client");
        let mut s = ok(out.server, "server");
        assert_eq!(c.protocol_version(), Some(TlsVersion::Tls12));
        exchange(&mut c, &mut s).await;
    })
    .await;
}
