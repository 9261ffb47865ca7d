//! zt's federation against SPIRE 1.13.3's: SPIRE servers federated through
//! their bundle endpoints hand zt workloads the foreign bundle over the
//! Workload API; zt's bundle endpoint client reads SPIRE's endpoint in both
//! profiles; a SPIRE server federates with zt's bundle endpoint server and
//! a go-spiffe client of its trust domain calls a zt service of zt's.
//!
//! Run with `interop/run.sh federation` (or `cargo test -p zt-interop
//! --test federation -- --ignored`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;
use tokio::runtime::Runtime;
use tokio::sync::mpsc;
use zt_client::ZtClient;
use zt_core::source::{SvidSource, WorkloadApiSource};
use zt_core::x509::{Usage, verify_x509_svid};
use zt_core::{SpiffeId, TrustBundle, TrustDomain};
use zt_dev::{FakeCa, FakeCaSource};
use zt_federation::{
    BundleEndpointServer, Endpoint, FederatedSource, Federation, FederationError, WebRoots,
};
use zt_interop::Error;
use zt_interop::go::GoProgram;
use zt_interop::spire::{
    BundleEndpoint, BundleFormat, EntrySpec, FederationRelationship, Spire, SpireConfig,
};
use zt_tls::PeerRejected;

type TestResult = zt_interop::Result<()>;

const EVENT: Duration = Duration::from_secs(60);

fn log(what: &str, start: Instant) {
    eprintln!("[{:6.1} s] {what}", start.elapsed().as_secs_f64());
}

fn setup<E: std::fmt::Display>(what: &str) -> impl FnOnce(E) -> Error + '_ {
    move |e| Error::Setup(format!("{what}: {e}"))
}

fn runtime() -> zt_interop::Result<Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(setup("tokio runtime"))
}

fn td(s: &str) -> zt_interop::Result<TrustDomain> {
    s.parse().map_err(setup("trust domain"))
}

fn id(s: &str) -> zt_interop::Result<SpiffeId> {
    s.parse().map_err(setup("SPIFFE ID"))
}

/// A SPIRE deployment whose agent serves the test binary itself.
fn spire_for_this_binary(config: SpireConfig) -> zt_interop::Result<Spire> {
    config.workload_sha256(false).start()
}

/// The zt source of this process from `spire`'s agent.
fn workload_source(rt: &Runtime, spire: &Spire) -> zt_interop::Result<Arc<WorkloadApiSource>> {
    rt.block_on(
        WorkloadApiSource::builder()
            .endpoint(spire.endpoint_socket())
            .initial_sync_timeout(EVENT)
            .build(),
    )
    .map_err(setup("Workload API source"))
}

/// Polls `f` every 50 ms until it gives a value or `timeout` passes.
fn poll<T>(
    what: &str,
    timeout: Duration,
    mut f: impl FnMut() -> Option<T>,
) -> zt_interop::Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Ok(v);
        }
        if Instant::now() > deadline {
            return Err(Error::Timeout(format!("{what} within {timeout:?}")));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A zt-server answering one HTTP/1.1 request per connection with the
/// verified client's SPIFFE ID, and reporting each handshake: the client's
/// ID, or the server's typed refusal.
fn whoami_server(
    rt: &Runtime,
    source: Arc<dyn SvidSource>,
) -> zt_interop::Result<(
    SocketAddr,
    mpsc::UnboundedReceiver<Result<SpiffeId, String>>,
)> {
    let server = zt_server::ServerBuilder::new(source.clone())
        .build()
        .map_err(setup("zt server"))?;
    let acceptor =
        tokio_rustls::TlsAcceptor::from(server.rustls_config_with_alpn(vec![b"http/1.1".to_vec()]));
    let listener = rt
        .block_on(TcpListener::bind("127.0.0.1:0"))
        .map_err(setup("bind"))?;
    let addr = listener.local_addr().map_err(setup("local addr"))?;
    let (tx, rx) = mpsc::unbounded_channel();
    rt.spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let outcome = match acceptor.accept(tcp).await {
                Ok(mut tls) => {
                    let chain = tls
                        .get_ref()
                        .1
                        .peer_certificates()
                        .map(<[_]>::to_vec)
                        .unwrap_or_default();
                    let peer = source
                        .current()
                        .map_err(|e| e.to_string())
                        .and_then(|s| {
                            verify_x509_svid(&chain, s.bundles(), SystemTime::now(), Usage::ClientAuth)
                                .map_err(|e| e.to_string())
                        });
                    if let Ok(peer) = &peer {
                        let mut request = Vec::new();
                        let mut buf = [0u8; 1024];
                        while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                            match tls.read(&mut buf).await {
                                Ok(0) | Err(_) => break,
                                Ok(n) => request.extend_from_slice(&buf[..n]),
                            }
                        }
                        let body = peer.id().to_string();
                        let response = format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                            body.len()
                        );
                        let _ = tls.write_all(response.as_bytes()).await;
                    }
                    let _ = tls.shutdown().await;
                    peer.map(|p| p.id().clone())
                }
                Err(e) => Err(PeerRejected::find(&e).map_or_else(|| e.to_string(), ToString::to_string)),
            };
            let _ = tx.send(outcome);
        }
    });
    Ok((addr, rx))
}

/// Connects (the client verifies the server), sends a GET and reads the
/// answer's body (the server's verdict on the client arrives with the
/// answer in TLS 1.3).
fn call(
    rt: &Runtime,
    client: &ZtClient,
    addr: SocketAddr,
) -> Result<std::io::Result<String>, zt_client::Error> {
    rt.block_on(async {
        let mut tls = client.connect(addr).await?;
        let exchange = async {
            tls.write_all(b"GET / HTTP/1.1\r\nhost: zt\r\nconnection: close\r\n\r\n")
                .await?;
            let mut answer = String::new();
            tls.read_to_string(&mut answer).await?;
            Ok(answer
                .split_once("\r\n\r\n")
                .map(|(_, body)| body.to_owned())
                .unwrap_or(answer))
        };
        Ok(exchange.await)
    })
}

fn next_outcome(
    rt: &Runtime,
    outcomes: &mut mpsc::UnboundedReceiver<Result<SpiffeId, String>>,
) -> zt_interop::Result<Result<SpiffeId, String>> {
    rt.block_on(async { tokio::time::timeout(EVENT, outcomes.recv()).await })
        .ok()
        .flatten()
        .ok_or_else(|| Error::Timeout("the server's handshake outcome".into()))
}

#[test]
#[ignore = "interop: needs SPIRE and Go; run interop/run.sh"]
fn zt_workloads_of_two_federated_spire_trust_domains_talk_and_an_unfederated_one_is_refused()
-> TestResult {
    let t = Instant::now();
    let rt = runtime()?;
    let b = spire_for_this_binary(SpireConfig::new("b.test").with_bundle_endpoint())?;
    let a = spire_for_this_binary(
        SpireConfig::new("a.test")
            .with_bundle_endpoint()
            .federates_with(b.federation_relationship()?),
    )?;
    b.federate_with(&a)?;
    let c = spire_for_this_binary(SpireConfig::new("c.test"))?;
    // c.test trusts b.test (its bundle set by hand); b.test does not
    // federate with c.test.
    c.set_bundle("b.test", BundleFormat::Spiffe, &b.bundle_spiffe()?)?;
    a.wait_for_federated_bundle("b.test", EVENT, |_| true)?;
    b.wait_for_federated_bundle("a.test", EVENT, |_| true)?;
    log("three trust domains up; a.test and b.test federated", t);

    a.register(&EntrySpec::for_current_exe("spiffe://a.test/zt/orders")?.federates_with("b.test"))?;
    b.register(
        &EntrySpec::for_current_exe("spiffe://b.test/zt/billing")?.federates_with("a.test"),
    )?;
    c.register(
        &EntrySpec::for_current_exe("spiffe://c.test/zt/intruder")?.federates_with("b.test"),
    )?;
    let orders = workload_source(&rt, &a)?;
    let billing = workload_source(&rt, &b)?;
    let intruder = workload_source(&rt, &c)?;
    // The federated bundles arrive through the Workload API.
    for (source, foreign) in [
        (&orders, "b.test"),
        (&billing, "a.test"),
        (&intruder, "b.test"),
    ] {
        let foreign = td(foreign)?;
        poll(
            &format!("{foreign} in a Workload API bundle set"),
            EVENT,
            || source.current().ok()?.bundles().get(&foreign).map(|_| ()),
        )?;
    }
    log(
        "federated bundles reached the zt workloads over the Workload API",
        t,
    );

    let (addr, mut outcomes) = whoami_server(&rt, billing.clone())?;
    let client = ZtClient::builder(orders.clone())
        .pin_server(id("spiffe://b.test/zt/billing")?.into())
        .build()
        .map_err(setup("zt client"))?;
    let body = call(&rt, &client, addr)
        .map_err(setup("a.test -> b.test"))?
        .map_err(setup("a.test -> b.test answer"))?;
    assert_eq!(body, "spiffe://a.test/zt/orders");
    assert_eq!(
        next_outcome(&rt, &mut outcomes)?,
        Ok(id("spiffe://a.test/zt/orders")?)
    );
    log("a.test workload called the b.test service with zt", t);

    let c_client = ZtClient::builder(intruder.clone())
        .pin_server(id("spiffe://b.test/zt/billing")?.into())
        .build()
        .map_err(setup("zt client"))?;
    let answer = call(&rt, &c_client, addr).map_err(setup("c.test connect"))?;
    assert!(answer.is_err(), "c.test got an answer: {answer:?}");
    let refused = next_outcome(&rt, &mut outcomes)?.expect_err("b.test accepted c.test");
    assert!(
        refused.contains("c.test") && refused.contains("zt refused the client"),
        "{refused}"
    );
    log(&format!("c.test refused by b.test: {refused}"), t);

    // And b.test's service cannot be reached from a.test under a wrong pin.
    let wrong = ZtClient::builder(orders)
        .pin_server(id("spiffe://b.test/other")?.into())
        .build()
        .map_err(setup("zt client"))?;
    let err = call(&rt, &wrong, addr).expect_err("a wrong pin was accepted");
    let _ = next_outcome(&rt, &mut outcomes)?;
    assert!(
        err.to_string().contains("spiffe://b.test/zt/billing"),
        "{err}"
    );
    Ok(())
}

#[test]
#[ignore = "interop: needs SPIRE and Go; run interop/run.sh"]
fn zt_reads_spire_bundle_endpoint_over_https_spiffe_and_follows_a_new_authority() -> TestResult {
    let t = Instant::now();
    let rt = runtime()?;
    let b = SpireConfig::new("b.test").with_bundle_endpoint().start()?;
    let url = b
        .bundle_endpoint_url()
        .ok_or_else(|| Error::Setup("no bundle endpoint".into()))?;
    let initial = TrustBundle::from_spiffe_json(td("b.test")?, b.bundle_spiffe()?.as_bytes())
        .map_err(setup("SPIRE's bundle"))?;
    let first_sequence = initial.sequence();
    let endpoint = Endpoint::https_spiffe(td("b.test")?, &url, id(&b.server_spiffe_id())?)
        .initial_bundle(initial.clone())
        .map_err(setup("endpoint"))?;
    let federation = Federation::builder()
        .endpoint(endpoint)
        .build()
        .map_err(setup("federation"))?;
    let got = rt
        .block_on(federation.refresh(&td("b.test")?))
        .map_err(setup("fetch from SPIRE"))?;
    assert!(got.same_authorities(&initial), "{got:?} vs {initial:?}");
    assert_eq!(
        got.refresh_hint(),
        Some(5),
        "the harness publishes a 5 s hint"
    );
    assert!(got.sequence().is_some() && got.sequence() >= first_sequence);
    assert!(
        got.jwt_authorities().next().is_some(),
        "SPIRE serves JWT authorities too"
    );
    log("zt fetched SPIRE's bundle over https_spiffe", t);

    // Pinning another endpoint ID refuses SPIRE's server, naming both.
    let wrong = Federation::builder()
        .endpoint(
            Endpoint::https_spiffe(td("b.test")?, &url, id("spiffe://b.test/not-spire")?)
                .initial_bundle(initial.clone())
                .map_err(setup("endpoint"))?,
        )
        .build()
        .map_err(setup("federation"))?;
    let err = rt
        .block_on(wrong.refresh(&td("b.test")?))
        .expect_err("a wrong endpoint ID was accepted");
    assert!(
        matches!(&err, FederationError::WrongEndpointId { presented, .. } if presented.to_string() == b.server_spiffe_id()),
        "{err}"
    );

    // Background refresh at SPIRE's 5 s hint picks up a prepared authority
    // with a higher sequence number.
    rt.block_on(async { federation.start() })
        .map_err(setup("federation start"))?;
    b.server_cli(&["localauthority", "x509", "prepare"])?;
    let started = Instant::now();
    let refreshed = poll(
        "the prepared authority in zt's federated bundle",
        EVENT,
        || {
            let set = federation.bundles();
            let bundle = set.get(&td("b.test").ok()?)?;
            (bundle.x509_authorities().len() > initial.x509_authorities().len())
                .then(|| TrustBundle::clone(bundle))
        },
    )?;
    assert!(
        refreshed.sequence() > got.sequence(),
        "{:?} <= {:?}",
        refreshed.sequence(),
        got.sequence()
    );
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    log(
        &format!(
            "background refresh saw the prepared authority after {:.1} s (sequence {:?} -> {:?})",
            started.elapsed().as_secs_f64(),
            got.sequence(),
            refreshed.sequence()
        ),
        t,
    );
    let status = &federation.status()[0];
    assert!(status.in_force && status.last_error.is_none(), "{status:?}");
    Ok(())
}

/// A throwaway Web PKI: `(ca.pem, leaf.pem, leaf-key.pem)` for 127.0.0.1,
/// written into `dir`.
fn web_pki(dir: &std::path::Path) -> zt_interop::Result<[std::path::PathBuf; 3]> {
    use rcgen::{
        BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
    };
    let bad = setup::<rcgen::Error>("test CA");
    let ca_key = KeyPair::generate().map_err(bad)?;
    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(setup("test CA"))?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca.self_signed(&ca_key).map_err(setup("test CA"))?;
    let leaf_key = KeyPair::generate().map_err(setup("test CA"))?;
    let mut leaf =
        CertificateParams::new(vec!["localhost".to_string()]).map_err(setup("test CA"))?;
    leaf.subject_alt_names
        .push(SanType::IpAddress(std::net::IpAddr::from([127, 0, 0, 1])));
    let leaf_cert = leaf
        .signed_by(&leaf_key, &Issuer::from_params(&ca, &ca_key))
        .map_err(setup("test CA"))?;
    let files = [
        dir.join("ca.pem"),
        dir.join("leaf.pem"),
        dir.join("leaf-key.pem"),
    ];
    for (path, pem) in files
        .iter()
        .zip([ca_cert.pem(), leaf_cert.pem(), leaf_key.serialize_pem()])
    {
        std::fs::write(path, pem).map_err(setup("write PEM"))?;
    }
    Ok(files)
}

#[test]
#[ignore = "interop: needs SPIRE and Go; run interop/run.sh"]
fn zt_reads_spire_bundle_endpoint_over_https_web() -> TestResult {
    let t = Instant::now();
    let rt = runtime()?;
    let pki = tempfile::tempdir().map_err(setup("temp dir"))?;
    let [ca, cert, key] = web_pki(pki.path())?;
    let b = SpireConfig::new("web-b.test")
        .bundle_endpoint(BundleEndpoint::https_web(&cert, &key))
        .start()?;
    let url = b
        .bundle_endpoint_url()
        .ok_or_else(|| Error::Setup("no bundle endpoint".into()))?;
    let roots = WebRoots::from_pem(&std::fs::read(&ca).map_err(setup("read CA"))?)
        .map_err(setup("roots"))?;
    // https_web needs no initial bundle.
    let federation = Federation::builder()
        .endpoint(Endpoint::https_web(td("web-b.test")?, &url, roots))
        .build()
        .map_err(setup("federation"))?;
    assert!(federation.bundles().is_empty());
    let got = rt
        .block_on(federation.refresh(&td("web-b.test")?))
        .map_err(setup("fetch from SPIRE"))?;
    let expected = TrustBundle::from_spiffe_json(td("web-b.test")?, b.bundle_spiffe()?.as_bytes())
        .map_err(setup("SPIRE's bundle"))?;
    assert!(got.same_authorities(&expected));
    log("zt fetched SPIRE's bundle over https_web", t);

    // The same endpoint read as another trust domain's is refused: SPIRE's
    // CA certificates name web-b.test.
    let pem = std::fs::read(&ca).map_err(setup("read CA"))?;
    let wrong_td = Federation::builder()
        .endpoint(Endpoint::https_web(
            td("other.test")?,
            &url,
            WebRoots::from_pem(&pem).map_err(setup("roots"))?,
        ))
        .build()
        .map_err(setup("federation"))?;
    let err = rt
        .block_on(wrong_td.refresh(&td("other.test")?))
        .expect_err("another trust domain's bundle was accepted");
    assert!(
        matches!(&err, FederationError::WrongTrustDomain { found, .. } if found == "web-b.test"),
        "{err}"
    );
    Ok(())
}

fn x5c_of(bundle_json: &str) -> Vec<String> {
    serde_json::from_str::<Value>(bundle_json)
        .ok()
        .and_then(|v| v.get("keys").and_then(Value::as_array).cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|k| {
            k.pointer("/x5c/0")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .collect()
}

#[test]
#[ignore = "interop: needs SPIRE and Go; run interop/run.sh"]
fn a_spire_server_federates_with_a_zt_bundle_endpoint_and_a_go_client_calls_a_zt_service()
-> TestResult {
    let t = Instant::now();
    let rt = runtime()?;
    let zt_ca = FakeCa::new(td("zt.test")?).map_err(setup("fake CA"))?;
    let endpoint_source = FakeCaSource::new(
        zt_ca.clone(),
        id("spiffe://zt.test/bundle-endpoint")?,
        Duration::from_secs(600),
    )
    .map_err(setup("fake CA source"))?;
    let zt_endpoint = rt
        .block_on(
            BundleEndpointServer::https_spiffe(endpoint_source.clone())
                .refresh_hint(Duration::from_secs(5))
                .bind("127.0.0.1:0".parse().map_err(setup("address"))?),
        )
        .map_err(setup("zt bundle endpoint"))?;

    // SPIRE's a.test federates with zt.test through zt's endpoint.
    let a = SpireConfig::new("a.test").with_bundle_endpoint().start()?;
    let zt_bundle_json = zt_ca
        .bundle()
        .to_spiffe_json()
        .map_err(setup("zt bundle"))?;
    a.create_federation(
        &FederationRelationship::https_spiffe(
            "zt.test",
            zt_endpoint.url(),
            "spiffe://zt.test/bundle-endpoint",
        )
        .initial_bundle(BundleFormat::Spiffe, zt_bundle_json),
    )?;
    let first_root = x5c_of(
        &zt_ca
            .bundle()
            .to_spiffe_json()
            .map_err(setup("zt bundle"))?,
    );
    let got = a.wait_for_federated_bundle("zt.test", EVENT, |b| {
        first_root.iter().all(|k| b.contains(k))
    })?;
    log("SPIRE holds zt.test's bundle", t);

    // zt's CA adds a root: SPIRE fetches it from zt's endpoint.
    zt_ca.rotate().map_err(setup("rotate"))?;
    endpoint_source
        .refresh_bundles()
        .map_err(setup("refresh"))?;
    let roots = x5c_of(
        &zt_ca
            .bundle()
            .to_spiffe_json()
            .map_err(setup("zt bundle"))?,
    );
    assert_eq!(roots.len(), 2);
    a.refresh_federation("zt.test")?;
    let after =
        a.wait_for_federated_bundle("zt.test", EVENT, |b| roots.iter().all(|k| b.contains(k)))?;
    assert!(after.len() > got.len());
    log(
        &format!(
            "SPIRE fetched zt.test's new root from zt's endpoint ({} authorities)",
            roots.len()
        ),
        t,
    );

    // A go-spiffe client of a.test calls a zt service of zt.test: the
    // client trusts zt.test through SPIRE's federation with zt's endpoint;
    // the service trusts a.test through zt's client of SPIRE's endpoint.
    let a_bundle = TrustBundle::from_spiffe_json(td("a.test")?, a.bundle_spiffe()?.as_bytes())
        .map_err(setup("a.test bundle"))?;
    let a_url = a
        .bundle_endpoint_url()
        .ok_or_else(|| Error::Setup("no bundle endpoint".into()))?;
    let federation = Federation::builder()
        .endpoint(
            Endpoint::https_spiffe(td("a.test")?, a_url, id(&a.server_spiffe_id())?)
                .initial_bundle(a_bundle)
                .map_err(setup("endpoint"))?,
        )
        .build()
        .map_err(setup("federation"))?;
    rt.block_on(federation.refresh(&td("a.test")?))
        .map_err(setup("fetch a.test"))?;
    let service = FakeCaSource::new(
        zt_ca.clone(),
        id("spiffe://zt.test/payments")?,
        Duration::from_secs(600),
    )
    .map_err(setup("fake CA source"))?;
    let service = rt
        .block_on(async { FederatedSource::new(service, federation) })
        .map_err(setup("federated source"))?;
    let (addr, mut outcomes) = whoami_server(&rt, service)?;

    let client_id = "spiffe://a.test/go/client";
    a.register(
        &EntrySpec::for_executable(client_id, &GoProgram::MtlsClient.path()?)?
            .federates_with("zt.test"),
    )?;
    let mut go = a.spawn_go(
        GoProgram::MtlsClient,
        &[
            "-url",
            &format!("https://{addr}/"),
            "-server-id",
            "spiffe://zt.test/payments",
        ],
    )?;
    let seen = next_outcome(&rt, &mut outcomes)?;
    assert_eq!(
        seen,
        Ok(id(client_id)?),
        "zt.test's service on a.test's Go client"
    );
    let response = go.wait_for_event("response", EVENT)?;
    assert_eq!(response["status"], 200, "{response}");
    assert_eq!(response["body"], client_id, "{response}");
    assert_eq!(
        response["peer_id"], "spiffe://zt.test/payments",
        "{response}"
    );
    log(
        "a go-spiffe client of a.test completed mutual TLS with a zt service of zt.test",
        t,
    );

    // An unfederated SPIRE trust domain's Go client is refused by the zt service.
    let c = SpireConfig::new("c.test").start()?;
    c.set_bundle(
        "zt.test",
        BundleFormat::Spiffe,
        &zt_ca
            .bundle()
            .to_spiffe_json()
            .map_err(setup("zt bundle"))?,
    )?;
    c.register(
        &EntrySpec::for_executable("spiffe://c.test/go/client", &GoProgram::MtlsClient.path()?)?
            .federates_with("zt.test"),
    )?;
    let mut go_c = c.spawn_go(
        GoProgram::MtlsClient,
        &[
            "-url",
            &format!("https://{addr}/"),
            "-server-id",
            "spiffe://zt.test/payments",
        ],
    )?;
    let refused = next_outcome(&rt, &mut outcomes)?.expect_err("zt.test accepted c.test");
    assert!(refused.contains("c.test"), "{refused}");
    let err = go_c.wait_for_event("request_error", EVENT)?;
    log(
        &format!(
            "c.test's Go client refused by zt: {refused} / Go saw: {}",
            err["error"]
        ),
        t,
    );
    drop(zt_endpoint);
    Ok(())
}
