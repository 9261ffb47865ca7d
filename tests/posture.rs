//! Post-quantum key exchange by default, the option to require it, and the
//! posture of each call in its audit record: zt against zt (separate
//! sources), against a classical rustls client (ring provider), and against
//! curl, whose OpenSSL has no ML-KEM.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code"
)]

use std::net::SocketAddr;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use zt_authz::Authorizer;
use zt_authz::audit::{AuditEvent, AuditSink};
use zt_authz::policy::Policy;
use zt_client::ZtClient;
use zt_core::matcher::IdMatcher;
use zt_core::{SpiffeId, TrustDomain};
use zt_dev::{FakeCa, FakeCaSource};
use zt_server::{AuthorizeLayer, VerifiedPeer, ZtServer};
use zt_tls::{ConfigError, Posture, TlsOptions};

const TTL: Duration = Duration::from_secs(300);

const POLICY: &str = r#"
version = "posture-1"

[[rule]]
id = "orders-reads"
effect = "allow"
callers = ["spiffe://example.org/orders"]
http = [{ method = "GET", path = "/posture" }]
"#;

fn id(s: &str) -> SpiffeId {
    SpiffeId::new(s).unwrap()
}

/// Audit events as the JSON lines a file sink would write.
#[derive(Default)]
struct Lines(Mutex<Vec<serde_json::Value>>);

impl AuditSink for Lines {
    fn record(&self, event: &AuditEvent<'_>) {
        let line = event.to_json_line();
        self.0
            .lock()
            .unwrap()
            .push(serde_json::from_slice(&line).unwrap());
    }
}

async fn posture(peer: VerifiedPeer) -> String {
    peer.posture()
        .map_or_else(|| "no posture".to_owned(), ToString::to_string)
}

struct Billing {
    addr: SocketAddr,
    audit: Arc<Lines>,
    _stop: oneshot::Sender<()>,
}

async fn billing(ca: &FakeCa, require_post_quantum: bool) -> Billing {
    let source = FakeCaSource::with_dns_names(
        ca.clone(),
        id("spiffe://example.org/billing"),
        TTL,
        vec!["billing.test".into()],
    )
    .unwrap();
    let server = ZtServer::builder(source)
        .require_post_quantum(require_post_quantum)
        .build()
        .unwrap();
    let audit = Arc::new(Lines::default());
    let authorizer = Authorizer::builder(Policy::from_toml_str(POLICY, "policy.toml").unwrap())
        .target("billing")
        .audit_sink(audit.clone())
        .build();
    let app = Router::new()
        .route("/posture", get(posture))
        .route_layer(AuthorizeLayer::new(authorizer));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    tokio::spawn(async move {
        server
            .serve(listener, app, async {
                let _ = rx.await;
            })
            .await
            .unwrap();
    });
    Billing {
        addr,
        audit,
        _stop: tx,
    }
}

fn orders(ca: &FakeCa) -> Arc<FakeCaSource> {
    FakeCaSource::new(ca.clone(), id("spiffe://example.org/orders"), TTL).unwrap()
}

fn ca() -> FakeCa {
    FakeCa::new(TrustDomain::new("example.org").unwrap()).unwrap()
}

fn pin() -> IdMatcher {
    "spiffe://example.org/billing".parse().unwrap()
}

async fn get_posture(client: &reqwest::Client, addr: SocketAddr) -> reqwest::Result<String> {
    client
        .get(format!("https://{addr}/posture"))
        .send()
        .await?
        .error_for_status()?
        .text()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zt_to_zt_negotiates_x25519mlkem768_and_the_audit_record_says_so() {
    let ca = ca();
    let server = billing(&ca, false).await;
    let client = ZtClient::builder(orders(&ca))
        .pin_server(pin())
        .build()
        .unwrap()
        .reqwest_client()
        .unwrap();
    let seen = get_posture(&client, server.addr).await.unwrap();
    assert!(
        seen.starts_with("TLSv1.3 TLS13_") && seen.ends_with(" X25519MLKEM768"),
        "{seen}"
    );

    let lines = server.audit.0.lock().unwrap();
    let [event] = lines.as_slice() else {
        panic!("one audit event expected: {lines:?}")
    };
    assert_eq!(event["decision"], "allow");
    assert_eq!(event["tls_version"], "TLSv1.3");
    assert_eq!(event["tls_kx_group"], "X25519MLKEM768");
    assert_eq!(event["tls_post_quantum"], true);
    assert!(
        event["tls_cipher_suite"]
            .as_str()
            .unwrap()
            .starts_with("TLS13_")
    );
    assert!(event["caller_not_after"].is_string(), "{event}");
}

/// A client on rustls's ring provider: classical groups only.
fn classical_client(ca: &FakeCa) -> reqwest::Client {
    ZtClient::builder(orders(ca))
        .pin_server(pin())
        .crypto_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .build()
        .unwrap()
        .reqwest_client()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_classical_client_falls_back_to_x25519_unless_the_server_requires_post_quantum() {
    let ca = ca();
    let open = billing(&ca, false).await;
    let seen = get_posture(&classical_client(&ca), open.addr)
        .await
        .unwrap();
    assert!(seen.ends_with(" x25519"), "{seen}");
    let lines = open.audit.0.lock().unwrap().clone();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["tls_kx_group"], "x25519");
    assert_eq!(lines[0]["tls_post_quantum"], false);

    let strict = billing(&ca, true).await;
    let err = get_posture(&classical_client(&ca), strict.addr)
        .await
        .unwrap_err();
    assert!(
        zt_tests::error_chain(&err).contains("received fatal alert: HandshakeFailure"),
        "{}",
        zt_tests::error_chain(&err)
    );
    assert!(strict.audit.0.lock().unwrap().is_empty());
    // A post-quantum client still gets in.
    let client = ZtClient::builder(orders(&ca))
        .pin_server(pin())
        .require_post_quantum(true)
        .build()
        .unwrap()
        .reqwest_client()
        .unwrap();
    let seen = get_posture(&client, strict.addr).await.unwrap();
    assert!(seen.ends_with(" X25519MLKEM768"), "{seen}");
}

#[test]
fn requiring_post_quantum_with_a_classical_provider_is_a_typed_error() {
    let ca = ca();
    let err = TlsOptions::new(orders(&ca))
        .crypto_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .require_post_quantum(true)
        .client_config()
        .unwrap_err();
    assert_eq!(
        err,
        ConfigError::NoPostQuantumKeyExchange {
            groups: vec!["x25519".into(), "secp256r1".into(), "secp384r1".into()]
        }
    );
    assert!(err.to_string().contains("aws-lc-rs"), "{err}");
    let built = ZtServer::builder(orders(&ca))
        .crypto_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .require_post_quantum(true)
        .build();
    assert!(matches!(built, Err(zt_server::Error::Tls(_))));
}

/// curl (OpenSSL 3.0 here, no ML-KEM) with an SVID from the fake CA.
fn curl(ca: &FakeCa, addr: SocketAddr) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let svid = ca
        .issue_x509_svid(&id("spiffe://example.org/orders"), TTL)
        .unwrap();
    std::fs::write(dir.path().join("orders.pem"), svid.chain_pem()).unwrap();
    std::fs::write(dir.path().join("orders.key"), svid.key_pem()).unwrap();
    std::fs::write(dir.path().join("bundle.pem"), ca.bundle().to_pem()).unwrap();
    Command::new("curl")
        .args(["--silent", "--show-error", "--max-time", "20"])
        .arg("--resolve")
        .arg(format!("billing.test:{}:127.0.0.1", addr.port()))
        .arg("--cert")
        .arg(dir.path().join("orders.pem"))
        .arg("--key")
        .arg(dir.path().join("orders.key"))
        .arg("--cacert")
        .arg(dir.path().join("bundle.pem"))
        .arg(format!("https://billing.test:{}/posture", addr.port()))
        .output()
        .expect("curl is required by this test; install it (.ci/run does)")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_completes_through_the_classical_fallback_and_is_refused_when_post_quantum_is_required()
 {
    let ca = ca();
    let open = billing(&ca, false).await;
    let out = tokio::task::spawn_blocking({
        let ca = ca.clone();
        move || curl(&ca, open.addr)
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let body = String::from_utf8_lossy(&out.stdout);
    assert!(body.starts_with("TLSv1.3 "), "{body}");
    assert!(!body.contains("MLKEM"), "{body}");

    let strict = billing(&ca, true).await;
    let out = tokio::task::spawn_blocking({
        let ca = ca.clone();
        move || curl(&ca, strict.addr)
    })
    .await
    .unwrap();
    assert!(!out.status.success(), "curl got through a PQ-only server");
    assert!(String::from_utf8_lossy(&out.stdout).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_side_reads_the_posture_of_its_connection() {
    let ca = ca();
    let server = billing(&ca, false).await;
    let client = ZtClient::builder(orders(&ca))
        .pin_server(pin())
        .build()
        .unwrap();
    let tls = client.connect(server.addr).await.unwrap();
    let posture = Posture::of(tls.get_ref().1).unwrap();
    assert!(posture.is_post_quantum(), "{posture}");
    assert_eq!(posture.version(), "TLSv1.3");
    assert_eq!(posture.kx_group_name(), Some("X25519MLKEM768"));
}
