//! Every X.509-SVID rule, exercised with the fake CA's deliberately broken
//! material: each kind is rejected with its own error.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code"
)]

use std::time::{Duration, SystemTime};

use zt_core::time::ManualClock;
use zt_core::x509::{SvidError, Usage, verify_x509_svid};
use zt_core::{BundleSet, SpiffeId, TrustDomain};
use zt_dev::{BadSvid, FakeCa};

fn td(name: &str) -> TrustDomain {
    TrustDomain::new(name).unwrap()
}

fn id(s: &str) -> SpiffeId {
    SpiffeId::new(s).unwrap()
}

fn ca_with_clock(name: &str, clock: &ManualClock) -> FakeCa {
    FakeCa::builder(td(name))
        .clock(std::sync::Arc::new(clock.clone()))
        .build()
        .unwrap()
}

#[test]
fn valid_svid_verifies_against_its_own_trust_domain_bundle() {
    let clock = ManualClock::starting_now();
    let ca = ca_with_clock("example.org", &clock);
    let svid = ca
        .issue_x509_svid(&id("spiffe://example.org/billing"), Duration::from_secs(60))
        .unwrap();
    let bundles = BundleSet::new().with(ca.bundle());
    for usage in [Usage::ClientAuth, Usage::ServerAuth] {
        let v = verify_x509_svid(svid.chain(), &bundles, clock.now_for_test(), usage).unwrap();
        assert_eq!(v.id(), &id("spiffe://example.org/billing"));
        assert_eq!(v.serial_hex(), svid.serial_hex());
        assert_eq!(v.not_after(), svid.not_after());
    }
}

#[test]
fn svid_from_intermediate_ca_verifies_with_root_only_bundle() {
    let ca = FakeCa::builder(td("example.org"))
        .intermediate(true)
        .build()
        .unwrap();
    let svid = ca
        .issue_x509_svid(&id("spiffe://example.org/a"), Duration::from_secs(60))
        .unwrap();
    assert_eq!(svid.chain().len(), 2);
    let bundles = BundleSet::new().with(ca.bundle());
    assert_eq!(ca.bundle().x509_authorities().len(), 1);
    verify_x509_svid(svid.chain(), &bundles, SystemTime::now(), Usage::ServerAuth).unwrap();
}

trait NowForTest {
    fn now_for_test(&self) -> SystemTime;
}

impl NowForTest for ManualClock {
    fn now_for_test(&self) -> SystemTime {
        use zt_core::time::Clock;
        self.now()
    }
}

fn reject(kind: BadSvid) -> SvidError {
    let clock = ManualClock::starting_now();
    let ca = FakeCa::builder(td("example.org"))
        .clock(std::sync::Arc::new(clock.clone()))
        .build()
        .unwrap();
    let bad = ca
        .issue_bad_x509_svid(kind, &id("spiffe://example.org/workload"))
        .unwrap();
    let bundles = BundleSet::new().with(ca.bundle());
    verify_x509_svid(
        &bad.chain,
        &bundles,
        clock.now_for_test(),
        Usage::ClientAuth,
    )
    .expect_err("broken SVID must be rejected")
}

#[test]
fn expired_svid_is_rejected_as_expired() {
    assert!(matches!(
        reject(BadSvid::Expired),
        SvidError::Expired { .. }
    ));
}

#[test]
fn not_yet_valid_svid_is_rejected_as_not_yet_valid() {
    assert!(matches!(
        reject(BadSvid::NotYetValid),
        SvidError::NotYetValid { .. }
    ));
}

#[test]
fn svid_of_another_trust_domain_is_checked_against_that_domains_bundle_only() {
    match reject(BadSvid::WrongTrustDomain) {
        SvidError::UnknownTrustDomain { trust_domain } => assert_eq!(trust_domain, "wrong.example"),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn ca_certificate_as_leaf_is_rejected() {
    assert_eq!(reject(BadSvid::CaAsLeaf), SvidError::LeafIsCa);
}

#[test]
fn leaf_without_uri_san_is_rejected() {
    assert_eq!(reject(BadSvid::NoUriSan), SvidError::NoUriSan);
}

#[test]
fn leaf_with_two_uri_sans_is_rejected() {
    assert_eq!(
        reject(BadSvid::TwoUriSans),
        SvidError::MultipleUriSans { count: 2 }
    );
}

#[test]
fn leaf_with_non_spiffe_uri_is_rejected() {
    assert!(matches!(
        reject(BadSvid::NonSpiffeUri),
        SvidError::NotSpiffeUri { .. }
    ));
}

#[test]
fn leaf_with_key_cert_sign_is_rejected() {
    assert_eq!(
        reject(BadSvid::KeyCertSignOnLeaf),
        SvidError::LeafCanSignCertificates
    );
}

#[test]
fn leaf_with_crl_sign_is_rejected() {
    assert_eq!(reject(BadSvid::CrlSignOnLeaf), SvidError::LeafCanSignCrls);
}

#[test]
fn leaf_without_digital_signature_is_rejected() {
    assert_eq!(
        reject(BadSvid::NoDigitalSignature),
        SvidError::MissingDigitalSignature
    );
}

#[test]
fn leaf_without_key_usage_is_rejected() {
    assert_eq!(reject(BadSvid::NoKeyUsage), SvidError::MissingKeyUsage);
}

#[test]
fn leaf_signed_by_impostor_ca_with_same_subject_is_untrusted() {
    assert!(matches!(
        reject(BadSvid::UntrustedSameSubject),
        SvidError::UntrustedChain { .. }
    ));
}

#[test]
fn leaf_with_root_id_is_rejected() {
    assert!(matches!(reject(BadSvid::RootId), SvidError::RootId { .. }));
}

#[test]
fn percent_encoded_id_is_rejected_not_decoded() {
    match reject(BadSvid::PercentEncodedId) {
        SvidError::NonCanonicalId(e) => assert!(e.to_string().contains("percent"), "{e}"),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn uppercase_trust_domain_is_rejected_not_normalised() {
    match reject(BadSvid::UppercaseTrustDomain) {
        SvidError::NonCanonicalId(e) => assert!(e.to_string().contains("uppercase"), "{e}"),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn leaf_signed_by_non_ca_is_rejected() {
    assert_eq!(
        reject(BadSvid::SignedByNonCa),
        SvidError::SigningCertNotCa { index: 1 }
    );
}

#[test]
fn every_bad_kind_is_rejected_with_a_distinct_error() {
    let mut seen = std::collections::HashSet::new();
    for kind in BadSvid::ALL {
        let err = reject(kind);
        let variant = format!("{err:?}");
        let name = variant.split([' ', '(', '{']).next().unwrap().to_owned();
        // Both ID-canonical-form kinds share NonCanonicalId; distinguish by message.
        let key = if name == "NonCanonicalId" {
            format!("{name}:{}", err.to_string().contains("percent"))
        } else {
            name
        };
        assert!(seen.insert(key.clone()), "{kind:?} shares error {key}");
    }
}

#[test]
fn empty_chain_is_rejected() {
    assert_eq!(
        verify_x509_svid(&[], &BundleSet::new(), SystemTime::now(), Usage::ClientAuth),
        Err(SvidError::EmptyChain)
    );
}

#[test]
fn garbage_der_is_malformed_not_a_panic() {
    let junk = rustls_pki_types::CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01]);
    assert!(matches!(
        verify_x509_svid(
            &[junk],
            &BundleSet::new(),
            SystemTime::now(),
            Usage::ClientAuth
        ),
        Err(SvidError::Malformed { index: 0, .. })
    ));
}

#[test]
fn svid_is_rejected_once_the_injected_clock_passes_expiry() {
    let clock = ManualClock::starting_now();
    let ca = ca_with_clock("example.org", &clock);
    let svid = ca
        .issue_x509_svid(&id("spiffe://example.org/a"), Duration::from_secs(30))
        .unwrap();
    let bundles = BundleSet::new().with(ca.bundle());
    verify_x509_svid(
        svid.chain(),
        &bundles,
        clock.now_for_test(),
        Usage::ClientAuth,
    )
    .unwrap();
    clock.advance(Duration::from_secs(31));
    assert!(matches!(
        verify_x509_svid(
            svid.chain(),
            &bundles,
            clock.now_for_test(),
            Usage::ClientAuth
        ),
        Err(SvidError::Expired { .. })
    ));
}

#[test]
fn federated_bundle_set_uses_each_peers_own_trust_domain() {
    let a = FakeCa::new(td("a.example")).unwrap();
    let b = FakeCa::new(td("b.example")).unwrap();
    let svid_b = b
        .issue_x509_svid(&id("spiffe://b.example/x"), Duration::from_secs(60))
        .unwrap();
    // Only a's bundle: b's workload is from an unknown trust domain.
    let only_a = BundleSet::new().with(a.bundle());
    assert!(matches!(
        verify_x509_svid(
            svid_b.chain(),
            &only_a,
            SystemTime::now(),
            Usage::ClientAuth
        ),
        Err(SvidError::UnknownTrustDomain { .. })
    ));
    // Federated: b's workload verifies against b's bundle.
    let both = only_a.clone().with(b.bundle());
    verify_x509_svid(svid_b.chain(), &both, SystemTime::now(), Usage::ClientAuth).unwrap();
}

#[test]
fn root_of_another_trust_domain_never_vouches_for_a_peer() {
    // b's CA signs an SVID claiming a's trust domain: with both bundles
    // present, it is still checked against a's roots only.
    let a = FakeCa::new(td("a.example")).unwrap();
    let b = FakeCa::new(td("b.example")).unwrap();
    let forged = b
        .issue_bad_x509_svid(BadSvid::WrongTrustDomain, &id("spiffe://b.example/x"))
        .unwrap();
    let wrong = FakeCa::new(td("wrong.example")).unwrap();
    let bundles = BundleSet::new()
        .with(a.bundle())
        .with(b.bundle())
        .with(wrong.bundle());
    assert!(matches!(
        verify_x509_svid(&forged.chain, &bundles, SystemTime::now(), Usage::ClientAuth),
        Err(SvidError::UntrustedChain { trust_domain, .. }) if trust_domain == "wrong.example"
    ));
}

#[test]
fn ca_rotation_keeps_old_svids_valid_during_overlap_only() {
    let ca = FakeCa::new(td("example.org")).unwrap();
    let old = ca
        .issue_x509_svid(&id("spiffe://example.org/a"), Duration::from_secs(60))
        .unwrap();
    ca.rotate().unwrap();
    let new = ca
        .issue_x509_svid(&id("spiffe://example.org/a"), Duration::from_secs(60))
        .unwrap();
    let during = BundleSet::new().with(ca.bundle());
    assert_eq!(ca.bundle().x509_authorities().len(), 2);
    verify_x509_svid(old.chain(), &during, SystemTime::now(), Usage::ClientAuth).unwrap();
    verify_x509_svid(new.chain(), &during, SystemTime::now(), Usage::ClientAuth).unwrap();
    ca.end_rotation_overlap();
    let after = BundleSet::new().with(ca.bundle());
    assert!(matches!(
        verify_x509_svid(old.chain(), &after, SystemTime::now(), Usage::ClientAuth),
        Err(SvidError::UntrustedChain { .. })
    ));
    verify_x509_svid(new.chain(), &after, SystemTime::now(), Usage::ClientAuth).unwrap();
}

#[test]
fn fake_ca_refuses_ids_outside_its_trust_domain() {
    let ca = FakeCa::new(td("example.org")).unwrap();
    assert!(
        ca.issue_x509_svid(&id("spiffe://other.org/a"), Duration::from_secs(60))
            .is_err()
    );
    assert!(
        ca.issue_x509_svid(&id("spiffe://example.org/a"), Duration::ZERO)
            .is_err()
    );
}

/// Key and self-signed SPIFFE leaf written by the openssl command line, in
/// the traditional (SEC1 / PKCS#1) key encodings.
fn openssl_leaf(dir: &std::path::Path, name: &str, genkey: &[&str]) -> (Vec<u8>, Vec<u8>) {
    let key = dir.join(format!("{name}.key"));
    let cert = dir.join(format!("{name}.pem"));
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .output()
            .expect("openssl must be installed for this test");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    };
    let key_pem = run(genkey);
    std::fs::write(&key, &key_pem).unwrap();
    run(&[
        "req",
        "-x509",
        "-new",
        "-key",
        key.to_str().unwrap(),
        "-subj",
        "/CN=leaf",
        "-days",
        "1",
        "-addext",
        "subjectAltName=URI:spiffe://example.org/leaf",
        "-addext",
        "basicConstraints=critical,CA:FALSE",
        "-addext",
        "keyUsage=critical,digitalSignature",
        "-out",
        cert.to_str().unwrap(),
    ]);
    (std::fs::read(cert).unwrap(), key_pem)
}

#[test]
fn key_match_reads_sec1_pkcs1_and_pkcs8_keys_and_refuses_another_leafs_key() {
    use zt_core::svid::X509Svid;
    let dir = tempfile::tempdir().unwrap();
    let (ec_cert, ec_key) = openssl_leaf(
        dir.path(),
        "ec",
        &["ecparam", "-name", "prime256v1", "-genkey", "-noout"],
    );
    assert!(String::from_utf8_lossy(&ec_key).contains("EC PRIVATE KEY"));
    X509Svid::from_pem(&ec_cert, &ec_key)
        .unwrap()
        .check_key_matches_leaf()
        .unwrap();
    let (p384_cert, p384_key) = openssl_leaf(
        dir.path(),
        "p384",
        &["ecparam", "-name", "secp384r1", "-genkey", "-noout"],
    );
    X509Svid::from_pem(&p384_cert, &p384_key)
        .unwrap()
        .check_key_matches_leaf()
        .unwrap();
    let (rsa_cert, rsa_key) = openssl_leaf(dir.path(), "rsa", &["genrsa", "-traditional", "2048"]);
    assert!(String::from_utf8_lossy(&rsa_key).contains("RSA PRIVATE KEY"));
    X509Svid::from_pem(&rsa_cert, &rsa_key)
        .unwrap()
        .check_key_matches_leaf()
        .unwrap();

    let fake = zt_dev::FakeCa::new(zt_core::TrustDomain::new("example.org").unwrap()).unwrap();
    let pkcs8 = fake
        .issue_x509_svid(
            &zt_core::SpiffeId::new("spiffe://example.org/x").unwrap(),
            std::time::Duration::from_secs(60),
        )
        .unwrap();
    pkcs8.check_key_matches_leaf().unwrap();

    // Every pairing of one leaf with another's key is refused.
    for (cert, key) in [
        (&ec_cert, &p384_key),
        (&ec_cert, &rsa_key),
        (&rsa_cert, &ec_key),
        (&p384_cert, &ec_key),
        (&ec_cert, &pkcs8.key_pem().into_bytes()),
    ] {
        let err = X509Svid::from_pem(cert, key)
            .unwrap()
            .check_key_matches_leaf()
            .unwrap_err();
        assert!(
            matches!(
                err,
                SvidError::KeyMismatch | SvidError::UnreadableKey { .. }
            ),
            "{err:?}"
        );
    }
    let (other_ec_cert, _) = openssl_leaf(
        dir.path(),
        "ec2",
        &["ecparam", "-name", "prime256v1", "-genkey", "-noout"],
    );
    let err = X509Svid::from_pem(&other_ec_cert, &ec_key)
        .unwrap()
        .check_key_matches_leaf()
        .unwrap_err();
    assert_eq!(err, SvidError::KeyMismatch);
}
