//! `plexus tls init` and `plexus tls issue` run as a user runs them, and the
//! certificates they write used by Plexus's own TLS client and server over loopback.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use plexus_tls::{ClientAuthSettings, ClientTls, ClientTlsSettings, ServerTls, ServerTlsSettings};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn plexus(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_plexus"))
        .args(args)
        .output()
        .expect("plexus runs")
}

fn succeeds(args: &[&str]) -> String {
    let out = plexus(args);
    assert!(
        out.status.success(),
        "plexus {args:?}: exit {:?}, stderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o777
}

#[test]
fn init_and_issue_write_a_ca_and_certificates_and_refuse_to_overwrite() {
    let tmp = tempfile::TempDir::new().expect("tempdir");
    let dir = tmp.path().join("mesh-ca");
    let d = dir.to_str().expect("utf-8 path");

    let out = succeeds(&["tls", "init", d]);
    assert!(
        out.contains("ca.pem") && out.contains("ca-key.pem"),
        "{out}"
    );
    #[cfg(unix)]
    assert_eq!(mode(&dir.join("ca-key.pem")), 0o600);

    let out = succeeds(&[
        "tls",
        "issue",
        d,
        "linkerd",
        "--dns",
        "linkerd",
        "--ip",
        "127.0.0.1",
    ]);
    assert!(out.contains("DNS linkerd, IP 127.0.0.1"), "{out}");
    let key = std::fs::read_to_string(dir.join("linkerd-key.pk8.pem")).expect("key");
    assert!(
        key.starts_with("-----BEGIN PRIVATE KEY-----"),
        "PKCS#8: {key}"
    );
    #[cfg(unix)]
    assert_eq!(mode(&dir.join("linkerd-key.pk8.pem")), 0o600);

    // Existing files are not replaced without --force.
    let before = std::fs::read(dir.join("linkerd.pem")).expect("cert");
    let again = plexus(&["tls", "issue", d, "linkerd"]);
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));
    assert_eq!(
        std::fs::read(dir.join("linkerd.pem")).expect("cert"),
        before
    );
    let ca_again = plexus(&["tls", "init", d]);
    assert_eq!(ca_again.status.code(), Some(2));
    succeeds(&["tls", "issue", d, "linkerd", "--dns", "linkerd", "--force"]);
    assert_ne!(
        std::fs::read(dir.join("linkerd.pem")).expect("cert"),
        before
    );

    // Without a CA there is nothing to sign with; bad names are refused.
    let empty = tmp.path().join("empty");
    let e = empty.to_str().expect("utf-8 path");
    let no_ca = plexus(&["tls", "issue", e, "node"]);
    assert_eq!(no_ca.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&no_ca.stderr).contains("plexus tls init"));
    assert_eq!(
        plexus(&["tls", "issue", d, "../escape"]).status.code(),
        Some(2)
    );
    assert_eq!(
        plexus(&["tls", "issue", d, "x", "--dns", "no_underscores"])
            .status
            .code(),
        Some(2)
    );
}

struct Handshake {
    client: Result<(), plexus_tls::TlsError>,
    server: Result<(), plexus_tls::TlsError>,
}

/// One loopback handshake and a ping/pong over it when both sides succeed.
async fn handshake(server: &ServerTls, client: &ClientTls, name: &str) -> Handshake {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let server = server.clone();
    let accepted = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.expect("accept");
        let mut tls = server.accept(tcp).await?;
        let mut buf = [0u8; 4];
        tls.read_exact(&mut buf)
            .await
            .map_err(plexus_tls::TlsError::from_io)?;
        tls.write_all(b"pong")
            .await
            .map_err(plexus_tls::TlsError::from_io)?;
        tls.flush().await.map_err(plexus_tls::TlsError::from_io)?;
        Ok(())
    });
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let client = async {
        let mut tls = client.connect(name, tcp).await?;
        tls.write_all(b"ping")
            .await
            .map_err(plexus_tls::TlsError::from_io)?;
        tls.flush().await.map_err(plexus_tls::TlsError::from_io)?;
        let mut buf = [0u8; 4];
        tls.read_exact(&mut buf)
            .await
            .map_err(plexus_tls::TlsError::from_io)?;
        assert_eq!(&buf, b"pong");
        Ok(())
    }
    .await;
    let server = accepted.await.expect("server task");
    Handshake { client, server }
}

#[tokio::test]
async fn issued_certificates_work_for_mutual_tls_with_plexus_tls() {
    let tmp = tempfile::TempDir::new().expect("tempdir");
    let dir = tmp.path();
    let d = dir.to_str().expect("utf-8 path");
    succeeds(&["tls", "init", d, "--days", "30"]);
    // One shared mesh certificate named `linkerd`, good for both sides.
    succeeds(&["tls", "issue", d, "linkerd", "--dns", "linkerd", "--client"]);
    // A server-only certificate.
    succeeds(&["tls", "issue", d, "edge", "--dns", "edge.example"]);

    let server = ServerTls::new(
        &ServerTlsSettings {
            cert_path: dir.join("linkerd.pem"),
            key_path: dir.join("linkerd-key.pk8.pem"),
            ca_cert_path: Some(dir.join("ca.pem")),
            require_client_auth: true,
            ..Default::default()
        },
        &[],
    )
    .expect("server from issued files");
    let client_with = |cert: &str| {
        ClientTls::new(
            &ClientTlsSettings {
                common_name: Some("linkerd".into()),
                trust_certs_bundle: Some(dir.join("ca.pem")),
                client_auth: Some(ClientAuthSettings {
                    cert_path: dir.join(format!("{cert}.pem")),
                    key_path: dir.join(format!("{cert}-key.pk8.pem")),
                    intermediate_certs_path: None,
                }),
                ..Default::default()
            },
            &[],
        )
        .expect("client from issued files")
    };

    let result = tokio::time::timeout(Duration::from_secs(30), async {
        let ok = handshake(&server, &client_with("linkerd"), "linkerd").await;
        ok.client.expect("client side");
        ok.server.expect("server side");

        // A certificate issued without --client is refused as a client certificate.
        let refused = handshake(&server, &client_with("edge"), "linkerd").await;
        let e = refused
            .server
            .expect_err("server refuses a server-only certificate");
        assert_eq!(e.metric_label(), "bad_certificate", "{e}");
        assert!(e.to_string().contains("extended key usage"), "{e}");
    })
    .await;
    result.expect("handshakes finish within the deadline");
}
