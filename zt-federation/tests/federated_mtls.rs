//! Two trust domains federated through zt's bundle endpoints, end to end:
//! a zt-client of a.test calls a zt-server of b.test over mutual TLS once
//! each side has fetched the other's bundle; a client of c.test, which
//! nobody federates with, is refused.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code"
)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use zt_client::{Error as ClientError, ZtClient};
use zt_core::peer::PeerError;
use zt_core::source::SvidSource;
use zt_core::x509::{SvidError, Usage, verify_x509_svid};
use zt_core::{SpiffeId, TrustDomain};
use zt_dev::{FakeCa, FakeCaSource};
use zt_federation::{BundleEndpointServer, Endpoint, FederatedSource, Federation, WebRoots};
use zt_server::ZtServer;
use zt_tls::{PeerRejected, Side};

const TTL: Duration = Duration::from_secs(300);

fn td(s: &str) -> TrustDomain {
    s.parse().unwrap()
}

fn id(s: &str) -> SpiffeId {
    s.parse().unwrap()
}

/// A throwaway Web PKI: a CA and a leaf for 127.0.0.1, as PEM.
fn web_pki() -> (String, String, String) {
    use rcgen::{
        BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
    };
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let mut leaf = CertificateParams::new(Vec::<String>::new()).unwrap();
    leaf.subject_alt_names
        .push(SanType::IpAddress(std::net::IpAddr::from([127, 0, 0, 1])));
    let leaf_cert = leaf
        .signed_by(&leaf_key, &Issuer::from_params(&ca, &ca_key))
        .unwrap();
    (ca_cert.pem(), leaf_cert.pem(), leaf_key.serialize_pem())
}

/// A zt-server that answers each connection with the verified client's
/// SPIFFE ID, and reports each handshake outcome.
async fn whoami_server(
    source: Arc<FederatedSource>,
) -> (
    SocketAddr,
    mpsc::UnboundedReceiver<Result<SpiffeId, String>>,
) {
    let server = ZtServer::builder(source.clone()).build().unwrap();
    let acceptor = server.tls_acceptor();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            match acceptor.accept(tcp).await {
                Ok(mut tls) => {
                    let chain = tls.get_ref().1.peer_certificates().unwrap().to_vec();
                    let bundles = source.current().unwrap().bundles().clone();
                    let peer =
                        verify_x509_svid(&chain, &bundles, SystemTime::now(), Usage::ClientAuth)
                            .unwrap();
                    let _ = tls.write_all(peer.id().to_string().as_bytes()).await;
                    let _ = tls.shutdown().await;
                    let _ = tx.send(Ok(peer.id().clone()));
                }
                Err(e) => {
                    let reason = match PeerRejected::find(&e) {
                        Some(rejected) => {
                            assert_eq!(rejected.side(), Side::Server);
                            rejected.error().to_string()
                        }
                        None => e.to_string(),
                    };
                    let _ = tx.send(Err(reason));
                }
            }
        }
    });
    (addr, rx)
}

/// Connects (the client verifies the server) and reads the answer (in
/// TLS 1.3 the server's verdict on the client arrives with it).
async fn call(client: &ZtClient, addr: SocketAddr) -> Result<std::io::Result<String>, ClientError> {
    let mut tls = client.connect(addr).await?;
    let mut body = String::new();
    Ok(tls.read_to_string(&mut body).await.map(|_| body))
}

#[tokio::test]
async fn a_workload_calls_a_federated_trust_domain_and_an_unfederated_one_is_refused() {
    let a = FakeCa::new(td("a.test")).unwrap();
    let b = FakeCa::new(td("b.test")).unwrap();
    let c = FakeCa::new(td("c.test")).unwrap();

    // b.test publishes its bundle over https_web, a.test over https_spiffe.
    let (web_ca, web_cert, web_key) = web_pki();
    let b_bundles = {
        let (tx, rx) = tokio::sync::watch::channel(Arc::new(b.bundle()));
        std::mem::forget(tx);
        rx
    };
    let b_endpoint =
        BundleEndpointServer::https_web(b_bundles, web_cert.as_bytes(), web_key.as_bytes())
            .unwrap()
            .bind("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
    let a_endpoint_source =
        FakeCaSource::new(a.clone(), id("spiffe://a.test/bundle-endpoint"), TTL).unwrap();
    let a_endpoint = BundleEndpointServer::https_spiffe(a_endpoint_source)
        .bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();

    // a.test's client federates with b.test; b.test's server with a.test.
    let a_federation = Federation::builder()
        .endpoint(Endpoint::https_web(
            td("b.test"),
            b_endpoint.url(),
            WebRoots::from_pem(web_ca.as_bytes()).unwrap(),
        ))
        .build()
        .unwrap();
    let b_federation = Federation::builder()
        .endpoint(
            Endpoint::https_spiffe(
                td("a.test"),
                a_endpoint.url(),
                id("spiffe://a.test/bundle-endpoint"),
            )
            .initial_bundle(a.bundle())
            .unwrap(),
        )
        .build()
        .unwrap();
    let orders = FederatedSource::new(
        FakeCaSource::new(a.clone(), id("spiffe://a.test/orders"), TTL).unwrap(),
        a_federation.clone(),
    )
    .unwrap();
    let billing = FederatedSource::new(
        FakeCaSource::new(b.clone(), id("spiffe://b.test/billing"), TTL).unwrap(),
        b_federation.clone(),
    )
    .unwrap();
    let intruder = FakeCaSource::new(c.clone(), id("spiffe://c.test/intruder"), TTL).unwrap();
    let (addr, mut outcomes) = whoami_server(billing.clone()).await;
    let client = ZtClient::builder(orders.clone())
        .pin_server("spiffe://b.test/billing".parse().unwrap())
        .build()
        .unwrap();

    // Before a.test has fetched b.test's bundle, its client cannot
    // authenticate the server.
    let err = call(&client, addr).await.unwrap_err();
    let ClientError::PeerRejected { rejected, .. } = &err else {
        panic!("{err}");
    };
    assert!(
        matches!(
            rejected.error(),
            PeerError::Svid(SvidError::UnknownTrustDomain { .. })
        ),
        "{err}"
    );
    let _ = outcomes.recv().await.unwrap().unwrap_err();

    // Both sides fetch; the snapshots follow.
    a_federation.refresh(&td("b.test")).await.unwrap();
    b_federation.refresh(&td("a.test")).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while orders
        .current()
        .unwrap()
        .bundles()
        .get(&td("b.test"))
        .is_none()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "a.test never saw b.test's bundle"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let body = call(&client, addr).await.unwrap().unwrap();
    assert_eq!(body, "spiffe://a.test/orders");
    assert_eq!(
        outcomes.recv().await.unwrap().unwrap(),
        id("spiffe://a.test/orders")
    );

    // c.test trusts b.test, but b.test does not federate with c.test: its
    // server refuses c.test's client.
    intruder.add_federated_bundle(b.bundle()).unwrap();
    let c_client = ZtClient::builder(intruder)
        .pin_server("spiffe://b.test/billing".parse().unwrap())
        .build()
        .unwrap();
    let answer = call(&c_client, addr).await.unwrap();
    assert!(answer.is_err(), "{answer:?}");
    let refused = outcomes.recv().await.unwrap().unwrap_err();
    assert!(refused.contains("c.test"), "{refused}");
}
