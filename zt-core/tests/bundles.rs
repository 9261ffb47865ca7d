//! Bundle loading and serialisation: PEM, concatenated DER, and the SPIFFE
//! bundle format (JWKS).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code"
)]

use zt_core::TrustDomain;
use zt_core::bundle::{BundleError, TrustBundle};
use zt_dev::FakeCa;

fn td() -> TrustDomain {
    TrustDomain::new("example.org").unwrap()
}

#[test]
fn spiffe_bundle_json_round_trips_x509_and_jwt_authorities() {
    let ca = FakeCa::new(td()).unwrap();
    let bundle = ca.bundle();
    let json = bundle.to_spiffe_json().unwrap();
    let doc: serde_json::Value = serde_json::from_str(&json).unwrap();
    let keys = doc["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2);
    let x509 = keys.iter().find(|k| k["use"] == "x509-svid").unwrap();
    assert_eq!(x509["kty"], "EC");
    assert_eq!(x509["crv"], "P-256");
    assert_eq!(x509["x5c"].as_array().unwrap().len(), 1);
    let jwt = keys.iter().find(|k| k["use"] == "jwt-svid").unwrap();
    assert!(jwt["kid"].is_string());

    let parsed = TrustBundle::from_spiffe_json(td(), json.as_bytes()).unwrap();
    assert_eq!(parsed.x509_authorities(), bundle.x509_authorities());
    let kid = jwt["kid"].as_str().unwrap();
    assert!(parsed.jwt_authority(kid).is_some());
}

#[test]
fn pem_and_der_forms_load_the_same_authorities() {
    let ca = FakeCa::new(td()).unwrap();
    ca.rotate().unwrap();
    let bundle = ca.bundle();
    assert_eq!(bundle.x509_authorities().len(), 2);
    let from_pem = TrustBundle::from_pem(td(), bundle.to_pem().as_bytes()).unwrap();
    let from_der = TrustBundle::from_der_concat(td(), &bundle.to_der_concat()).unwrap();
    assert_eq!(from_pem.x509_authorities(), bundle.x509_authorities());
    assert_eq!(from_der.x509_authorities(), bundle.x509_authorities());
    let detected = TrustBundle::from_bytes(td(), bundle.to_pem().as_bytes()).unwrap();
    assert_eq!(detected.x509_authorities().len(), 2);
}

#[test]
fn empty_pem_is_an_error_naming_the_trust_domain() {
    let err = TrustBundle::from_pem(td(), b"").unwrap_err();
    assert_eq!(
        err,
        BundleError::NoAuthorities {
            trust_domain: "example.org".into()
        }
    );
}

#[test]
fn bundle_json_errors_name_the_key() {
    let cases: &[(&str, &str)] = &[
        (r#"[]"#, "JSON object"),
        (r#"{"nokeys": []}"#, "keys"),
        (r#"{"keys": [{"use": "x509-svid"}]}"#, "kty"),
        (r#"{"keys": [{"kty": "EC", "use": "x509-svid"}]}"#, "x5c"),
        (
            r#"{"keys": [{"kty": "EC", "use": "x509-svid", "x5c": ["a", "b"]}]}"#,
            "exactly one",
        ),
        (
            r#"{"keys": [{"kty": "EC", "use": "x509-svid", "x5c": ["***"]}]}"#,
            "base64",
        ),
        (r#"{"keys": [{"kty": "EC", "use": "jwt-svid"}]}"#, "kid"),
        (
            r#"{"keys": [{"kty": "oct", "use": "jwt-svid", "kid": "k", "k": "c2VjcmV0"}]}"#,
            "private",
        ),
    ];
    for (doc, expect) in cases {
        let err = TrustBundle::from_spiffe_json(td(), doc.as_bytes()).unwrap_err();
        assert!(err.to_string().contains(expect), "{doc}: {err}");
    }
}

#[test]
fn keys_with_unknown_use_are_ignored() {
    let doc = r#"{"keys": [{"kty": "EC", "use": "something-else"}], "spiffe_sequence": 7}"#;
    let bundle = TrustBundle::from_spiffe_json(td(), doc.as_bytes()).unwrap();
    assert!(bundle.x509_authorities().is_empty());
    assert_eq!(bundle.sequence(), Some(7));
}

#[test]
fn garbage_der_is_reported_with_its_index() {
    let ca = FakeCa::new(td()).unwrap();
    let mut der = ca.bundle().to_der_concat();
    der.extend_from_slice(&[0x30, 0x82, 0xff]);
    assert!(matches!(
        TrustBundle::from_der_concat(td(), &der),
        Err(BundleError::BadCertificate { index: 1, .. })
    ));
}

#[test]
fn sequence_and_refresh_hint_round_trip_through_the_spiffe_format() {
    let ca = FakeCa::new(td()).unwrap();
    let mut bundle = ca.bundle();
    bundle.set_sequence(Some(42));
    bundle.set_refresh_hint(Some(300));
    let json = bundle.to_spiffe_json().unwrap();
    let doc: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(doc["spiffe_sequence"], 42);
    assert_eq!(doc["spiffe_refresh_hint"], 300);
    let back = TrustBundle::from_spiffe_json(td(), json.as_bytes()).unwrap();
    assert_eq!(back.sequence(), Some(42));
    assert_eq!(back.refresh_hint(), Some(300));
    assert!(back.same_authorities(&bundle));
}

#[test]
fn a_sequence_or_refresh_hint_that_is_not_a_non_negative_integer_is_refused() {
    for (doc, member) in [
        (r#"{"keys": [], "spiffe_sequence": -1}"#, "spiffe_sequence"),
        (r#"{"keys": [], "spiffe_sequence": "7"}"#, "spiffe_sequence"),
        (
            r#"{"keys": [], "spiffe_refresh_hint": 1.5}"#,
            "spiffe_refresh_hint",
        ),
    ] {
        let err = TrustBundle::from_spiffe_json(td(), doc.as_bytes()).unwrap_err();
        assert!(
            matches!(&err, BundleError::Json { reason } if reason.contains(member)),
            "{doc}: {err}"
        );
    }
}

#[test]
fn same_authorities_sees_an_added_authority() {
    let ca = FakeCa::new(td()).unwrap();
    let before = ca.bundle();
    ca.rotate().unwrap();
    let after = ca.bundle();
    assert!(before.same_authorities(&before.clone()));
    assert!(!before.same_authorities(&after));
}

#[test]
fn an_authority_of_another_trust_domain_is_named_by_the_check() {
    let other = FakeCa::new("other.test".parse().unwrap()).unwrap();
    // The other trust domain's authorities, presented as example.org's.
    let pem = other.bundle().to_pem();
    // Refused at load, as by every loader.
    let err = TrustBundle::from_pem(td(), pem.as_bytes()).unwrap_err();
    assert_eq!(
        err,
        BundleError::ForeignAuthority {
            index: 0,
            trust_domain: td().to_string(),
            named: "spiffe://other.test".into(),
        }
    );
    let own = FakeCa::new(td()).unwrap().bundle();
    assert_eq!(own.check_authorities_trust_domain(), Ok(()));
}

#[test]
fn authorities_expire_with_their_latest_certificate() {
    let ca = FakeCa::new(td()).unwrap();
    let bundle = ca.bundle();
    let expiry = bundle.x509_authorities_expire_at().unwrap();
    assert!(expiry > std::time::SystemTime::now());
    assert_eq!(TrustBundle::new(td()).x509_authorities_expire_at(), None);
}

fn partner() -> TrustDomain {
    TrustDomain::new("partner.example").unwrap()
}

/// A partner's CA certificate (URI SAN `spiffe://partner.example`, as
/// SPIRE's and the fake CA's carry) offered as an anchor of `example.org`.
fn partner_root() -> rustls_pki_types::CertificateDer<'static> {
    FakeCa::new(partner()).unwrap().bundle().x509_authorities()[0].clone()
}

fn is_foreign(err: &BundleError) -> bool {
    matches!(err, BundleError::ForeignAuthority { trust_domain, named, .. }
        if trust_domain == "example.org" && named == "spiffe://partner.example")
}

#[test]
fn a_partner_ca_in_our_pem_bundle_is_refused_at_load_naming_its_trust_domain() {
    let ours = FakeCa::new(td()).unwrap().bundle();
    let mixed = format!(
        "{}{}",
        ours.to_pem(),
        zt_core::bundle::certs_to_pem(&[partner_root()])
    );
    let err = TrustBundle::from_pem(td(), mixed.as_bytes()).unwrap_err();
    assert!(is_foreign(&err), "{err:?}");
    assert!(err.to_string().contains("authority #1"), "{err}");
    assert!(err.to_string().contains("federation"), "{err}");
}

#[test]
fn a_partner_ca_is_refused_by_every_bundle_loader_and_by_hand() {
    let root = partner_root();
    // Concatenated DER, the Workload API's encoding.
    let err = TrustBundle::from_der_concat(td(), &root).unwrap_err();
    assert!(is_foreign(&err), "{err:?}");
    // SPIFFE bundle JSON.
    let json = FakeCa::new(partner())
        .unwrap()
        .bundle()
        .to_spiffe_json()
        .unwrap();
    let err = TrustBundle::from_spiffe_json(td(), json.as_bytes()).unwrap_err();
    assert!(
        err.to_string().contains("spiffe://partner.example"),
        "{err}"
    );
    // A bundle built by hand, as for a BundleSet assembled in code.
    let mut by_hand = TrustBundle::new(td());
    let err = by_hand.add_x509_authority(root.clone()).unwrap_err();
    assert!(is_foreign(&err), "{err:?}");
    assert!(by_hand.x509_authorities().is_empty());
    // The reusable check other sources call.
    let err = zt_core::bundle::check_authority_trust_domain(&td(), &root).unwrap_err();
    assert!(is_foreign(&err), "{err:?}");
    // In its own trust domain the same certificate is an anchor.
    assert_eq!(
        zt_core::bundle::authority_trust_domain(&root).unwrap(),
        Some(partner())
    );
    let mut theirs = TrustBundle::new(partner());
    theirs.add_x509_authority(root).unwrap();
    zt_core::bundle::check_authority_trust_domain(&partner(), &theirs.x509_authorities()[0])
        .unwrap();
}
