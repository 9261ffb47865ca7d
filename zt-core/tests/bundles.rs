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
