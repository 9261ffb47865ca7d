//! JWT-SVID validation: a good token passes; each broken kind fails with its
//! own error.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code"
)]

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use zt_core::jwt::{JwtError, validate_jwt_svid};
use zt_core::time::{Clock, ManualClock};
use zt_core::{BundleSet, SpiffeId, TrustDomain};
use zt_dev::{BadJwt, FakeCa};

const AUD: &str = "spiffe://example.org/ledger";

fn setup() -> (FakeCa, ManualClock, BundleSet, SpiffeId) {
    let clock = ManualClock::starting_now();
    let ca = FakeCa::builder(TrustDomain::new("example.org").unwrap())
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap();
    let bundles = BundleSet::new().with(ca.bundle());
    (
        ca,
        clock,
        bundles,
        SpiffeId::new("spiffe://example.org/billing").unwrap(),
    )
}

fn reject(kind: BadJwt) -> JwtError {
    let (ca, clock, bundles, id) = setup();
    let token = ca.issue_bad_jwt_svid(kind, &id, AUD).unwrap();
    validate_jwt_svid(&token, &bundles, AUD, clock.now(), Duration::ZERO)
        .expect_err("broken token must be rejected")
}

#[test]
fn token_from_the_fake_ca_validates() {
    let (ca, clock, bundles, id) = setup();
    let svid = ca
        .issue_jwt_svid(&id, &[AUD, "other"], Duration::from_secs(60))
        .unwrap();
    let claims =
        validate_jwt_svid(svid.token(), &bundles, AUD, clock.now(), Duration::ZERO).unwrap();
    assert_eq!(claims.subject(), &id);
    assert_eq!(claims.audience(), [AUD, "other"]);
    assert_eq!(claims.expiry(), svid.expiry());
}

#[test]
fn alg_none_is_rejected() {
    assert_eq!(
        reject(BadJwt::AlgNone),
        JwtError::UnsupportedAlgorithm { alg: "none".into() }
    );
}

#[test]
fn hmac_signed_with_the_public_key_is_rejected() {
    assert_eq!(
        reject(BadJwt::HmacWithPublicKey),
        JwtError::UnsupportedAlgorithm {
            alg: "HS256".into()
        }
    );
}

#[test]
fn expired_token_is_rejected() {
    assert!(matches!(reject(BadJwt::Expired), JwtError::Expired { .. }));
}

#[test]
fn token_before_nbf_is_rejected() {
    assert!(matches!(
        reject(BadJwt::NotYetValid),
        JwtError::NotYetValid { .. }
    ));
}

#[test]
fn wrong_audience_is_rejected() {
    assert!(matches!(
        reject(BadJwt::WrongAudience),
        JwtError::WrongAudience { .. }
    ));
}

#[test]
fn missing_audience_is_rejected() {
    assert_eq!(reject(BadJwt::MissingAudience), JwtError::MissingAudience);
}

#[test]
fn missing_expiry_is_rejected() {
    assert_eq!(reject(BadJwt::MissingExpiry), JwtError::MissingExpiry);
}

#[test]
fn unknown_key_id_is_rejected() {
    assert!(matches!(
        reject(BadJwt::UnknownKeyId),
        JwtError::UnknownKeyId { key_id, .. } if key_id == "no-such-key"
    ));
}

#[test]
fn subject_that_is_not_a_spiffe_id_is_rejected() {
    assert!(matches!(
        reject(BadJwt::SubjectNotSpiffeId),
        JwtError::SubjectNotSpiffeId(_)
    ));
}

#[test]
fn tampered_payload_fails_the_signature_check() {
    assert!(matches!(
        reject(BadJwt::TamperedPayload),
        JwtError::BadSignature { .. }
    ));
}

#[test]
fn token_signed_by_a_foreign_key_under_a_known_kid_fails_the_signature_check() {
    assert!(matches!(
        reject(BadJwt::ForeignKey),
        JwtError::BadSignature { .. }
    ));
}

#[test]
fn token_typed_other_than_jwt_or_jose_is_rejected_with_its_typ() {
    assert_eq!(
        reject(BadJwt::WrongType),
        JwtError::BadType {
            typ: "\"secevent+jwt\"".into()
        }
    );
    // The allowed values are compared exactly, as go-spiffe does.
    assert_eq!(
        reject(BadJwt::LowercaseType),
        JwtError::BadType {
            typ: "\"jwt\"".into()
        }
    );
}

#[test]
fn subject_in_a_trust_domain_without_bundle_is_rejected() {
    let (ca, clock, _, id) = setup();
    let token = ca
        .issue_jwt_svid(&id, &[AUD], Duration::from_secs(60))
        .unwrap();
    let other = FakeCa::new(TrustDomain::new("other.org").unwrap()).unwrap();
    let bundles = BundleSet::new().with(other.bundle());
    assert_eq!(
        validate_jwt_svid(token.token(), &bundles, AUD, clock.now(), Duration::ZERO),
        Err(JwtError::UnknownTrustDomain {
            trust_domain: "example.org".into()
        })
    );
}

#[test]
fn a_bundle_without_any_jwt_authority_is_reported_as_missing_not_as_an_unknown_key() {
    let (ca, clock, _, id) = setup();
    let token = ca
        .issue_jwt_svid(&id, &[AUD], Duration::from_secs(60))
        .unwrap();
    // The trust domain's X.509 authorities only, as a source that does not
    // follow JWT bundles holds it.
    let mut x509_only = zt_core::TrustBundle::new(ca.trust_domain().clone());
    x509_only.add_x509_authority(ca.root_certificate()).unwrap();
    let bundles = BundleSet::new().with(x509_only);
    let key_id = ca.jwt_key_ids()[0].clone();
    let err =
        validate_jwt_svid(token.token(), &bundles, AUD, clock.now(), Duration::ZERO).unwrap_err();
    assert_eq!(
        err,
        JwtError::NoJwtBundle {
            key_id: key_id.clone(),
            trust_domain: "example.org".into()
        }
    );
    let message = err.to_string();
    assert!(message.contains("no JWT bundle"), "{message}");
    assert!(message.contains(&key_id), "{message}");
}

#[test]
fn leeway_is_bounded() {
    let (ca, clock, bundles, id) = setup();
    let token = ca
        .issue_jwt_svid(&id, &[AUD], Duration::from_secs(10))
        .unwrap();
    clock.advance(Duration::from_secs(40));
    // 60 s of leeway covers 30 s past expiry.
    validate_jwt_svid(
        token.token(),
        &bundles,
        AUD,
        clock.now(),
        Duration::from_secs(60),
    )
    .unwrap();
    clock.advance(Duration::from_secs(3600));
    // A day of leeway is capped at five minutes.
    assert!(matches!(
        validate_jwt_svid(
            token.token(),
            &bundles,
            AUD,
            clock.now(),
            Duration::from_secs(86_400)
        ),
        Err(JwtError::Expired { .. })
    ));
}

#[test]
fn garbage_tokens_are_malformed_not_panics() {
    let (_, _, bundles, _) = setup();
    for junk in [
        "",
        "a",
        "a.b",
        "a.b.c.d",
        "!!.!!.!!",
        "e30.e30.",
        "bnVsbA.bnVsbA.x",
    ] {
        let err = validate_jwt_svid(junk, &bundles, AUD, SystemTime::now(), Duration::ZERO)
            .expect_err(junk);
        assert!(matches!(err, JwtError::Malformed { .. }), "{junk}: {err:?}");
    }
    let huge = "a".repeat(100_000);
    assert!(matches!(
        validate_jwt_svid(&huge, &bundles, AUD, SystemTime::now(), Duration::ZERO),
        Err(JwtError::Malformed { .. })
    ));
}

#[test]
fn rotated_jwt_key_keeps_old_tokens_valid_during_overlap() {
    let (ca, clock, _, id) = setup();
    let old = ca
        .issue_jwt_svid(&id, &[AUD], Duration::from_secs(60))
        .unwrap();
    ca.rotate().unwrap();
    let new = ca
        .issue_jwt_svid(&id, &[AUD], Duration::from_secs(60))
        .unwrap();
    let bundles = BundleSet::new().with(ca.bundle());
    for t in [&old, &new] {
        validate_jwt_svid(t.token(), &bundles, AUD, clock.now(), Duration::ZERO).unwrap();
    }
    ca.end_rotation_overlap();
    let bundles = BundleSet::new().with(ca.bundle());
    assert!(matches!(
        validate_jwt_svid(old.token(), &bundles, AUD, clock.now(), Duration::ZERO),
        Err(JwtError::UnknownKeyId { .. })
    ));
}

#[test]
fn out_of_range_times_are_malformed_not_a_panic() {
    use base64::Engine as _;
    let (ca, clock, bundles, _) = setup();
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let kid = ca
        .bundle()
        .jwt_authorities()
        .next()
        .unwrap()
        .key_id()
        .to_owned();
    let header = b64.encode(format!(r#"{{"alg":"ES256","kid":"{kid}"}}"#));
    for claims in [
        format!(r#"{{"sub":"spiffe://example.org/a","aud":"{AUD}","exp":18446744073709551615}}"#),
        format!(r#"{{"sub":"spiffe://example.org/a","aud":"{AUD}","exp":1,"nbf":1e300}}"#),
    ] {
        let token = format!("{header}.{}.c2ln", b64.encode(claims));
        // The signature is checked before the times; both must fail cleanly.
        let err =
            validate_jwt_svid(&token, &bundles, AUD, clock.now(), Duration::ZERO).unwrap_err();
        assert!(matches!(err, JwtError::BadSignature { .. }), "{err:?}");
    }
    // Reading an `exp` past what SystemTime holds is an error, not a panic.
    let claims =
        format!(r#"{{"sub":"spiffe://example.org/a","aud":"{AUD}","exp":18446744073709551615}}"#);
    let token = format!("{header}.{}.c2ln", b64.encode(claims));
    assert!(matches!(
        zt_core::jwt::JwtSvid::from_trusted_token(token),
        Err(JwtError::Malformed { .. })
    ));
}
