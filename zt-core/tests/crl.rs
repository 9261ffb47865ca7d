//! CRLs signed by the fake CA: verified against the bundle, scoped by
//! issuer, enforced by the TLS verifier, hot-reloaded from files.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code"
)]

use std::sync::Arc;
use std::time::Duration;

use zt_core::BundleSet;
use zt_core::crl::{Crl, CrlError, StaleCrlPolicy};
use zt_core::peer::{PeerError, PeerVerifier};
use zt_core::revocation::{ReloadOutcome, RevocationError, Revocations, Revoked};
use zt_core::time::ManualClock;
use zt_core::x509::{Usage, verify_x509_svid};
use zt_core::{SpiffeId, TrustDomain};
use zt_dev::{FakeCa, FakeCaSource};

const DAY: Duration = Duration::from_secs(86_400);

fn id(s: &str) -> SpiffeId {
    SpiffeId::new(s).unwrap()
}

fn ca(clock: &ManualClock, intermediate: bool) -> FakeCa {
    FakeCa::builder(TrustDomain::new("example.org").unwrap())
        .clock(Arc::new(clock.clone()))
        .intermediate(intermediate)
        .build()
        .unwrap()
}

#[test]
fn a_listed_leaf_is_refused_at_the_handshake_and_others_pass() {
    let clock = ManualClock::starting_now();
    let ca = ca(&clock, false);
    let local = FakeCaSource::new(ca.clone(), id("spiffe://example.org/server"), DAY).unwrap();
    let revocations = Revocations::new();
    revocations.set_clock(Arc::new(clock.clone()));
    let verifier = PeerVerifier::new(
        local.clone(),
        Arc::new(clock.clone()),
        Usage::ClientAuth,
        None,
    )
    .with_revocations(revocations.clone());
    let leaked = ca
        .issue_x509_svid(&id("spiffe://example.org/orders"), DAY)
        .unwrap();
    let fresh = ca
        .issue_x509_svid(&id("spiffe://example.org/orders"), DAY)
        .unwrap();
    verifier.verify(&leaked.chain()[0], &[]).unwrap();

    let changes = revocations.changes();
    let before = *changes.borrow();
    ca.revoke_serial(leaked.serial());
    let bundles = BundleSet::new().with(ca.bundle());
    let count = revocations
        .load_crl_ders("fake-ca", &[ca.crl(DAY).unwrap()], &bundles)
        .unwrap();
    assert_eq!(count, 1);
    assert_eq!(*changes.borrow(), before + 1);

    let err = verifier.verify(&leaked.chain()[0], &[]).unwrap_err();
    assert!(matches!(err, PeerError::Revoked { .. }), "{err}");
    verifier.verify(&fresh.chain()[0], &[]).unwrap();
    assert_eq!(
        revocations.check(leaked.id(), leaked.serial()),
        Some(Revoked::Crl)
    );
    // The same CRL again changes nothing.
    revocations
        .load_crl_ders("fake-ca", &[ca.crl(DAY).unwrap()], &bundles)
        .unwrap();
    assert_eq!(*changes.borrow(), before + 1);
}

#[test]
fn a_crl_signed_by_another_ca_is_refused_and_changes_nothing() {
    let clock = ManualClock::starting_now();
    let ours = ca(&clock, false);
    let theirs = ca(&clock, false);
    let victim = ours
        .issue_x509_svid(&id("spiffe://example.org/orders"), DAY)
        .unwrap();
    theirs.revoke_serial(victim.serial());
    let revocations = Revocations::new();
    let changes = revocations.changes();
    let bundles = BundleSet::new().with(ours.bundle());
    let err = revocations
        .load_crl_ders("theirs", &[theirs.crl(DAY).unwrap()], &bundles)
        .unwrap_err();
    assert!(
        matches!(
            err,
            RevocationError::Crl(CrlError::UntrustedSigner { ref reason, .. })
                if reason.contains("signature does not verify")
        ),
        "{err}"
    );
    assert_eq!(*changes.borrow(), 0);
    assert!(revocations.crls().is_empty());
    assert_eq!(revocations.check(victim.id(), victim.serial()), None);
    assert_eq!(revocations.last_error(), Some(err));
}

#[test]
fn an_intermediate_signed_crl_needs_the_intermediate_delivered_with_it() {
    let clock = ManualClock::starting_now();
    let ca = ca(&clock, true);
    let svid = ca
        .issue_x509_svid(&id("spiffe://example.org/orders"), DAY)
        .unwrap();
    ca.revoke_serial(svid.serial());
    let bundles = BundleSet::new().with(ca.bundle());
    let now = clock_now(&clock);

    let bare = Crl::verify(&ca.crl(DAY).unwrap(), &[], &bundles, now, "bare", 0).unwrap_err();
    assert!(matches!(bare, CrlError::UntrustedSigner { .. }), "{bare}");

    let pem = ca.crl_pem(DAY).unwrap();
    let crls = Crl::verify_all(pem.as_bytes(), &bundles, now, "with-intermediate").unwrap();
    assert_eq!(crls.len(), 1);
    let revocations = Revocations::new();
    revocations.set_crls("with-intermediate", crls);
    let verified = verify_x509_svid(svid.chain(), &bundles, now, Usage::ClientAuth).unwrap();
    assert_eq!(verified.path().len(), 2, "leaf and intermediate");
    assert_eq!(revocations.check_svid(&verified), Some(Revoked::Crl));
}

#[test]
fn a_stale_crl_keeps_enforcing_by_default_and_refuses_the_issuer_when_asked() {
    let clock = ManualClock::starting_now();
    let ca = ca(&clock, false);
    let listed = ca
        .issue_x509_svid(&id("spiffe://example.org/a"), DAY * 3)
        .unwrap();
    let other = ca
        .issue_x509_svid(&id("spiffe://example.org/b"), DAY * 3)
        .unwrap();
    ca.revoke_serial(listed.serial());
    let bundles = BundleSet::new().with(ca.bundle());
    let revocations = Revocations::new();
    revocations.set_clock(Arc::new(clock.clone()));
    revocations
        .load_crl_ders("fake-ca", &[ca.crl(DAY).unwrap()], &bundles)
        .unwrap();
    assert!(revocations.stale_crls().is_empty());
    assert_eq!(revocations.last_error(), None);

    clock.advance(DAY * 2);
    let now = clock_now(&clock);
    let listed = verify_x509_svid(listed.chain(), &bundles, now, Usage::ClientAuth).unwrap();
    let other = verify_x509_svid(other.chain(), &bundles, now, Usage::ClientAuth).unwrap();
    assert_eq!(revocations.stale_crls().len(), 1);
    assert!(matches!(
        revocations.last_error(),
        Some(RevocationError::Crl(CrlError::Stale { .. }))
    ));
    assert_eq!(revocations.check_svid(&listed), Some(Revoked::Crl));
    assert_eq!(revocations.check_svid(&other), None, "fail open by default");

    let changes = revocations.changes();
    let before = *changes.borrow();
    revocations.set_stale_crl_policy(
        TrustDomain::new("example.org").unwrap(),
        StaleCrlPolicy::RefuseIssued,
    );
    assert_eq!(*changes.borrow(), before + 1);
    assert_eq!(revocations.check_svid(&other), Some(Revoked::CrlStale));
    assert_eq!(
        revocations.check(other.id(), other.serial()),
        Some(Revoked::CrlStale)
    );
}

#[test]
fn a_crl_file_is_hot_reloaded_and_a_bad_one_leaves_the_previous_in_force() {
    let clock = ManualClock::starting_now();
    let ca = ca(&clock, false);
    let local = FakeCaSource::new(ca.clone(), id("spiffe://example.org/server"), DAY).unwrap();
    let first = ca
        .issue_x509_svid(&id("spiffe://example.org/a"), DAY)
        .unwrap();
    let second = ca
        .issue_x509_svid(&id("spiffe://example.org/b"), DAY)
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crl.pem");
    ca.revoke_serial(first.serial());
    std::fs::write(&path, ca.crl_pem(DAY).unwrap()).unwrap();

    let revocations = Revocations::new();
    let changes = revocations.changes();
    assert_eq!(
        revocations.add_crl_file(&path, local.clone()).unwrap(),
        ReloadOutcome::Applied
    );
    assert_eq!(*changes.borrow(), 1);
    assert_eq!(
        revocations.check(first.id(), first.serial()),
        Some(Revoked::Crl)
    );
    assert_eq!(revocations.reload().unwrap(), ReloadOutcome::Unchanged);

    // A CRL from another CA in the file: refused, the old one stays.
    let stranger = FakeCa::new(TrustDomain::new("example.org").unwrap()).unwrap();
    stranger.revoke_serial(second.serial());
    std::fs::write(&path, stranger.crl_pem(DAY).unwrap()).unwrap();
    assert!(matches!(
        revocations.reload(),
        Err(RevocationError::Crl(CrlError::UntrustedSigner { .. }))
    ));
    assert_eq!(*changes.borrow(), 1);
    assert_eq!(
        revocations.check(first.id(), first.serial()),
        Some(Revoked::Crl)
    );
    assert_eq!(revocations.check(second.id(), second.serial()), None);

    // Garbage: refused too.
    std::fs::write(
        &path,
        "-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n",
    )
    .unwrap();
    assert!(revocations.reload().is_err());
    assert_eq!(*changes.borrow(), 1);

    // A fresh CRL from our CA listing both: applied.
    ca.revoke_serial(second.serial());
    std::fs::write(&path, ca.crl_pem(DAY).unwrap()).unwrap();
    assert_eq!(revocations.reload().unwrap(), ReloadOutcome::Applied);
    assert_eq!(*changes.borrow(), 2);
    assert_eq!(
        revocations.check(second.id(), second.serial()),
        Some(Revoked::Crl)
    );
    assert_eq!(revocations.last_error(), None);
}

fn clock_now(clock: &ManualClock) -> std::time::SystemTime {
    use zt_core::time::Clock as _;
    clock.now()
}

#[test]
fn the_leaf_issuer_read_without_verifying_is_the_one_the_verified_path_names() {
    for intermediate in [false, true] {
        let clock = ManualClock::starting_now();
        let ca = ca(&clock, intermediate);
        let svid = ca
            .issue_x509_svid(&id("spiffe://example.org/orders"), DAY)
            .unwrap();
        let bundles = BundleSet::new().with(ca.bundle());
        let verified =
            verify_x509_svid(svid.chain(), &bundles, clock_now(&clock), Usage::ClientAuth).unwrap();
        let leaf = zt_core::x509::inspect_leaf(&svid.chain()[0]).unwrap();
        assert_eq!(leaf.cert_ref(), verified.path()[0]);
    }
}

#[test]
fn an_older_crl_cannot_replace_a_newer_one_and_a_future_one_is_refused() {
    let clock = ManualClock::starting_now();
    let ca = ca(&clock, false);
    let svid = ca
        .issue_x509_svid(&id("spiffe://example.org/a"), DAY)
        .unwrap();
    let bundles = BundleSet::new().with(ca.bundle());
    let revocations = Revocations::new();
    revocations.set_clock(Arc::new(clock.clone()));
    let empty_old = ca.crl(DAY).unwrap();
    clock.advance(Duration::from_secs(60));
    ca.revoke_serial(svid.serial());
    revocations
        .load_crl_ders("feed", &[ca.crl(DAY).unwrap()], &bundles)
        .unwrap();
    let version = *revocations.changes().borrow();

    // Replaying the earlier CRL, which lists nothing, would lift the
    // revocation.
    let err = revocations
        .load_crl_ders("feed", &[empty_old], &bundles)
        .unwrap_err();
    assert!(
        matches!(err, RevocationError::Crl(CrlError::Older { .. })),
        "{err}"
    );
    assert_eq!(*revocations.changes().borrow(), version);
    assert_eq!(
        revocations.check(svid.id(), svid.serial()),
        Some(Revoked::Crl)
    );

    // A CRL from an hour ahead: a clock problem, refused.
    clock.advance(Duration::from_secs(3600));
    let future = ca.crl(DAY).unwrap();
    clock.rewind(Duration::from_secs(3600));
    let err = Crl::verify(&future, &[], &bundles, clock_now(&clock), "f", 0).unwrap_err();
    assert!(matches!(err, CrlError::NotYetValid { .. }), "{err}");
}

#[tokio::test]
async fn watch_reports_a_crl_going_stale_and_bumps_changes_when_that_refuses() {
    let clock = ManualClock::starting_now();
    let ca = ca(&clock, false);
    let svid = ca
        .issue_x509_svid(&id("spiffe://example.org/a"), DAY * 3)
        .unwrap();
    let bundles = BundleSet::new().with(ca.bundle());
    let revocations = Revocations::new();
    revocations.set_clock(Arc::new(clock.clone()));
    revocations.set_stale_crl_policy(
        TrustDomain::new("example.org").unwrap(),
        StaleCrlPolicy::RefuseIssued,
    );
    revocations
        .load_crl_ders("fake-ca", &[ca.crl(DAY).unwrap()], &bundles)
        .unwrap();
    let _watch = revocations.watch(Duration::from_millis(10));
    assert_eq!(revocations.check(svid.id(), svid.serial()), None);
    let mut changes = revocations.changes();
    let seen = *changes.borrow_and_update();

    clock.advance(DAY * 2);
    tokio::time::timeout(Duration::from_secs(10), changes.wait_for(|v| *v > seen))
        .await
        .expect("the watcher noticed the stale CRL")
        .unwrap();
    assert_eq!(
        revocations.check(svid.id(), svid.serial()),
        Some(Revoked::CrlStale)
    );
}
