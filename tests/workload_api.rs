//! The fake CA's Workload API server against clients no one here wrote:
//! the `spiffe` crate's `X509Source` and `JwtSource`, over a real Unix
//! socket. And zt's own `WorkloadApiSource` on top of the same crate.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code"
)]

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use spiffe::{BundleSource as _, JwtSource, X509Source};
use zt_core::jwt::validate_jwt_svid;
use zt_core::source::{SvidSource, WorkloadApiSource};
use zt_core::{BundleSet, SpiffeId, TrustDomain};
use zt_dev::{FakeCa, FakeCaSource, WorkloadApiServer, WorkloadApiServerHandle};

/// Upper bound on waiting for a pushed update; the test fails, not hangs.
const PUSH_DEADLINE: Duration = Duration::from_secs(20);

struct Agent {
    _dir: tempfile::TempDir,
    server: WorkloadApiServerHandle,
    source: Arc<FakeCaSource>,
    ca: FakeCa,
}

async fn agent(federate_with: Option<&FakeCa>) -> Agent {
    let dir = tempfile::tempdir().unwrap();
    let ca = FakeCa::new(TrustDomain::new("example.org").unwrap()).unwrap();
    let source = FakeCaSource::new(
        ca.clone(),
        SpiffeId::new("spiffe://example.org/orders").unwrap(),
        Duration::from_secs(300),
    )
    .unwrap();
    if let Some(partner) = federate_with {
        source.add_federated_bundle(partner.bundle()).unwrap();
    }
    let server = WorkloadApiServer::new(source.clone())
        .serve_unix(dir.path().join("agent.sock"))
        .await
        .unwrap();
    Agent {
        _dir: dir,
        server,
        source,
        ca,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spiffe_crate_x509_source_fetches_svid_and_sees_rotations() {
    let partner = FakeCa::new(TrustDomain::new("partner.example").unwrap()).unwrap();
    let agent = agent(Some(&partner)).await;
    let x509 = X509Source::builder()
        .endpoint(agent.server.endpoint())
        .build()
        .await
        .unwrap();
    let svid = x509.svid().unwrap();
    assert_eq!(svid.spiffe_id().to_string(), "spiffe://example.org/orders");
    let leaf_der = svid.leaf().as_bytes().to_vec();
    assert_eq!(
        leaf_der,
        agent.source.current().unwrap().svid().leaf().to_vec()
    );
    // Own and federated bundles arrive.
    let td = TrustDomain::new("example.org").unwrap();
    let own = x509.bundle_for_trust_domain(&td).unwrap().unwrap();
    assert_eq!(
        own.authorities()[0].as_bytes(),
        agent.ca.root_certificate().as_ref()
    );
    assert!(
        x509.bundle_for_trust_domain(partner.trust_domain())
            .unwrap()
            .is_some()
    );

    let mut updates = x509.updated();
    for _ in 0..3 {
        let expected = agent.source.rotate_now().unwrap();
        let want = expected.svid().leaf().to_vec();
        tokio::time::timeout(PUSH_DEADLINE, async {
            loop {
                updates.changed().await.unwrap();
                if x509.svid().unwrap().leaf().as_bytes() == want.as_slice() {
                    break;
                }
            }
        })
        .await
        .expect("rotation was not pushed to the X509Source");
    }
    x509.shutdown().await;
    agent.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spiffe_crate_jwt_source_fetches_tokens_that_validate() {
    let agent = agent(None).await;
    let jwt = JwtSource::builder()
        .endpoint(agent.server.endpoint())
        .build()
        .await
        .unwrap();
    let token = jwt.fetch_jwt_svid(["billing"]).await.unwrap();
    assert_eq!(token.spiffe_id().to_string(), "spiffe://example.org/orders");

    // zt validates it against the CA's bundle…
    let bundles = BundleSet::new().with(agent.ca.bundle());
    let claims = validate_jwt_svid(
        token.token(),
        &bundles,
        "billing",
        SystemTime::now(),
        Duration::ZERO,
    )
    .unwrap();
    assert_eq!(claims.subject().to_string(), "spiffe://example.org/orders");

    // …and so does the spiffe crate, with the JWT bundle it fetched.
    let verified = spiffe::JwtSvid::parse_and_validate(token.token(), &jwt, &["billing"]).unwrap();
    assert_eq!(
        verified.spiffe_id().to_string(),
        "spiffe://example.org/orders"
    );
    jwt.shutdown().await;
    agent.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zt_workload_api_source_follows_rotations_and_fetches_jwts() {
    let agent = agent(None).await;
    let source = WorkloadApiSource::builder()
        .endpoint(agent.server.endpoint())
        .initial_sync_timeout(PUSH_DEADLINE)
        .build()
        .await
        .unwrap();
    let first = source.current().unwrap();
    assert_eq!(first.svid().id().to_string(), "spiffe://example.org/orders");
    assert_eq!(
        first.svid().serial(),
        agent.source.current().unwrap().svid().serial()
    );

    let mut updates = source.updates();
    let rotated = agent.source.rotate_now().unwrap();
    tokio::time::timeout(PUSH_DEADLINE, async {
        loop {
            updates.changed().await.unwrap();
            let latest = updates.borrow().clone();
            if latest.is_some_and(|s| s.svid().serial() == rotated.svid().serial()) {
                break;
            }
        }
    })
    .await
    .expect("rotation was not seen by WorkloadApiSource");

    let token = source.fetch_jwt_svid(&["ledger".to_owned()]).await.unwrap();
    assert_eq!(token.audience(), ["ledger"]);
    // The JWT authorities are now part of the source's bundle set.
    let snap = source.current().unwrap();
    validate_jwt_svid(
        token.token(),
        snap.bundles(),
        "ledger",
        SystemTime::now(),
        Duration::ZERO,
    )
    .unwrap();
    source.shutdown().await;
    agent.server.shutdown().await;
}
