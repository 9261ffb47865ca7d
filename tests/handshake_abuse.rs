//! Handshake abuse with oversized certificates, over real sockets on
//! 127.0.0.1: a peer presenting an absurdly long chain or a huge
//! certificate is refused with an error that says so, by the server and by
//! the client, and abusive clients do not hold up a legitimate one.
//!
//! (A client that connects and never completes its handshake is covered in
//! `tests/mtls.rs`.)

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code"
)]

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axum::Router;
use axum::routing::get;
use rustls::SignatureScheme;
use rustls::client::ResolvesClientCert;
use rustls::crypto::ring::sign::any_supported_type;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::ServerName;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};
use zt_client::ZtClient;
use zt_core::source::{StaticSource, SvidSource};
use zt_core::svid::X509Svid;
use zt_core::x509::{MAX_CHAIN_LEN, SvidError, Usage, verify_x509_svid};
use zt_core::{BundleSet, SpiffeId, TrustDomain};
use zt_dev::{FakeCa, FakeCaSource};
use zt_tests::error_chain;
mod common;
use common::{Running, serve};
use zt_server::{VerifiedPeer, ZtServer};

const TTL: Duration = Duration::from_secs(300);
/// Intermediates in the abusive chain.
const ABSURD_INTERMEDIATES: usize = 50;
/// DNS SANs that make one certificate larger than the 64 KiB a TLS
/// handshake message may hold in rustls.
const HUGE_DNS_SANS: usize = 3000;

fn id(s: &str) -> SpiffeId {
    SpiffeId::new(s).unwrap()
}

/// A CA with an intermediate, so a valid chain is leaf + intermediate.
fn ca() -> FakeCa {
    FakeCa::builder(TrustDomain::new("example.org").unwrap())
        .intermediate(true)
        .build()
        .unwrap()
}

/// A valid SVID for `name` whose chain repeats the intermediate until it
/// holds `len` certificates: every certificate is genuine, only the length
/// is abusive.
fn padded_svid(ca: &FakeCa, name: &str, len: usize) -> X509Svid {
    let svid = ca
        .issue_x509_svid(&id(&format!("spiffe://example.org/{name}")), TTL)
        .unwrap();
    let intermediate = ca.intermediate_certificate().unwrap();
    let mut chain = vec![svid.leaf().clone()];
    chain.resize(len, intermediate);
    X509Svid::from_der(chain, svid.private_key().clone_key()).unwrap()
}

/// A source serving `svid` with `ca`'s bundle.
fn static_source(ca: &FakeCa, svid: X509Svid) -> Arc<StaticSource> {
    Arc::new(StaticSource::new(svid, BundleSet::new().with(ca.bundle())))
}

fn client(source: Arc<impl SvidSource>) -> ZtClient {
    ZtClient::builder(source)
        .pin_server("spiffe://example.org/billing".parse().unwrap())
        .build()
        .unwrap()
}

async fn whoami(peer: VerifiedPeer) -> String {
    peer.id().to_string()
}

async fn start(server: ZtServer) -> Running {
    serve(server, Router::new().route("/whoami", get(whoami))).await
}

/// Runs one handshake of `acceptor` against `connector` over 127.0.0.1 and
/// returns what each side reported: the server side, then the client side.
async fn handshake_both_sides(
    acceptor: TlsAcceptor,
    connector: TlsConnector,
) -> (Result<(), String>, Result<(), String>) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepting = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        match acceptor.accept(tcp).await {
            Ok(mut tls) => {
                let mut buf = [0u8; 1];
                let _ = tls.read(&mut buf).await;
                Ok(())
            }
            Err(e) => Err(error_chain(&e)),
        }
    });
    let connecting = async {
        let tcp = TcpStream::connect(addr).await.unwrap();
        match connector
            .connect(ServerName::IpAddress(addr.ip().into()), tcp)
            .await
        {
            Ok(mut tls) => {
                // In TLS 1.3 the server checks the client's certificate
                // after the client has finished its side of the handshake;
                // a refusal arrives as an alert on the first read.
                let _ = tls.write_all(b"x").await;
                let mut buf = [0u8; 1];
                match tls.read(&mut buf).await {
                    Err(e) => Err(error_chain(&e)),
                    Ok(0) => Err("closed by the server".to_owned()),
                    Ok(_) => Ok(()),
                }
            }
            Err(e) => Err(error_chain(&e)),
        }
    };
    let client_side = tokio::time::timeout(Duration::from_secs(10), connecting)
        .await
        .expect("the client side did not finish");
    let server_side = tokio::time::timeout(Duration::from_secs(10), accepting)
        .await
        .expect("the server side did not finish")
        .unwrap();
    (server_side, client_side)
}

/// Presents a fixed certificate and key, with none of the checks zt's own
/// resolvers make: an abusive peer.
#[derive(Debug)]
struct Present(Arc<CertifiedKey>);

impl Present {
    fn new(svid: &X509Svid) -> Arc<Self> {
        let key = any_supported_type(svid.private_key()).unwrap();
        Arc::new(Self(Arc::new(CertifiedKey::new(
            svid.chain().to_vec(),
            key,
        ))))
    }
}

impl ResolvesClientCert for Present {
    fn resolve(&self, _: &[&[u8]], _: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

impl ResolvesServerCert for Present {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

/// A valid SVID for `name` with so many DNS SANs that its certificate is
/// larger than a TLS handshake message may be. (zt's own resolvers cannot
/// present it: rustls-webpki does not parse a certificate over 64 KiB, so
/// `CertifiedKey::from_der` fails; an abusive peer does not care.)
fn huge_svid(ca: &FakeCa, name: &str) -> X509Svid {
    let names: Vec<String> = (0..HUGE_DNS_SANS)
        .map(|i| format!("host-{i:05}.abuse.example.org"))
        .collect();
    let svid = ca
        .issue_x509_svid_with_dns(&id(&format!("spiffe://example.org/{name}")), TTL, &names)
        .unwrap();
    let leaf_len = svid.leaf().len();
    assert!(
        leaf_len > 65_535,
        "the certificate is only {leaf_len} bytes"
    );
    svid
}

/// `client`'s configuration, presenting `svid` instead of its own.
fn client_presenting(client: &ZtClient, svid: &X509Svid) -> TlsConnector {
    let mut config = (*client.rustls_config_with_alpn(Vec::new())).clone();
    config.client_auth_cert_resolver = Present::new(svid);
    TlsConnector::from(Arc::new(config))
}

/// `server`'s configuration, presenting `svid` instead of its own.
fn server_presenting(server: &ZtServer, svid: &X509Svid) -> TlsAcceptor {
    let mut config = (*server.rustls_config_with_alpn(Vec::new())).clone();
    config.cert_resolver = Present::new(svid);
    TlsAcceptor::from(Arc::new(config))
}

#[test]
fn a_chain_longer_than_the_bound_is_refused_before_verification_and_one_at_the_bound_verifies() {
    let ca = ca();
    let bundles = BundleSet::new().with(ca.bundle());
    let at_bound = padded_svid(&ca, "orders", MAX_CHAIN_LEN);
    verify_x509_svid(
        at_bound.chain(),
        &bundles,
        SystemTime::now(),
        Usage::ClientAuth,
    )
    .unwrap();

    for len in [MAX_CHAIN_LEN + 1, ABSURD_INTERMEDIATES + 1] {
        let svid = padded_svid(&ca, "orders", len);
        let err = verify_x509_svid(svid.chain(), &bundles, SystemTime::now(), Usage::ClientAuth)
            .unwrap_err();
        assert_eq!(
            err,
            SvidError::ChainTooLong {
                len,
                max: MAX_CHAIN_LEN
            }
        );
        assert!(
            err.to_string()
                .contains(&format!("the chain has {len} certificates")),
            "{err}"
        );
    }
}

#[tokio::test]
async fn server_refuses_a_client_presenting_fifty_intermediates_and_says_why() {
    let ca = ca();
    let billing = FakeCaSource::new(ca.clone(), id("spiffe://example.org/billing"), TTL).unwrap();
    let server = ZtServer::builder(billing).build().unwrap();
    let abusive = client(static_source(
        &ca,
        padded_svid(&ca, "orders", ABSURD_INTERMEDIATES + 1),
    ));
    let (server_side, client_side) =
        handshake_both_sides(server.tls_acceptor(), abusive.tls_connector()).await;
    let server_error = server_side.expect_err("the server accepted a 51-certificate chain");
    assert!(
        server_error.contains("the chain has 51 certificates, more than the 8"),
        "{server_error}"
    );
    let client_error = client_side.expect_err("the client was not told");
    assert!(
        client_error.to_lowercase().contains("certificate"),
        "{client_error}"
    );
}

#[tokio::test]
async fn client_refuses_a_server_presenting_fifty_intermediates_and_says_why() {
    let ca = ca();
    let server = ZtServer::builder(static_source(
        &ca,
        padded_svid(&ca, "billing", ABSURD_INTERMEDIATES + 1),
    ))
    .build()
    .unwrap();
    let orders = FakeCaSource::new(ca.clone(), id("spiffe://example.org/orders"), TTL).unwrap();
    let (server_side, client_side) =
        handshake_both_sides(server.tls_acceptor(), client(orders).tls_connector()).await;
    let client_error = client_side.expect_err("the client accepted a 51-certificate chain");
    assert!(
        client_error.contains("the chain has 51 certificates, more than the 8"),
        "{client_error}"
    );
    assert!(server_side.is_err(), "the server completed a handshake");
}

#[tokio::test]
async fn server_refuses_a_client_certificate_larger_than_a_handshake_message() {
    let ca = ca();
    let billing = FakeCaSource::new(ca.clone(), id("spiffe://example.org/billing"), TTL).unwrap();
    let server = ZtServer::builder(billing).build().unwrap();
    let orders = FakeCaSource::new(ca.clone(), id("spiffe://example.org/orders"), TTL).unwrap();
    let abusive = client_presenting(&client(orders), &huge_svid(&ca, "orders"));
    let (server_side, client_side) = handshake_both_sides(server.tls_acceptor(), abusive).await;
    let server_error = server_side.expect_err("the server accepted a huge certificate");
    assert!(
        server_error.contains("HandshakePayloadTooLarge"),
        "{server_error}"
    );
    assert!(client_side.is_err(), "the client completed a handshake");
}

#[tokio::test]
async fn client_refuses_a_server_certificate_larger_than_a_handshake_message() {
    let ca = ca();
    let billing = FakeCaSource::new(ca.clone(), id("spiffe://example.org/billing"), TTL).unwrap();
    let server = ZtServer::builder(billing).build().unwrap();
    let abusive = server_presenting(&server, &huge_svid(&ca, "billing"));
    let orders = FakeCaSource::new(ca.clone(), id("spiffe://example.org/orders"), TTL).unwrap();
    let (server_side, client_side) =
        handshake_both_sides(abusive, client(orders).tls_connector()).await;
    let client_error = client_side.expect_err("the client accepted a huge certificate");
    assert!(
        client_error.contains("HandshakePayloadTooLarge"),
        "{client_error}"
    );
    assert!(server_side.is_err(), "the server completed a handshake");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abusive_clients_do_not_stall_a_legitimate_one() {
    let ca = ca();
    let billing = FakeCaSource::new(ca.clone(), id("spiffe://example.org/billing"), TTL).unwrap();
    // Few handshake slots, so abusive handshakes would starve others if
    // they held on to them.
    let server = start(
        ZtServer::builder(billing)
            .max_concurrent_handshakes(2)
            .build()
            .unwrap(),
    )
    .await;
    let long_chain = client(static_source(
        &ca,
        padded_svid(&ca, "orders", ABSURD_INTERMEDIATES + 1),
    ));
    let orders = FakeCaSource::new(ca.clone(), id("spiffe://example.org/orders"), TTL).unwrap();
    let huge = client_presenting(&client(orders), &huge_svid(&ca, "orders"));
    let legitimate =
        client(FakeCaSource::new(ca.clone(), id("spiffe://example.org/orders"), TTL).unwrap())
            // A new connection, so a new handshake, for every request.
            .reqwest_builder()
            .pool_max_idle_per_host(0)
            .build()
            .unwrap();

    // Abusive clients keep handshaking in a loop until the legitimate
    // requests are done.
    let (done, abuse_stop) = tokio::sync::watch::channel(false);
    let (first_refusal, mut refusing) = tokio::sync::mpsc::channel::<()>(16);
    let mut abusers = Vec::new();
    for abusive in [long_chain.tls_connector(), huge]
        .into_iter()
        .flat_map(|c| [c.clone(), c])
    {
        let addr = server.addr;
        let mut stop = abuse_stop.clone();
        let first_refusal = first_refusal.clone();
        abusers.push(tokio::spawn(async move {
            let mut refused = 0u32;
            while !*stop.borrow_and_update() {
                let attempt = async {
                    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
                    let tcp = TcpStream::connect(addr).await?;
                    let mut tls = abusive
                        .connect(ServerName::IpAddress(addr.ip().into()), tcp)
                        .await?;
                    tls.write_all(b"GET /whoami HTTP/1.1\r\nhost: billing\r\n\r\n")
                        .await?;
                    let mut buf = [0u8; 64];
                    let n = tls.read(&mut buf).await?;
                    Ok::<_, Box<dyn std::error::Error + Send + Sync>>(n)
                };
                match tokio::time::timeout(Duration::from_secs(10), attempt).await {
                    // An error, or closed without a byte of response.
                    Ok(Err(_) | Ok(0)) => {
                        if refused == 0 {
                            let _ = first_refusal.try_send(());
                        }
                        refused += 1;
                    }
                    Ok(Ok(n)) => panic!("an abusive client was answered ({n} bytes)"),
                    Err(_) => panic!("an abusive handshake hung for 10 s"),
                }
            }
            refused
        }));
    }
    // Measure once the abuse is under way.
    refusing.recv().await.unwrap();

    let started = Instant::now();
    for _ in 0..20 {
        let response = tokio::time::timeout(
            Duration::from_secs(5),
            legitimate
                .get(format!("https://{}/whoami", server.addr))
                .send(),
        )
        .await
        .expect("a legitimate request waited 5 s behind abusive handshakes")
        .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.text().await.unwrap(),
            "spiffe://example.org/orders"
        );
    }
    let elapsed = started.elapsed();
    done.send(true).unwrap();
    let mut refusals = 0;
    for abuser in abusers {
        refusals += abuser.await.unwrap();
    }
    println!("20 legitimate requests in {elapsed:?} beside {refusals} refused abusive handshakes");
    assert!(
        refusals >= 4,
        "the abusive clients ran: {refusals} refusals"
    );
    assert!(
        elapsed < Duration::from_secs(10),
        "legitimate requests took {elapsed:?}"
    );
}
