//! The trust monitor on its own: which connections each change of trust
//! ends, and which it leaves open.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code"
)]

use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::CertificateDer;
use zt_core::SpiffeId;
use zt_core::bundle::BundleSet;
use zt_core::live::{ConnectionGuard, EndReason, TrustMonitor};
use zt_core::matcher::IdMatcher;
use zt_core::peer::{PeerError, PeerVerifier};
use zt_core::revocation::Revocations;
use zt_core::source::{StaticSource, SvidSource};
use zt_core::time::system_clock;
use zt_core::x509::Usage;
use zt_dev::{FakeCa, FakeCaSource};

const TTL: Duration = Duration::from_secs(300);
/// Bound on waiting for the monitor's task to act on a change.
const ACT: Duration = Duration::from_secs(5);

fn id(s: &str) -> SpiffeId {
    s.parse().unwrap()
}

fn chain_of(source: &FakeCaSource) -> Vec<CertificateDer<'static>> {
    source.current().unwrap().svid().chain().to_vec()
}

struct World {
    ca: FakeCa,
    server: Arc<FakeCaSource>,
    revocations: Revocations,
    monitor: TrustMonitor,
}

fn world(pin: Option<IdMatcher>) -> World {
    let ca = FakeCa::new("example.org".parse().unwrap()).unwrap();
    let server = FakeCaSource::new(ca.clone(), id("spiffe://example.org/billing"), TTL).unwrap();
    let revocations = Revocations::new();
    let verifier = PeerVerifier::new(server.clone(), system_clock(), Usage::ClientAuth, pin)
        .with_revocations(revocations.clone());
    World {
        ca,
        server,
        revocations,
        monitor: TrustMonitor::new(Arc::new(verifier)),
    }
}

fn caller(world: &World, path: &str) -> Arc<FakeCaSource> {
    FakeCaSource::new(
        world.ca.clone(),
        id(&format!("spiffe://example.org/{path}")),
        TTL,
    )
    .unwrap()
}

async fn ended(guard: &ConnectionGuard) -> EndReason {
    tokio::time::timeout(ACT, guard.ended())
        .await
        .expect("the connection was not ended")
        .reason()
}

#[tokio::test]
async fn revoking_an_id_ends_its_connections_and_no_others() {
    let w = world(None);
    let orders = caller(&w, "orders");
    let payments = caller(&w, "payments");
    let a = w.monitor.admit(chain_of(&orders)).unwrap();
    let b = w.monitor.admit(chain_of(&orders)).unwrap();
    let c = w.monitor.admit(chain_of(&payments)).unwrap();
    assert_eq!(w.monitor.open_connections(), 3);

    w.revocations.revoke_id(id("spiffe://example.org/orders"));
    assert_eq!(ended(&a).await, EndReason::Revoked);
    assert_eq!(ended(&b).await, EndReason::Revoked);
    let detail = a.signal().reason().unwrap().detail().cloned();
    assert!(
        matches!(detail, Some(PeerError::Revoked { .. })),
        "{detail:?}"
    );
    assert!(!c.signal().is_ended());

    // A new connection of the revoked caller is refused at admission.
    assert!(matches!(
        w.monitor.admit(chain_of(&orders)),
        Err(PeerError::Revoked { .. })
    ));
}

#[tokio::test]
async fn revoking_a_serial_ends_that_certificate_only() {
    let w = world(None);
    let orders = caller(&w, "orders");
    let old = w.monitor.admit(chain_of(&orders)).unwrap();
    let old_serial = old.peer().serial().to_vec();
    orders.rotate_now().unwrap();
    let new = w.monitor.admit(chain_of(&orders)).unwrap();
    assert_ne!(new.peer().serial(), old_serial.as_slice());

    w.revocations.revoke_serial(&old_serial);
    assert_eq!(ended(&old).await, EndReason::Revoked);
    assert!(!new.signal().is_ended());
}

#[tokio::test]
async fn a_revocation_ends_nothing_but_the_revoked() {
    let w = world(None);
    let orders = caller(&w, "orders");
    let batch = caller(&w, "batch");
    let kept = w.monitor.admit(chain_of(&orders)).unwrap();
    let revoked = w.monitor.admit(chain_of(&batch)).unwrap();
    w.revocations.revoke_id(id("spiffe://example.org/batch"));
    // Once the revoked connection has ended, the change has been handled
    // in full: the other one is still open.
    assert_eq!(ended(&revoked).await, EndReason::Revoked);
    assert!(!kept.signal().is_ended());
    assert_eq!(w.monitor.rejudge_all(), 0);
}

#[tokio::test]
async fn replacing_the_pin_ends_the_callers_it_no_longer_accepts() {
    let w = world(Some("spiffe://example.org/*".parse().unwrap()));
    let orders = caller(&w, "orders");
    let payments = caller(&w, "payments");
    let a = w.monitor.admit(chain_of(&orders)).unwrap();
    let b = w.monitor.admit(chain_of(&payments)).unwrap();

    w.monitor
        .verifier()
        .replace_pin(Some("spiffe://example.org/payments".parse().unwrap()));
    assert_eq!(ended(&a).await, EndReason::Pin);
    assert!(EndReason::Pin.is_permission());
    // Re-judged under the new pin and accepted: still open.
    assert_eq!(w.monitor.rejudge_all(), 0);
    assert!(!b.signal().is_ended());
}

#[tokio::test]
async fn a_trust_domain_no_longer_trusted_ends_its_connections() {
    // The server trusts example.org and partner.test, from a static source.
    let home = FakeCa::new("example.org".parse().unwrap()).unwrap();
    let partner = FakeCa::new("partner.test".parse().unwrap()).unwrap();
    let svid = home
        .issue_x509_svid(&id("spiffe://example.org/billing"), TTL)
        .unwrap();
    let both: BundleSet = [home.bundle(), partner.bundle()].into_iter().collect();
    let server = Arc::new(StaticSource::new(svid.clone(), both));
    let verifier = PeerVerifier::new(server.clone(), system_clock(), Usage::ClientAuth, None);
    let monitor = TrustMonitor::new(Arc::new(verifier));

    let local = FakeCaSource::new(home.clone(), id("spiffe://example.org/orders"), TTL).unwrap();
    let remote =
        FakeCaSource::new(partner.clone(), id("spiffe://partner.test/shipping"), TTL).unwrap();
    let at_home = monitor.admit(chain_of(&local)).unwrap();
    let federated = monitor.admit(chain_of(&remote)).unwrap();

    // A snapshot that changes nothing about the bundles ends nothing...
    server.set(
        svid.clone(),
        [home.bundle(), partner.bundle()].into_iter().collect(),
    );
    // ...and one that drops partner.test ends its connections only.
    server.set(svid, [home.bundle()].into_iter().collect());
    assert_eq!(ended(&federated).await, EndReason::Bundle);
    let detail = federated
        .signal()
        .reason()
        .unwrap()
        .detail()
        .unwrap()
        .to_string();
    assert!(detail.contains("partner.test"), "{detail}");
    assert!(!at_home.signal().is_ended());
}

#[tokio::test]
async fn a_retired_root_ends_the_connections_chained_to_it() {
    let w = world(None);
    let old_root = caller(&w, "orders");
    let before = w.monitor.admit(chain_of(&old_root)).unwrap();
    w.ca.rotate().unwrap();
    w.server.refresh_bundles().unwrap();
    let new_root = caller(&w, "payments");
    let after = w.monitor.admit(chain_of(&new_root)).unwrap();
    assert!(!before.signal().is_ended());

    w.ca.end_rotation_overlap();
    w.server.refresh_bundles().unwrap();
    assert_eq!(ended(&before).await, EndReason::Bundle);
    assert!(!after.signal().is_ended());
}

#[tokio::test]
async fn a_connection_starts_closing_before_its_peer_expires_and_ends_at_expiry() {
    let w = world(None);
    // Expires in 2 s: the connection starts closing after half of that,
    // and its trust ends at expiry.
    let short = FakeCaSource::new(
        w.ca.clone(),
        id("spiffe://example.org/batch"),
        Duration::from_secs(2),
    )
    .unwrap();
    let guard = w.monitor.admit(chain_of(&short)).unwrap();
    let expiring = guard.until_expiring();
    assert!(
        expiring <= Duration::from_secs(1) && expiring > Duration::from_millis(500),
        "{expiring:?}"
    );
    assert!(guard.until_expired() > expiring);
    tokio::time::timeout(ACT, guard.expiring()).await.unwrap();
    assert!(!guard.signal().is_ended(), "still trusted until it expires");
    assert_eq!(ended(&guard).await, EndReason::Expired);
    assert!(guard.signal().is_ended());
}

#[tokio::test]
async fn closed_connections_leave_the_monitor() {
    let w = world(None);
    let orders = caller(&w, "orders");
    let guards = (0..100)
        .map(|_| w.monitor.admit(chain_of(&orders)).unwrap())
        .collect::<Vec<_>>();
    assert_eq!(w.monitor.open_connections(), 100);
    drop(guards);
    assert_eq!(w.monitor.open_connections(), 0);
}

#[tokio::test]
async fn the_reason_is_found_inside_an_io_error() {
    let w = world(None);
    let orders = caller(&w, "orders");
    let guard = w.monitor.admit(chain_of(&orders)).unwrap();
    w.revocations.revoke_id(id("spiffe://example.org/orders"));
    let ended = ended(&guard).await;
    let io = std::io::Error::new(
        std::io::ErrorKind::ConnectionAborted,
        guard.signal().reason().unwrap().clone(),
    );
    let found = zt_core::live::TrustEnded::find(&io).unwrap();
    assert_eq!(found.reason(), ended);
    assert_eq!(found.peer(), &id("spiffe://example.org/orders"));
}

#[tokio::test]
async fn a_crl_listing_a_peer_ends_its_connection() {
    let w = world(None);
    let orders = caller(&w, "orders");
    let payments = caller(&w, "payments");
    let listed = w.monitor.admit(chain_of(&orders)).unwrap();
    let other = w.monitor.admit(chain_of(&payments)).unwrap();

    w.ca.revoke_serial(listed.peer().serial());
    let crl = w.ca.crl(Duration::from_secs(3600)).unwrap();
    let bundles = w.server.current().unwrap().bundles().clone();
    w.revocations
        .load_crl_ders("ca.crl", &[crl], &bundles)
        .unwrap();
    assert_eq!(ended(&listed).await, EndReason::Revoked);
    assert!(!other.signal().is_ended());
    assert_eq!(w.monitor.rejudge_all(), 0);
}
