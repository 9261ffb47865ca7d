//! zt's bundle endpoint client against zt's bundle endpoint server, and
//! against endpoints that misbehave, over real sockets on 127.0.0.1.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code"
)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use zt_core::source::SvidSource;
use zt_core::time::ManualClock;
use zt_core::{SpiffeId, TrustDomain};
use zt_dev::{FakeCa, FakeCaSource};
use zt_federation::{
    BundleEndpointServer, Endpoint, FederatedSource, Federation, FederationError,
    RunningBundleEndpoint, WebRoots,
};
use zt_tls::{Side, SvidResolver};

const TTL: Duration = Duration::from_secs(300);
const ANY: &str = "127.0.0.1:0";
const DEADLINE: Duration = Duration::from_secs(20);

fn td(s: &str) -> TrustDomain {
    s.parse().unwrap()
}

fn id(s: &str) -> SpiffeId {
    s.parse().unwrap()
}

fn ca(name: &str) -> FakeCa {
    FakeCa::new(td(name)).unwrap()
}

fn addr() -> SocketAddr {
    ANY.parse().unwrap()
}

/// b.test's bundle endpoint in the `https_spiffe` profile, presenting
/// `endpoint_id` (an SVID from `ca`).
async fn spiffe_endpoint(
    ca: &FakeCa,
    endpoint_id: &str,
) -> (Arc<FakeCaSource>, RunningBundleEndpoint) {
    let source = FakeCaSource::new(ca.clone(), id(endpoint_id), TTL).unwrap();
    let running = BundleEndpointServer::https_spiffe(source.clone())
        .refresh_hint(Duration::from_secs(1))
        .bind(addr())
        .await
        .unwrap();
    (source, running)
}

fn spiffe_relationship(ca: &FakeCa, url: &str, endpoint_id: &str) -> Endpoint {
    Endpoint::https_spiffe(ca.trust_domain().clone(), url, id(endpoint_id))
        .initial_bundle(ca.bundle())
        .unwrap()
}

fn federation(endpoint: Endpoint) -> Federation {
    Federation::builder().endpoint(endpoint).build().unwrap()
}

async fn poll<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A TLS endpoint presenting `source`'s SVID that answers every request
/// with `response` (raw HTTP/1.1 bytes): for answers zt's server never
/// gives.
async fn raw_endpoint(
    source: Arc<FakeCaSource>,
    response: Vec<u8>,
) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let provider = Arc::new(zt_tls::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(SvidResolver::new(source, provider, Side::Server)));
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind(ANY).await.unwrap();
    let local = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let Ok(mut tls) = acceptor.accept(tcp).await else {
                continue;
            };
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match tls.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            let _ = tls.write_all(&response).await;
            let _ = tls.shutdown().await;
        }
    });
    (local, task)
}

fn http_200(body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

#[tokio::test]
async fn the_client_fetches_the_bundle_a_zt_endpoint_serves_over_https_spiffe() {
    let b = ca("b.test");
    let (source, running) = spiffe_endpoint(&b, "spiffe://b.test/bundle-endpoint").await;
    let fed = federation(spiffe_relationship(
        &b,
        &running.url(),
        "spiffe://b.test/bundle-endpoint",
    ));
    let got = fed.refresh(&td("b.test")).await.unwrap();
    assert!(got.same_authorities(&b.bundle()));
    assert_eq!(got.refresh_hint(), Some(1));
    // The server numbers bundles that carry no sequence of their own: from
    // its start time, plus one per change of authorities.
    let sequence = got.sequence().unwrap();
    assert!(sequence >= 1_700_000_000, "{sequence}");
    let again = fed.refresh(&td("b.test")).await.unwrap();
    assert_eq!(again.sequence(), Some(sequence), "no change, same sequence");
    let status = &fed.status()[0];
    assert_eq!(status.sequence, Some(sequence));
    assert!(status.in_force && status.last_error.is_none() && status.last_success.is_some());
    assert!(
        fed.bundles()
            .get(&td("b.test"))
            .unwrap()
            .same_authorities(&b.bundle())
    );

    b.rotate().unwrap();
    source.refresh_bundles().unwrap();
    let rotated = fed.refresh(&td("b.test")).await.unwrap();
    assert_eq!(rotated.sequence(), Some(sequence + 1));
    assert_eq!(rotated.x509_authorities().len(), 2);
    assert_eq!(
        fed.bundles().get(&td("b.test")).unwrap().sequence(),
        Some(sequence + 1)
    );
}

#[tokio::test]
async fn federated_source_passes_the_wrapped_sources_health_and_jwt_svids_through() {
    let a = ca("a.test");
    let fed = Federation::builder().build().unwrap();
    let local = FakeCaSource::new(a.clone(), id("spiffe://a.test/orders"), TTL).unwrap();
    let source = FederatedSource::new(local.clone(), fed).unwrap();
    assert_eq!(source.health(), local.health());
    let token = source
        .fetch_jwt_svid(&["spiffe://b.test/billing".to_string()])
        .await
        .unwrap();
    assert_eq!(token.subject(), &id("spiffe://a.test/orders"));
}

#[test]
fn background_work_outside_a_runtime_is_a_typed_error() {
    let fed = Federation::builder().build().unwrap();
    assert_eq!(
        fed.start(),
        Err(FederationError::NoRuntime {
            what: "Federation::start"
        })
    );
    let a = ca("a.test");
    let local = FakeCaSource::new(a, id("spiffe://a.test/orders"), TTL).unwrap();
    assert!(matches!(
        FederatedSource::new(local, fed),
        Err(FederationError::NoRuntime { .. })
    ));
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
    let mut leaf = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    leaf.subject_alt_names
        .push(SanType::IpAddress(std::net::IpAddr::from([127, 0, 0, 1])));
    let leaf_cert = leaf
        .signed_by(&leaf_key, &Issuer::from_params(&ca, &ca_key))
        .unwrap();
    (ca_cert.pem(), leaf_cert.pem(), leaf_key.serialize_pem())
}

#[tokio::test]
async fn the_client_fetches_over_https_web_and_refuses_an_endpoint_outside_its_roots() {
    let b = ca("b.test");
    let (ca_pem, cert_pem, key_pem) = web_pki();
    let (_tx, rx) = watch::channel(Arc::new(b.bundle()));
    let running = BundleEndpointServer::https_web(rx, cert_pem.as_bytes(), key_pem.as_bytes())
        .unwrap()
        .bind(addr())
        .await
        .unwrap();
    let roots = WebRoots::from_pem(ca_pem.as_bytes()).unwrap();
    let fed = federation(Endpoint::https_web(td("b.test"), running.url(), roots));
    // https_web needs no initial bundle: nothing is in force before the fetch.
    assert!(fed.bundles().is_empty());
    let got = fed.refresh(&td("b.test")).await.unwrap();
    assert!(got.same_authorities(&b.bundle()));

    let (other_ca, _, _) = web_pki();
    let wrong_roots = WebRoots::from_pem(other_ca.as_bytes()).unwrap();
    let fed = federation(Endpoint::https_web(
        td("b.test"),
        running.url(),
        wrong_roots,
    ));
    let err = fed.refresh(&td("b.test")).await.unwrap_err();
    assert!(
        matches!(err, FederationError::EndpointNotTrusted { .. }),
        "{err}"
    );
    assert!(fed.bundles().is_empty());
}

#[tokio::test]
async fn an_endpoint_presenting_another_spiffe_id_is_refused_and_the_last_good_bundle_stays() {
    let b = ca("b.test");
    let (_source, running) = spiffe_endpoint(&b, "spiffe://b.test/not-the-endpoint").await;
    let fed = federation(spiffe_relationship(
        &b,
        &running.url(),
        "spiffe://b.test/bundle-endpoint",
    ));
    let err = fed.refresh(&td("b.test")).await.unwrap_err();
    assert_eq!(
        err,
        FederationError::WrongEndpointId {
            url: running.url(),
            expected: id("spiffe://b.test/bundle-endpoint"),
            presented: id("spiffe://b.test/not-the-endpoint"),
        }
    );
    // The initial bundle is the last good one and stays in force.
    assert!(
        fed.bundles()
            .get(&td("b.test"))
            .unwrap()
            .same_authorities(&b.bundle())
    );
    assert_eq!(fed.status()[0].last_error, Some(err));
}

#[tokio::test]
async fn an_endpoint_whose_svid_does_not_chain_to_the_known_bundle_is_refused() {
    let b = ca("b.test");
    let impostor = ca("b.test");
    let (_source, running) = spiffe_endpoint(&impostor, "spiffe://b.test/bundle-endpoint").await;
    let fed = federation(spiffe_relationship(
        &b,
        &running.url(),
        "spiffe://b.test/bundle-endpoint",
    ));
    let err = fed.refresh(&td("b.test")).await.unwrap_err();
    assert!(
        matches!(err, FederationError::EndpointNotTrusted { .. }),
        "{err}"
    );
    assert!(
        fed.bundles()
            .get(&td("b.test"))
            .unwrap()
            .same_authorities(&b.bundle())
    );
}

#[tokio::test]
async fn https_spiffe_without_a_bundle_for_the_endpoint_fails_before_connecting() {
    let fed = federation(Endpoint::https_spiffe(
        td("b.test"),
        "https://127.0.0.1:9/",
        id("spiffe://b.test/bundle-endpoint"),
    ));
    let err = fed.refresh(&td("b.test")).await.unwrap_err();
    assert_eq!(
        err,
        FederationError::NoEndpointBundle {
            url: "https://127.0.0.1:9/".into(),
            trust_domain: td("b.test"),
        }
    );
}

#[tokio::test]
async fn another_trust_domains_bundle_is_refused_as_such() {
    let b = ca("b.test");
    let c = ca("c.test");
    let source = FakeCaSource::new(b.clone(), id("spiffe://b.test/bundle-endpoint"), TTL).unwrap();
    // The endpoint relied on for b.test serves c.test's bundle.
    let (_tx, rx) = watch::channel(Arc::new(c.bundle()));
    let running = BundleEndpointServer::https_spiffe(source)
        .serve(rx)
        .bind(addr())
        .await
        .unwrap();
    let fed = federation(spiffe_relationship(
        &b,
        &running.url(),
        "spiffe://b.test/bundle-endpoint",
    ));
    let err = fed.refresh(&td("b.test")).await.unwrap_err();
    assert_eq!(
        err,
        FederationError::WrongTrustDomain {
            url: running.url(),
            expected: td("b.test"),
            found: "c.test".into(),
        }
    );
    assert!(
        fed.bundles()
            .get(&td("b.test"))
            .unwrap()
            .same_authorities(&b.bundle())
    );
}

#[tokio::test]
async fn a_bundle_with_an_older_sequence_is_refused_and_the_newer_one_stays() {
    let b = ca("b.test");
    let source = FakeCaSource::new(b.clone(), id("spiffe://b.test/bundle-endpoint"), TTL).unwrap();
    let mut v5 = b.bundle();
    v5.set_sequence(Some(5));
    let (tx, rx) = watch::channel(Arc::new(v5));
    let running = BundleEndpointServer::https_spiffe(source)
        .serve(rx)
        .bind(addr())
        .await
        .unwrap();
    let fed = federation(spiffe_relationship(
        &b,
        &running.url(),
        "spiffe://b.test/bundle-endpoint",
    ));
    assert_eq!(
        fed.refresh(&td("b.test")).await.unwrap().sequence(),
        Some(5)
    );

    // A replayed older bundle, with other authorities.
    b.rotate().unwrap();
    let mut v3 = b.bundle();
    v3.set_sequence(Some(3));
    tx.send_replace(Arc::new(v3));
    let err = fed.refresh(&td("b.test")).await.unwrap_err();
    assert_eq!(
        err,
        FederationError::StaleSequence {
            url: running.url(),
            trust_domain: td("b.test"),
            received: 3,
            last: 5,
        }
    );
    let in_force = fed.bundles();
    let in_force = in_force.get(&td("b.test")).unwrap();
    assert_eq!(in_force.sequence(), Some(5));
    assert_eq!(in_force.x509_authorities().len(), 1);

    // The next sequence is accepted.
    let mut v6 = b.bundle();
    v6.set_sequence(Some(6));
    tx.send_replace(Arc::new(v6));
    let got = fed.refresh(&td("b.test")).await.unwrap();
    assert_eq!((got.sequence(), got.x509_authorities().len()), (Some(6), 2));
}

#[tokio::test]
async fn garbage_answers_are_refused_with_typed_errors() {
    let b = ca("b.test");
    let endpoint_id = "spiffe://b.test/bundle-endpoint";
    let source = FakeCaSource::new(b.clone(), id(endpoint_id), TTL).unwrap();
    type Expect = fn(&FederationError) -> bool;
    let cases: Vec<(Vec<u8>, Expect)> = vec![
        (http_200(b"<html>not a bundle</html>"), |e| {
            matches!(e, FederationError::Malformed { .. })
        }),
        (http_200(br#"{"kes": []}"#), |e| {
            matches!(e, FederationError::Malformed { .. })
        }),
        (
            http_200(br#"{"keys": [{"kty": "EC", "use": "x509-svid", "x5c": ["AAAA"]}]}"#),
            |e| matches!(e, FederationError::Malformed { .. }),
        ),
        (http_200(br#"{"keys": []}"#), |e| {
            matches!(e, FederationError::Malformed { .. })
        }),
        (
            b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                .to_vec(),
            |e| matches!(e, FederationError::HttpStatus { status: 500, .. }),
        ),
        (b"this is not HTTP\r\n\r\n".to_vec(), |e| {
            matches!(e, FederationError::Transport { .. })
        }),
        (http_200(&vec![b' '; 4096]), |e| {
            matches!(e, FederationError::TooLarge { limit: 1024, .. })
        }),
    ];
    for (response, expected) in cases {
        let (local, task) = raw_endpoint(source.clone(), response.clone()).await;
        let url = format!("https://{local}/");
        let fed = Federation::builder()
            .endpoint(spiffe_relationship(&b, &url, endpoint_id))
            .max_bundle_size(1024)
            .build()
            .unwrap();
        let err = fed.refresh(&td("b.test")).await.unwrap_err();
        assert!(
            expected(&err),
            "{}: {err}",
            String::from_utf8_lossy(&response[..response.len().min(80)])
        );
        assert!(
            fed.bundles()
                .get(&td("b.test"))
                .unwrap()
                .same_authorities(&b.bundle())
        );
        task.abort();
    }
}

#[tokio::test]
async fn a_silent_endpoint_times_out() {
    let b = ca("b.test");
    let listener = TcpListener::bind(ANY).await.unwrap();
    let url = format!("https://{}/", listener.local_addr().unwrap());
    let fed = Federation::builder()
        .endpoint(spiffe_relationship(
            &b,
            &url,
            "spiffe://b.test/bundle-endpoint",
        ))
        .fetch_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let err = fed.refresh(&td("b.test")).await.unwrap_err();
    assert!(matches!(err, FederationError::Timeout { .. }), "{err}");
    drop(listener);
}

#[tokio::test]
async fn the_last_good_bundle_serves_while_the_endpoint_is_down_and_leaves_when_it_expires() {
    let clock = Arc::new(ManualClock::new(SystemTime::now()));
    let b = FakeCa::builder(td("b.test"))
        .clock(clock.clone())
        .ca_ttl(Duration::from_secs(3600))
        .build()
        .unwrap();
    let (_source, running) = spiffe_endpoint(&b, "spiffe://b.test/bundle-endpoint").await;
    let url = running.url();
    let fed = Federation::builder()
        .endpoint(spiffe_relationship(
            &b,
            &url,
            "spiffe://b.test/bundle-endpoint",
        ))
        .clock(clock.clone())
        .build()
        .unwrap();
    let mut updates = fed.updates();
    fed.refresh(&td("b.test")).await.unwrap();
    running.shutdown().await;

    let err = fed.refresh(&td("b.test")).await.unwrap_err();
    assert!(matches!(err, FederationError::Connect { .. }), "{err}");
    assert_eq!(
        fed.bundles().len(),
        1,
        "the last good bundle stays in force"
    );
    assert!(fed.status()[0].in_force);

    clock.advance(Duration::from_secs(3600 + 60));
    assert!(
        fed.bundles().is_empty(),
        "an expired bundle is not in force"
    );
    let status = &fed.status()[0];
    assert!(!status.in_force);
    assert!(status.expires_at.is_some());
    // The next attempt publishes the set without it.
    updates.mark_unchanged();
    let _ = fed.refresh(&td("b.test")).await.unwrap_err();
    assert!(updates.has_changed().unwrap());
    assert!(updates.borrow_and_update().is_empty());
}

#[tokio::test]
async fn background_refresh_follows_the_refresh_hint_and_reaches_the_federated_source() {
    let b = ca("b.test");
    let a = ca("a.test");
    let (b_source, running) = spiffe_endpoint(&b, "spiffe://b.test/bundle-endpoint").await;
    let fed = Federation::builder()
        .endpoint(spiffe_relationship(
            &b,
            &running.url(),
            "spiffe://b.test/bundle-endpoint",
        ))
        .refresh_bounds(Duration::from_millis(200), Duration::from_secs(60))
        .build()
        .unwrap();
    let local = FakeCaSource::new(a.clone(), id("spiffe://a.test/orders"), TTL).unwrap();
    let source = FederatedSource::new(local.clone(), fed.clone()).unwrap();
    fed.start().unwrap();
    poll("the first background fetch", || {
        fed.status()[0].last_success.map(|_| ())
    })
    .await;

    // b.test adds an authority; the endpoint serves it at once, and the
    // client fetches it within the 1 s hint (clamped to at least 200 ms).
    b.rotate().unwrap();
    b_source.refresh_bundles().unwrap();
    let started = Instant::now();
    poll("the rotated b.test bundle in the federated source", || {
        let snapshot = source.current().ok()?;
        let bundle = snapshot.bundles().get(&td("b.test"))?.clone();
        (bundle.x509_authorities().len() == 2).then_some(())
    })
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    // The local SVID and bundle are the wrapped source's.
    let snapshot = source.current().unwrap();
    assert_eq!(snapshot.svid().id(), &id("spiffe://a.test/orders"));
    assert!(
        snapshot
            .bundles()
            .get(&td("a.test"))
            .unwrap()
            .same_authorities(&a.bundle())
    );
}

#[tokio::test]
async fn the_server_refuses_methods_other_than_get() {
    let b = ca("b.test");
    let (_source, running) = spiffe_endpoint(&b, "spiffe://b.test/bundle-endpoint").await;
    let provider = Arc::new(zt_tls::default_provider());
    let client_source = FakeCaSource::new(b.clone(), id("spiffe://b.test/client"), TTL).unwrap();
    let config = zt_tls::TlsOptions::new(client_source)
        .pin("spiffe://b.test/bundle-endpoint".parse().unwrap())
        .crypto_provider(provider)
        .client_config()
        .unwrap();
    let tcp = tokio::net::TcpStream::connect(running.local_addr())
        .await
        .unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect("127.0.0.1".try_into().unwrap(), tcp)
        .await
        .unwrap();
    tls.write_all(b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    tls.read_to_string(&mut answer).await.unwrap_or_default();
    assert!(answer.starts_with("HTTP/1.1 405"), "{answer}");
}
