//! Mutual TLS end to end over real sockets on 127.0.0.1: zt-client against
//! zt-server, both fed by fake CAs.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code"
)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use zt_client::{PeerRejected, Side, ZtClient};
use zt_core::matcher::IdMatcher;
use zt_core::peer::PeerError;
use zt_core::source::{StaticSource, SvidSource};
use zt_core::svid::X509Svid;
use zt_core::time::ManualClock;
use zt_core::{BundleSet, SpiffeId, TrustDomain};
use zt_dev::{BadSvid, FakeCa, FakeCaSource};
use zt_tests::error_chain as chain;
mod common;
use common::{Running, serve};
use zt_server::{VerifiedPeer, ZtServer};

const TTL: Duration = Duration::from_secs(300);

fn id(s: &str) -> SpiffeId {
    SpiffeId::new(s).unwrap()
}

fn ca(td: &str) -> FakeCa {
    FakeCa::new(TrustDomain::new(td).unwrap()).unwrap()
}

fn pin(s: &str) -> IdMatcher {
    s.parse().unwrap()
}

async fn whoami(peer: VerifiedPeer) -> String {
    format!("{} {}", peer.id(), peer.serial_hex())
}

async fn start(server: ZtServer) -> Running {
    serve(server, Router::new().route("/whoami", get(whoami))).await
}

fn url(addr: SocketAddr) -> String {
    format!("https://{addr}/whoami")
}

#[tokio::test]
async fn allowed_pair_talks_and_server_sees_the_client_id() {
    let ca = ca("example.org");
    let billing = FakeCaSource::new(ca.clone(), id("spiffe://example.org/billing"), TTL).unwrap();
    let orders = FakeCaSource::new(ca.clone(), id("spiffe://example.org/orders"), TTL).unwrap();
    let server = start(ZtServer::builder(billing).build().unwrap()).await;
    let client = ZtClient::builder(orders.clone())
        .pin_server(pin("spiffe://example.org/billing"))
        .build()
        .unwrap();
    let http = client.reqwest_client().unwrap();
    let resp = http.get(url(server.addr)).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let body = resp.text().await.unwrap();
    let serial = orders.current().unwrap().svid().serial_hex();
    assert_eq!(body, format!("spiffe://example.org/orders {serial}"));
}

#[tokio::test]
async fn client_rejects_server_with_unpinned_spiffe_id_naming_both_ids() {
    let ca = ca("example.org");
    let billing = FakeCaSource::new(ca.clone(), id("spiffe://example.org/billing"), TTL).unwrap();
    let orders = FakeCaSource::new(ca.clone(), id("spiffe://example.org/orders"), TTL).unwrap();
    let server = start(ZtServer::builder(billing).build().unwrap()).await;
    let client = ZtClient::builder(orders)
        .pin_server(pin("spiffe://example.org/ledger"))
        .build()
        .unwrap();
    let err = client
        .reqwest_client()
        .unwrap()
        .get(url(server.addr))
        .send()
        .await
        .unwrap_err();
    let text = chain(&err);
    assert!(text.contains("spiffe://example.org/billing"), "{text}");
    assert!(text.contains("spiffe://example.org/ledger"), "{text}");
    assert_refused_by_pin(PeerRejected::find(&err), "through reqwest");

    let raw = client.connect(server.addr).await.unwrap_err();
    assert!(
        matches!(raw, zt_client::Error::PeerRejected { .. }),
        "{raw:?}"
    );
    let text = raw.to_string();
    assert!(
        text.contains("presented `spiffe://example.org/billing`"),
        "{text}"
    );
    assert!(
        !text.contains("Other("),
        "rustls's Debug nesting leaked: {text}"
    );
    assert_refused_by_pin(PeerRejected::find(&raw), "through connect");

    // The same refusal out of a plain tokio-rustls handshake's io::Error.
    let tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let io = client
        .tls_connector()
        .connect(
            rustls_pki_types::ServerName::IpAddress(server.addr.ip().into()),
            tcp,
        )
        .await
        .unwrap_err();
    assert_refused_by_pin(PeerRejected::find(&io), "through tokio-rustls");
}

/// The typed refusal names the ID the server presented and the pin, in one
/// sentence without rustls's `Debug` nesting.
fn assert_refused_by_pin(found: Option<&PeerRejected>, path: &str) {
    let refusal = found.unwrap_or_else(|| panic!("no PeerRejected {path}"));
    assert_eq!(refusal.side(), Side::Client, "{path}");
    match refusal.error() {
        PeerError::NotAccepted {
            presented,
            expected,
        } => {
            assert_eq!(presented, &id("spiffe://example.org/billing"), "{path}");
            assert!(expected.contains("spiffe://example.org/ledger"), "{path}");
        }
        other => panic!("{path}: expected NotAccepted, got {other:?}"),
    }
    assert_eq!(
        refusal.to_string(),
        "zt refused the server: the peer presented `spiffe://example.org/billing`, \
         but only spiffe://example.org/ledger is accepted",
        "{path}"
    );
}

#[tokio::test]
async fn client_from_untrusted_trust_domain_is_rejected_by_the_server() {
    let ours = ca("example.org");
    let theirs = ca("evil.example");
    let billing = FakeCaSource::new(ours.clone(), id("spiffe://example.org/billing"), TTL).unwrap();
    let intruder = FakeCaSource::new(theirs, id("spiffe://evil.example/orders"), TTL).unwrap();
    // The intruder trusts our bundle, so only the server's check can stop it.
    intruder.add_federated_bundle(ours.bundle()).unwrap();
    let server = start(ZtServer::builder(billing).build().unwrap()).await;
    let client = ZtClient::builder(intruder)
        .pin_server(pin("spiffe://example.org/billing"))
        .build()
        .unwrap();
    let result = client
        .reqwest_client()
        .unwrap()
        .get(url(server.addr))
        .send()
        .await;
    assert!(result.is_err(), "untrusted client got {result:?}");
}

/// A source that serves `svid` as if it were valid (its clock is pinned
/// inside the SVID's validity), to present broken material to a peer.
fn presenting(svid: X509Svid, bundles: BundleSet) -> Arc<StaticSource> {
    let clock = ManualClock::new(svid.not_before() + Duration::from_secs(1));
    Arc::new(StaticSource::with_clock(svid, bundles, Arc::new(clock)))
}

async fn server_rejects(kind: BadSvid) {
    let ca = ca("example.org");
    let billing = FakeCaSource::new(ca.clone(), id("spiffe://example.org/billing"), TTL).unwrap();
    let bad = ca
        .issue_bad_x509_svid(kind, &id("spiffe://example.org/orders"))
        .unwrap();
    let svid = X509Svid::from_der(bad.chain.clone(), bad.key.clone_key()).unwrap();
    let client_source = presenting(svid, BundleSet::new().with(ca.bundle()));
    let server = start(ZtServer::builder(billing).build().unwrap()).await;
    // The client's own clock is pinned to its SVID's validity; it checks the
    // server with that clock too, which the server's fresh SVID passes only
    // for the not-yet-valid case, so it accepts any authenticated server.
    let client = ZtClient::builder(client_source)
        .dangerous()
        .accept_any_authenticated_server()
        .clock(zt_core::time::system_clock())
        .build()
        .unwrap();
    let result = client.connect(server.addr).await;
    let stream = match result {
        Err(_) => return,
        Ok(s) => s,
    };
    // TLS 1.3: the client finishes before the server's verdict arrives, so
    // the refusal shows on first use of the stream.
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = stream;
    let _ = stream
        .write_all(b"GET /whoami HTTP/1.1\r\nhost: x\r\n\r\n")
        .await;
    let mut buf = Vec::new();
    let read = stream.read_to_end(&mut buf).await;
    assert!(
        read.is_err() || buf.is_empty(),
        "server accepted {kind:?}: {}",
        String::from_utf8_lossy(&buf)
    );
}

#[tokio::test]
async fn expired_client_svid_is_rejected() {
    server_rejects(BadSvid::Expired).await;
}

#[tokio::test]
async fn not_yet_valid_client_svid_is_rejected() {
    server_rejects(BadSvid::NotYetValid).await;
}

#[tokio::test]
async fn client_svid_with_key_cert_sign_is_rejected() {
    server_rejects(BadSvid::KeyCertSignOnLeaf).await;
}

#[tokio::test]
async fn client_without_certificate_is_rejected() {
    let ca = ca("example.org");
    let billing = FakeCaSource::new(ca.clone(), id("spiffe://example.org/billing"), TTL).unwrap();
    let server = start(ZtServer::builder(billing).build().unwrap()).await;
    // A plain rustls client trusting the fake CA root, presenting nothing.
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.root_certificate()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .dangerous()
    .with_custom_certificate_verifier(Arc::new(AnyServer))
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = rustls_pki_types::ServerName::try_from("billing").unwrap();
    let outcome = async {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let mut tls = connector.connect(name, tcp).await?;
        tls.write_all(b"GET /whoami HTTP/1.1\r\nhost: x\r\n\r\n")
            .await?;
        let mut buf = Vec::new();
        tls.read_to_end(&mut buf).await?;
        Ok::<_, std::io::Error>(buf)
    }
    .await;
    match outcome {
        Err(e) => assert!(chain(&e).contains("CertificateRequired") || !e.to_string().is_empty()),
        Ok(buf) => assert!(
            buf.is_empty(),
            "server answered a client without certificate"
        ),
    }
}

#[derive(Debug)]
struct AnyServer;

impl rustls::client::danger::ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _: &rustls_pki_types::CertificateDer<'_>,
        _: &[rustls_pki_types::CertificateDer<'_>],
        _: &rustls_pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &rustls_pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &rustls_pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[tokio::test]
async fn federation_across_two_fake_cas() {
    let a = ca("a.example");
    let b = ca("b.example");
    let server_src = FakeCaSource::new(a.clone(), id("spiffe://a.example/api"), TTL).unwrap();
    let client_src = FakeCaSource::new(b.clone(), id("spiffe://b.example/partner"), TTL).unwrap();
    server_src.add_federated_bundle(b.bundle()).unwrap();
    client_src.add_federated_bundle(a.bundle()).unwrap();
    let server = start(ZtServer::builder(server_src).build().unwrap()).await;
    let client = ZtClient::builder(client_src)
        .pin_server(pin("spiffe://a.example/api"))
        .build()
        .unwrap();
    let body = client
        .reqwest_client()
        .unwrap()
        .get(url(server.addr))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(body.starts_with("spiffe://b.example/partner "), "{body}");
}

#[tokio::test]
async fn ca_rotation_with_overlap_keeps_both_generations_talking() {
    let ca = ca("example.org");
    let billing = FakeCaSource::new(ca.clone(), id("spiffe://example.org/billing"), TTL).unwrap();
    let orders = FakeCaSource::new(ca.clone(), id("spiffe://example.org/orders"), TTL).unwrap();
    let server = start(ZtServer::builder(billing.clone()).build().unwrap()).await;
    ca.rotate().unwrap();
    // Server re-issued from the new root; client still holds an old-root SVID.
    billing.rotate_now().unwrap();
    orders.refresh_bundles().unwrap();
    let client = ZtClient::builder(orders.clone())
        .pin_server(pin("spiffe://example.org/billing"))
        .build()
        .unwrap();
    let http = client.reqwest_client_fresh_connections();
    assert_eq!(
        http.get(url(server.addr)).send().await.unwrap().status(),
        200
    );
    // Both sides on the new root; then the overlap ends.
    orders.rotate_now().unwrap();
    ca.end_rotation_overlap();
    billing.refresh_bundles().unwrap();
    orders.refresh_bundles().unwrap();
    assert_eq!(
        http.get(url(server.addr)).send().await.unwrap().status(),
        200
    );
}

trait FreshConnections {
    fn reqwest_client_fresh_connections(&self) -> reqwest::Client;
}

impl FreshConnections for ZtClient {
    /// No connection reuse: every request performs a new handshake.
    fn reqwest_client_fresh_connections(&self) -> reqwest::Client {
        self.reqwest_builder()
            .pool_max_idle_per_host(0)
            .build()
            .unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_under_load_fails_no_request_and_server_sees_each_new_serial() {
    const WORKERS: usize = 8;
    const ROTATIONS: usize = 5;
    let ca = ca("example.org");
    let billing = FakeCaSource::new(ca.clone(), id("spiffe://example.org/billing"), TTL).unwrap();
    let orders = FakeCaSource::new(ca.clone(), id("spiffe://example.org/orders"), TTL).unwrap();
    let server = start(ZtServer::builder(billing.clone()).build().unwrap()).await;
    let client = ZtClient::builder(orders.clone())
        .pin_server(pin("spiffe://example.org/billing"))
        .build()
        .unwrap();

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let progress: Arc<Vec<std::sync::atomic::AtomicU64>> = Arc::new(
        (0..WORKERS)
            .map(|_| std::sync::atomic::AtomicU64::new(0))
            .collect(),
    );
    let mut workers = Vec::new();
    for w in 0..WORKERS {
        // Half the workers keep connections alive across rotations, half
        // open a new connection per request.
        let http = if w % 2 == 0 {
            client.reqwest_client().unwrap()
        } else {
            client.reqwest_client_fresh_connections()
        };
        let stop = stop.clone();
        let progress = progress.clone();
        let target = url(server.addr);
        workers.push(tokio::spawn(async move {
            let (mut ok, mut failed) = (0u64, Vec::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match http.get(&target).send().await {
                    Ok(r) if r.status() == 200 => ok += 1,
                    Ok(r) => failed.push(format!("status {}", r.status())),
                    Err(e) => failed.push(chain(&e)),
                }
                progress[w].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            (ok, failed)
        }));
    }

    let fresh = client.reqwest_client_fresh_connections();
    let mut serials = std::collections::HashSet::new();
    for _ in 0..ROTATIONS {
        orders.rotate_now().unwrap();
        billing.rotate_now().unwrap();
        let expected = orders.current().unwrap().svid().serial_hex();
        let body = fresh
            .get(url(server.addr))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert_eq!(body, format!("spiffe://example.org/orders {expected}"));
        assert!(serials.insert(expected), "serial repeated");
        // Every worker completes requests under this generation of SVIDs
        // before the next rotation.
        let marks: Vec<u64> = progress
            .iter()
            .map(|p| p.load(std::sync::atomic::Ordering::Relaxed))
            .collect();
        while progress
            .iter()
            .zip(&marks)
            .any(|(p, m)| p.load(std::sync::atomic::Ordering::Relaxed) < m + 3)
        {
            tokio::task::yield_now().await;
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut total = 0;
    for w in workers {
        let (ok, failed) = w.await.unwrap();
        assert!(failed.is_empty(), "failed requests: {failed:?}");
        total += ok;
    }
    assert!(
        total >= (WORKERS * ROTATIONS * 3) as u64,
        "only {total} requests"
    );
    assert_eq!(serials.len(), ROTATIONS);
}

#[tokio::test]
async fn server_without_svid_refuses_handshakes_instead_of_serving_unauthenticated() {
    let clock = ManualClock::starting_now();
    let ca = FakeCa::builder(TrustDomain::new("example.org").unwrap())
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap();
    let billing = FakeCaSource::new(
        ca.clone(),
        id("spiffe://example.org/billing"),
        Duration::from_secs(10),
    )
    .unwrap();
    let orders = FakeCaSource::new(ca, id("spiffe://example.org/orders"), TTL).unwrap();
    let server = start(
        ZtServer::builder(billing)
            .clock(Arc::new(clock.clone()))
            .build()
            .unwrap(),
    )
    .await;
    clock.advance(Duration::from_secs(11));
    let client = ZtClient::builder(orders)
        .pin_server(pin("spiffe://example.org/billing"))
        .build()
        .unwrap();
    assert!(client.connect(server.addr).await.is_err());
}

#[tokio::test]
async fn silent_client_is_cut_off_at_the_handshake_timeout_without_stalling_others() {
    use tokio::io::AsyncReadExt as _;
    let ca = ca("example.org");
    let billing = FakeCaSource::new(ca.clone(), id("spiffe://example.org/billing"), TTL).unwrap();
    let orders = FakeCaSource::new(ca.clone(), id("spiffe://example.org/orders"), TTL).unwrap();
    let server = start(
        ZtServer::builder(billing)
            .handshake_timeout(Duration::from_millis(300))
            .max_concurrent_handshakes(2)
            .build()
            .unwrap(),
    )
    .await;
    // Connects and never says a word.
    let mut silent = tokio::net::TcpStream::connect(server.addr).await.unwrap();

    // A real client is served while the silent one still holds its slot.
    let client = ZtClient::builder(orders)
        .pin_server(pin("spiffe://example.org/billing"))
        .build()
        .unwrap();
    let resp = client
        .reqwest_client()
        .unwrap()
        .get(url(server.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    // The silent connection is closed by the server once the timeout fires.
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(10), silent.read(&mut buf))
        .await
        .expect("server kept a silent connection open past its handshake timeout");
    assert!(matches!(read, Ok(0) | Err(_)), "unexpected bytes: {read:?}");
}

#[tokio::test]
async fn serve_returns_after_shutdown_is_signalled() {
    let ca = ca("example.org");
    let billing = FakeCaSource::new(ca.clone(), id("spiffe://example.org/billing"), TTL).unwrap();
    let server = ZtServer::builder(billing).build().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    let serving = tokio::spawn(async move {
        server
            .serve(
                listener,
                Router::new().route("/whoami", get(whoami)),
                async {
                    let _ = rx.await;
                },
            )
            .await
    });
    tx.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(15), serving)
        .await
        .expect("serve did not return after shutdown")
        .unwrap()
        .unwrap();
    // The listener is gone.
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[test]
fn client_without_a_server_pin_does_not_build_unless_danger_is_chosen() {
    let ca = ca("example.org");
    let orders = FakeCaSource::new(ca, id("spiffe://example.org/orders"), TTL).unwrap();
    let err = ZtClient::builder(orders.clone()).build().unwrap_err();
    assert!(matches!(err, zt_client::Error::NoServerPin), "{err:?}");
    assert!(err.to_string().contains("dangerous()"), "{err}");
    ZtClient::builder(orders)
        .dangerous()
        .accept_any_authenticated_server()
        .build()
        .unwrap();
}

#[tokio::test]
async fn server_caller_pin_refuses_other_workloads_of_the_same_trust_domain() {
    let ca = ca("example.org");
    let billing = FakeCaSource::new(ca.clone(), id("spiffe://example.org/billing"), TTL).unwrap();
    let server = start(
        ZtServer::builder(billing)
            .accept_callers(pin("spiffe://example.org/orders"))
            .build()
            .unwrap(),
    )
    .await;
    for (caller, allowed) in [("orders", true), ("ledger", false)] {
        let source = FakeCaSource::new(
            ca.clone(),
            id(&format!("spiffe://example.org/{caller}")),
            TTL,
        )
        .unwrap();
        let client = ZtClient::builder(source)
            .pin_server(pin("spiffe://example.org/billing"))
            .build()
            .unwrap();
        let result = client
            .reqwest_client()
            .unwrap()
            .get(url(server.addr))
            .send()
            .await;
        assert_eq!(result.is_ok(), allowed, "{caller}: {result:?}");
    }
}
