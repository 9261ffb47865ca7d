//! `PeerVerifier` reuses a verified chain only while nothing it depended on
//! has changed: same bytes, same bundles, inside the validity period.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code"
)]

use std::sync::Arc;
use std::time::Duration;

use zt_core::matcher::IdMatcher;
use zt_core::peer::{PeerError, PeerVerifier};
use zt_core::revocation::Revocations;
use zt_core::time::ManualClock;
use zt_core::x509::{SvidError, Usage};
use zt_core::{SpiffeId, TrustDomain};
use zt_dev::{BadSvid, FakeCa, FakeCaSource};

fn id(s: &str) -> SpiffeId {
    SpiffeId::new(s).unwrap()
}

struct Setup {
    clock: ManualClock,
    ca: FakeCa,
    local: Arc<FakeCaSource>,
}

fn setup() -> Setup {
    let clock = ManualClock::starting_now();
    let ca = FakeCa::builder(TrustDomain::new("example.org").unwrap())
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap();
    let local = FakeCaSource::new(
        ca.clone(),
        id("spiffe://example.org/server"),
        Duration::from_secs(3600),
    )
    .unwrap();
    Setup { clock, ca, local }
}

fn verifier(s: &Setup, pin: Option<&str>) -> PeerVerifier {
    PeerVerifier::new(
        s.local.clone(),
        Arc::new(s.clock.clone()),
        Usage::ClientAuth,
        pin.map(|p| p.parse::<IdMatcher>().unwrap()),
    )
}

#[test]
fn repeated_chain_verifies_the_same_and_pin_applies_every_time() {
    let s = setup();
    let peer =
        s.ca.issue_x509_svid(&id("spiffe://example.org/orders"), Duration::from_secs(60))
            .unwrap();
    let v = verifier(&s, Some("spiffe://example.org/orders"));
    let first = v.verify(peer.leaf(), &peer.chain()[1..]).unwrap();
    let second = v.verify(peer.leaf(), &peer.chain()[1..]).unwrap();
    assert_eq!(first, second);
    let strict = verifier(&s, Some("spiffe://example.org/ledger"));
    strict.verify(peer.leaf(), &[]).unwrap_err();
    strict.verify(peer.leaf(), &[]).unwrap_err();
}

#[test]
fn cached_chain_is_rejected_once_the_clock_passes_its_expiry() {
    let s = setup();
    let peer =
        s.ca.issue_x509_svid(&id("spiffe://example.org/orders"), Duration::from_secs(60))
            .unwrap();
    let v = verifier(&s, None);
    v.verify(peer.leaf(), &[]).unwrap();
    s.clock.advance(Duration::from_secs(61));
    assert!(matches!(
        v.verify(peer.leaf(), &[]),
        Err(PeerError::Svid(SvidError::Expired { .. }))
    ));
}

#[test]
fn cached_chain_is_rechecked_after_the_bundle_changes() {
    let s = setup();
    let peer =
        s.ca.issue_x509_svid(&id("spiffe://example.org/orders"), Duration::from_secs(60))
            .unwrap();
    let v = verifier(&s, None);
    v.verify(peer.leaf(), &[]).unwrap();
    // The CA rotates and the overlap ends: the old root leaves the bundle.
    s.ca.rotate().unwrap();
    s.ca.end_rotation_overlap();
    s.local.rotate_now().unwrap();
    assert!(matches!(
        v.verify(peer.leaf(), &[]),
        Err(PeerError::Svid(SvidError::UntrustedChain { .. }))
    ));
}

#[test]
fn failures_are_not_cached_and_keep_their_reason() {
    let s = setup();
    let bad =
        s.ca.issue_bad_x509_svid(
            BadSvid::KeyCertSignOnLeaf,
            &id("spiffe://example.org/orders"),
        )
        .unwrap();
    let v = verifier(&s, None);
    for _ in 0..2 {
        assert_eq!(
            v.verify(&bad.chain[0], &[]),
            Err(PeerError::Svid(SvidError::LeafCanSignCertificates))
        );
    }
}

#[test]
fn no_local_identity_fails_closed() {
    let s = setup();
    let peer =
        s.ca.issue_x509_svid(
            &id("spiffe://example.org/orders"),
            Duration::from_secs(7200),
        )
        .unwrap();
    let v = verifier(&s, None);
    s.clock.advance(Duration::from_secs(3601));
    assert!(matches!(
        v.verify(peer.leaf(), &[]),
        Err(PeerError::LocalSource(_))
    ));
}

#[test]
fn a_revoked_peer_is_refused_even_when_its_chain_is_cached() {
    let s = setup();
    let orders = id("spiffe://example.org/orders");
    let peer =
        s.ca.issue_x509_svid(&orders, Duration::from_secs(60))
            .unwrap();
    let revocations = Revocations::new();
    let v = verifier(&s, None).with_revocations(revocations.clone());
    let verified = v.verify(peer.leaf(), &[]).unwrap();

    revocations.revoke_serial(verified.serial());
    let err = v.verify(peer.leaf(), &[]).unwrap_err();
    assert_eq!(
        err,
        PeerError::Revoked {
            presented: orders.clone(),
            serial: verified.serial_hex(),
        }
    );
    // Another certificate of the same workload is still accepted.
    let next =
        s.ca.issue_x509_svid(&orders, Duration::from_secs(60))
            .unwrap();
    v.verify(next.leaf(), &[]).unwrap();

    revocations.revoke_id(orders.clone());
    assert!(matches!(
        v.verify(next.leaf(), &[]),
        Err(PeerError::Revoked { .. })
    ));
    revocations.reinstate_id(&orders);
    v.verify(next.leaf(), &[]).unwrap();
}
