//! A fake CA saved to disk and loaded back issues SVIDs and tokens that the
//! saved bundle verifies.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code"
)]

use std::time::{Duration, SystemTime};

use zt_core::jwt::validate_jwt_svid;
use zt_core::time::system_clock;
use zt_core::x509::{Usage, verify_x509_svid};
use zt_core::{BundleSet, SpiffeId, TrustDomain};
use zt_dev::{FakeCa, FakeCaError};

#[test]
fn saved_ca_reloads_with_the_same_authorities() {
    for intermediate in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let ca = FakeCa::builder(TrustDomain::new("example.org").unwrap())
            .intermediate(intermediate)
            .build()
            .unwrap();
        ca.save(dir.path()).unwrap();
        let loaded = FakeCa::load(dir.path(), system_clock()).unwrap();
        assert_eq!(loaded.trust_domain(), ca.trust_domain());
        let id = SpiffeId::new("spiffe://example.org/svc").unwrap();
        let svid = loaded
            .issue_x509_svid(&id, Duration::from_secs(60))
            .unwrap();
        let bundles = BundleSet::new().with(ca.bundle());
        verify_x509_svid(svid.chain(), &bundles, SystemTime::now(), Usage::ServerAuth).unwrap();
        let token = loaded
            .issue_jwt_svid(&id, &["aud"], Duration::from_secs(60))
            .unwrap();
        validate_jwt_svid(
            token.token(),
            &bundles,
            "aud",
            SystemTime::now(),
            Duration::ZERO,
        )
        .unwrap();
    }
}

#[cfg(unix)]
#[test]
fn saved_private_keys_are_owner_only() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    FakeCa::builder(TrustDomain::new("example.org").unwrap())
        .intermediate(true)
        .build()
        .unwrap()
        .save(dir.path())
        .unwrap();
    for key in ["root.key", "intermediate.key", "jwt.key"] {
        let mode = std::fs::metadata(dir.path().join(key))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{key}");
    }
}

#[test]
fn loading_a_directory_that_is_not_a_ca_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let err = FakeCa::load(dir.path(), system_clock()).unwrap_err();
    assert!(
        matches!(err, FakeCaError::Io { ref path, .. } if path.ends_with("ca.json")),
        "{err:?}"
    );
    std::fs::write(dir.path().join("ca.json"), "{\"format\": 1}").unwrap();
    let err = FakeCa::load(dir.path(), system_clock()).unwrap_err();
    assert!(matches!(err, FakeCaError::Store { .. }), "{err:?}");
}
