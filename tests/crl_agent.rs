//! CRLs delivered by the Workload API: the zt agent (the fake CA's Workload
//! API server) serves the CRL the fake CA signs, a zt server follows them
//! with `WorkloadApiCrls` over the agent's Unix socket, and refuses a
//! client whose serial is listed at its next handshake; a CRL the agent's
//! bundle does not vouch for changes nothing.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code"
)]

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use zt_client::ZtClient;
use zt_core::crl::{CrlError, WorkloadApiCrls};
use zt_core::revocation::{RevocationError, Revocations, Revoked};
use zt_core::source::{SvidSource as _, WorkloadApiSource};
use zt_core::{SpiffeId, TrustDomain};
use zt_dev::{FakeCa, FakeCaSource, WorkloadApiServer};
use zt_server::ZtServer;

mod common;

/// Upper bound on waiting for a pushed update; the test fails, not hangs.
const PUSH_DEADLINE: Duration = Duration::from_secs(20);
const TTL: Duration = Duration::from_secs(300);
const DAY: Duration = Duration::from_secs(86_400);

fn id(s: &str) -> SpiffeId {
    SpiffeId::new(s).unwrap()
}

/// Waits until `revocations` changes past `seen`.
async fn next_change(revocations: &Revocations, seen: u64) {
    let mut changes = revocations.changes();
    tokio::time::timeout(PUSH_DEADLINE, changes.wait_for(|v| *v > seen))
        .await
        .expect("the CRL arrived within the deadline")
        .unwrap();
}

/// `true` if `source`'s workload gets a 200 from `addr` on a new
/// connection.
async fn served(source: Arc<FakeCaSource>, addr: std::net::SocketAddr) -> bool {
    let client = ZtClient::builder(source)
        .pin_server(
            "spiffe://example.org/billing"
                .parse::<zt_core::matcher::IdMatcher>()
                .unwrap(),
        )
        .build()
        .unwrap();
    let response = client
        .reqwest_client()
        .unwrap()
        .get(format!("https://{addr}/"))
        .send()
        .await;
    matches!(response, Ok(r) if r.status() == 200)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_delivers_a_crl_and_the_listed_client_is_refused_at_its_next_handshake() {
    let dir = tempfile::tempdir().unwrap();
    let ca = FakeCa::new(TrustDomain::new("example.org").unwrap()).unwrap();
    let agent_identity =
        FakeCaSource::new(ca.clone(), id("spiffe://example.org/billing"), TTL).unwrap();
    let agent = WorkloadApiServer::new(agent_identity)
        .serve_unix(dir.path().join("agent.sock"))
        .await
        .unwrap();

    // The server takes its identity and its CRLs from the agent.
    let identity = WorkloadApiSource::builder()
        .endpoint(agent.endpoint())
        .initial_sync_timeout(PUSH_DEADLINE)
        .build()
        .await
        .unwrap();
    let revocations = Revocations::new();
    let feed = WorkloadApiCrls::follow(&agent.endpoint(), revocations.clone())
        .await
        .unwrap();
    assert!(feed.source_name().contains("agent.sock"));
    assert!(revocations.crls().is_empty(), "nothing revoked yet");
    let server = ZtServer::builder(identity.clone())
        .revocations(revocations.clone())
        .build()
        .unwrap();
    let running = common::serve(server, Router::new().route("/", get(|| async { "ok" }))).await;

    let orders = FakeCaSource::new(ca.clone(), id("spiffe://example.org/orders"), TTL).unwrap();
    let ledger = FakeCaSource::new(ca.clone(), id("spiffe://example.org/ledger"), TTL).unwrap();
    assert!(served(orders.clone(), running.addr).await);

    // The CA revokes the orders SVID; the agent pushes the CRL.
    let serial = orders.current().unwrap().svid().serial().to_vec();
    ca.revoke_serial(&serial);
    let seen = *revocations.changes().borrow();
    agent.publish_crls(vec![ca.crl(DAY).unwrap()]);
    next_change(&revocations, seen).await;
    assert_eq!(
        revocations.check(&id("spiffe://example.org/orders"), &serial),
        Some(Revoked::Crl)
    );
    let crls: Vec<_> = revocations.crls().iter().cloned().collect();
    assert_eq!(crls.len(), 1);
    assert_eq!(crls[0].source(), feed.source_name());

    assert!(
        !served(orders.clone(), running.addr).await,
        "the revoked client was served"
    );
    assert!(served(ledger.clone(), running.addr).await);
    // Its next SVID has a new serial and is served.
    orders.rotate_now().unwrap();
    assert!(served(orders.clone(), running.addr).await);

    // A CRL signed by a stranger with the same name: refused, nothing
    // changes, the error is kept.
    let stranger = FakeCa::new(TrustDomain::new("example.org").unwrap()).unwrap();
    let ledger_serial = ledger.current().unwrap().svid().serial().to_vec();
    stranger.revoke_serial(&ledger_serial);
    let version = *revocations.changes().borrow();
    agent.publish_crls(vec![stranger.crl(DAY).unwrap()]);
    tokio::time::timeout(PUSH_DEADLINE, async {
        loop {
            if matches!(
                revocations.last_error(),
                Some(RevocationError::Crl(CrlError::UntrustedSigner { .. }))
            ) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the refusal is reported within the deadline");
    assert_eq!(*revocations.changes().borrow(), version);
    assert_eq!(
        revocations.check(&id("spiffe://example.org/orders"), &serial),
        Some(Revoked::Crl),
        "the previous CRL stays in force"
    );
    assert!(served(ledger, running.addr).await);

    // The CA's CRL again: accepted, the error clears.
    agent.publish_crls(vec![ca.crl(DAY).unwrap()]);
    tokio::time::timeout(PUSH_DEADLINE, async {
        while revocations.last_error().is_some() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the valid CRL is accepted within the deadline");

    drop(feed);
    identity.shutdown().await;
    agent.shutdown().await;
}
