//! The fake CA's staged rotation: prepare (trusted, not issuing), activate
//! (issuing), end of overlap (the old root leaves the bundle).

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code")]

use std::time::{Duration, SystemTime};

use zt_core::bundle::BundleSet;
use zt_core::x509::{SvidError, Usage, verify_x509_svid};
use zt_dev::FakeCa;

const TTL: Duration = Duration::from_secs(60);

#[test]
fn a_prepared_root_is_trusted_before_it_issues_and_the_old_one_after() {
    let ca = FakeCa::new("example.org".parse().unwrap()).unwrap();
    let id = "spiffe://example.org/orders".parse().unwrap();
    let old_root = ca.root_certificate();
    let before = ca.issue_x509_svid(&id, TTL).unwrap();

    ca.prepare_rotation().unwrap();
    let staged: BundleSet = [ca.bundle()].into_iter().collect();
    assert_eq!(ca.bundle().x509_authorities().len(), 2);
    // Still issuing from the old root.
    assert_eq!(ca.root_certificate(), old_root);
    let during = ca.issue_x509_svid(&id, TTL).unwrap();
    verify_x509_svid(
        during.chain(),
        &staged,
        SystemTime::now(),
        Usage::ClientAuth,
    )
    .unwrap();

    assert!(ca.activate_prepared());
    assert!(!ca.activate_prepared(), "nothing left to activate");
    assert_ne!(ca.root_certificate(), old_root);
    let after = ca.issue_x509_svid(&id, TTL).unwrap();
    // The bundle workloads received at prepare time already verifies it.
    verify_x509_svid(after.chain(), &staged, SystemTime::now(), Usage::ClientAuth).unwrap();

    ca.end_rotation_overlap();
    let current: BundleSet = [ca.bundle()].into_iter().collect();
    assert_eq!(ca.bundle().x509_authorities().len(), 1);
    verify_x509_svid(
        after.chain(),
        &current,
        SystemTime::now(),
        Usage::ClientAuth,
    )
    .unwrap();
    let refused = verify_x509_svid(
        before.chain(),
        &current,
        SystemTime::now(),
        Usage::ClientAuth,
    );
    assert!(
        !matches!(refused, Ok(_) | Err(SvidError::EmptyChain)),
        "{refused:?}"
    );
}
