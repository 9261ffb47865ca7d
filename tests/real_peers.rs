//! zt against TLS peers no one here wrote: curl and openssl.
//!
//! These tools are installed by `.ci/run`; a missing tool fails the test
//! rather than skipping it.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code"
)]

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use zt_client::ZtClient;
use zt_core::matcher::IdMatcher;
use zt_core::{SpiffeId, TrustDomain};
use zt_dev::{FakeCa, FakeCaSource};
use zt_server::{VerifiedPeer, ZtServer};

const TTL: Duration = Duration::from_secs(300);

fn require(tool: &str) {
    let found = Command::new(tool)
        .arg(if tool == "openssl" {
            "version"
        } else {
            "--version"
        })
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "`{tool}` is required by this test; install it (.ci/run does)"
    );
}

fn id(s: &str) -> SpiffeId {
    SpiffeId::new(s).unwrap()
}

async fn whoami(peer: VerifiedPeer) -> String {
    format!("hello {}", peer.id())
}

async fn zt_server(ca: &FakeCa) -> (SocketAddr, oneshot::Sender<()>) {
    let billing = FakeCaSource::with_dns_names(
        ca.clone(),
        id("spiffe://example.org/billing"),
        TTL,
        vec!["billing.test".into()],
    )
    .unwrap();
    let server = ZtServer::builder(billing).build().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    tokio::spawn(async move {
        server
            .serve(listener, Router::new().route("/", get(whoami)), async {
                let _ = rx.await;
            })
            .await
            .unwrap();
    });
    (addr, tx)
}

fn write_svid(ca: &FakeCa, dir: &Path, name: &str, spiffe_id: &str) {
    let svid = ca.issue_x509_svid(&id(spiffe_id), TTL).unwrap();
    std::fs::write(dir.join(format!("{name}.pem")), svid.chain_pem()).unwrap();
    std::fs::write(dir.join(format!("{name}.key")), svid.key_pem()).unwrap();
    std::fs::write(dir.join("bundle.pem"), ca.bundle().to_pem()).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_with_fake_ca_pems_gets_200_from_zt_server() {
    require("curl");
    let ca = FakeCa::new(TrustDomain::new("example.org").unwrap()).unwrap();
    let (addr, _stop) = zt_server(&ca).await;
    let dir = tempfile::tempdir().unwrap();
    write_svid(&ca, dir.path(), "orders", "spiffe://example.org/orders");
    let out = tokio::task::spawn_blocking({
        let dir = dir.path().to_owned();
        move || {
            Command::new("curl")
                .args(["--silent", "--show-error", "--max-time", "20"])
                .arg("--resolve")
                .arg(format!("billing.test:{}:127.0.0.1", addr.port()))
                .arg("--cert")
                .arg(dir.join("orders.pem"))
                .arg("--key")
                .arg(dir.join("orders.key"))
                .arg("--cacert")
                .arg(dir.join("bundle.pem"))
                .args(["--write-out", "\n%{http_code}"])
                .arg(format!("https://billing.test:{}/", addr.port()))
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "curl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout, "hello spiffe://example.org/orders\n200");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_without_client_certificate_is_refused() {
    require("curl");
    let ca = FakeCa::new(TrustDomain::new("example.org").unwrap()).unwrap();
    let (addr, _stop) = zt_server(&ca).await;
    let dir = tempfile::tempdir().unwrap();
    write_svid(&ca, dir.path(), "orders", "spiffe://example.org/orders");
    let out = tokio::task::spawn_blocking({
        let dir = dir.path().to_owned();
        move || {
            Command::new("curl")
                .args(["--silent", "--max-time", "20", "--resolve"])
                .arg(format!("billing.test:{}:127.0.0.1", addr.port()))
                .arg("--cacert")
                .arg(dir.join("bundle.pem"))
                .arg(format!("https://billing.test:{}/", addr.port()))
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    assert!(
        !out.status.success(),
        "curl without a certificate got an answer"
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains("hello"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssl_s_client_without_certificate_is_refused() {
    require("openssl");
    let ca = FakeCa::new(TrustDomain::new("example.org").unwrap()).unwrap();
    let (addr, _stop) = zt_server(&ca).await;
    let dir = tempfile::tempdir().unwrap();
    write_svid(&ca, dir.path(), "orders", "spiffe://example.org/orders");
    let out = tokio::task::spawn_blocking({
        let dir = dir.path().to_owned();
        move || {
            // `-quiet` waits for the server's answer; `timeout` bounds it.
            let mut child = Command::new("timeout")
                .args(["30", "openssl", "s_client", "-connect"])
                .arg(addr.to_string())
                .arg("-CAfile")
                .arg(dir.join("bundle.pem"))
                .args(["-servername", "billing.test", "-quiet"])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            child
                .stdin
                .take()
                .unwrap()
                .write_all(b"GET / HTTP/1.1\r\nHost: billing.test\r\nConnection: close\r\n\r\n")
                .unwrap();
            child.wait_with_output().unwrap()
        }
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stdout.contains("hello"), "server answered: {stdout}");
    assert!(
        stderr.contains("alert certificate required"),
        "openssl did not report the refusal: {stderr}"
    );
}

/// `openssl s_server -Verify 1` presenting `name`'s SVID; killed on drop.
struct SServer {
    child: std::process::Child,
    port: u16,
}

impl Drop for SServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn s_server(dir: &Path, name: &str) -> SServer {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new("openssl")
        .arg("s_server")
        .arg("-accept")
        .arg(format!("127.0.0.1:{port}"))
        .arg("-cert")
        .arg(dir.join(format!("{name}.pem")))
        .arg("-key")
        .arg(dir.join(format!("{name}.key")))
        .arg("-CAfile")
        .arg(dir.join("bundle.pem"))
        .args(["-Verify", "1", "-www"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // s_server prints ACCEPT once it listens.
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let ready = lines
        .by_ref()
        .take(20)
        .any(|l| l.is_ok_and(|l| l.contains("ACCEPT")));
    assert!(ready, "openssl s_server did not start");
    std::thread::spawn(move || for _ in lines {});
    SServer { child, port }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zt_client_handshakes_with_openssl_s_server_and_enforces_the_pin() {
    require("openssl");
    let ca = FakeCa::new(TrustDomain::new("example.org").unwrap()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    write_svid(&ca, dir.path(), "billing", "spiffe://example.org/billing");
    let server = s_server(dir.path(), "billing");
    let addr: SocketAddr = format!("127.0.0.1:{}", server.port).parse().unwrap();
    let orders = FakeCaSource::new(ca.clone(), id("spiffe://example.org/orders"), TTL).unwrap();

    // Pinned to the ID s_server presents: the handshake completes and
    // s_server (which requires a client certificate) answers.
    let good = ZtClient::builder(orders.clone())
        .pin_server("spiffe://example.org/billing".parse::<IdMatcher>().unwrap())
        .build()
        .unwrap();
    let mut tls = good.connect(addr).await.unwrap();
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    tls.write_all(b"GET / HTTP/1.0\r\n\r\n").await.unwrap();
    // s_server -www sends a status page ending in </HTML> and keeps the
    // connection open; read until then, bounded.
    let mut page = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), async {
        let mut buf = [0u8; 4096];
        while !String::from_utf8_lossy(&page).contains("</HTML>") {
            match tls.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => page.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .expect("s_server page did not arrive");
    let page = String::from_utf8_lossy(&page);
    assert!(page.contains("200 ok") || page.contains("200 OK"), "{page}");
    assert!(
        page.contains("Client certificate"),
        "s_server saw no client cert: {page}"
    );
    // s_server serves one connection at a time.
    let _ = tls.shutdown().await;
    drop(tls);

    // Pinned elsewhere: refused, naming both IDs.
    let bad = ZtClient::builder(orders)
        .pin_server("spiffe://example.org/ledger".parse::<IdMatcher>().unwrap())
        .build()
        .unwrap();
    let err = tokio::time::timeout(Duration::from_secs(20), bad.connect(addr))
        .await
        .expect("handshake with s_server did not finish")
        .unwrap_err();
    let text = zt_tests::error_chain(&err);
    assert!(text.contains("spiffe://example.org/billing"), "{text}");
    assert!(text.contains("spiffe://example.org/ledger"), "{text}");
}
