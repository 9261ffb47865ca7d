//! The verified JWT-SVID cache answers as a full validation would: a hit
//! skips only the signature check, and every per-request rule (key still in
//! the bundle, expiry, not-before, audience) is applied again.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code"
)]

use std::sync::Arc;
use std::time::Duration;

use zt_core::bundle::JwtAuthority;
use zt_core::jwt::{JwtError, JwtSvidCache, validate_jwt_svid};
use zt_core::time::{Clock, ManualClock};
use zt_core::{BundleSet, SpiffeId, TrustBundle, TrustDomain};
use zt_dev::{BadJwt, FakeCa};

const AUD: &str = "spiffe://example.org/ledger";

fn setup() -> (FakeCa, ManualClock, SpiffeId) {
    let clock = ManualClock::starting_now();
    let ca = FakeCa::builder(TrustDomain::new("example.org").unwrap())
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap();
    (
        ca,
        clock,
        SpiffeId::new("spiffe://example.org/billing").unwrap(),
    )
}

#[test]
fn a_repeated_token_is_answered_from_the_cache_with_the_same_claims() {
    let (ca, clock, id) = setup();
    let bundles = BundleSet::new().with(ca.bundle());
    let svid = ca
        .issue_jwt_svid(&id, &[AUD], Duration::from_secs(60))
        .unwrap();
    let cache = JwtSvidCache::new(8);
    let first = cache
        .validate(svid.token(), &bundles, AUD, clock.now(), Duration::ZERO)
        .unwrap();
    let second = cache
        .validate(svid.token(), &bundles, AUD, clock.now(), Duration::ZERO)
        .unwrap();
    // The same allocation: the second answer came from the cache.
    assert!(Arc::ptr_eq(&first, &second));
    assert_eq!(cache.len(), 1);
    let full = validate_jwt_svid(svid.token(), &bundles, AUD, clock.now(), Duration::ZERO).unwrap();
    assert_eq!(*first, full);
}

#[test]
fn a_cached_token_past_its_expiry_is_refused_as_expired() {
    let (ca, clock, id) = setup();
    let bundles = BundleSet::new().with(ca.bundle());
    let svid = ca
        .issue_jwt_svid(&id, &[AUD], Duration::from_secs(60))
        .unwrap();
    let cache = JwtSvidCache::new(8);
    cache
        .validate(svid.token(), &bundles, AUD, clock.now(), Duration::ZERO)
        .unwrap();
    clock.advance(Duration::from_secs(61));
    let err = cache
        .validate(svid.token(), &bundles, AUD, clock.now(), Duration::ZERO)
        .unwrap_err();
    assert!(matches!(err, JwtError::Expired { .. }), "{err:?}");
    // Leeway is applied on a hit as on a full validation.
    let within = cache.validate(
        svid.token(),
        &bundles,
        AUD,
        clock.now(),
        Duration::from_secs(5),
    );
    assert!(within.is_ok(), "{within:?}");
}

#[test]
fn a_cached_token_whose_key_left_the_bundle_is_refused() {
    let (ca, clock, id) = setup();
    let svid = ca
        .issue_jwt_svid(&id, &[AUD], Duration::from_secs(60))
        .unwrap();
    let bundle = ca.bundle();
    let cache = JwtSvidCache::new(8);
    let with_key = BundleSet::new().with(bundle.clone());
    let kid = cache
        .validate(svid.token(), &with_key, AUD, clock.now(), Duration::ZERO)
        .unwrap()
        .key_id()
        .to_owned();

    // Another key takes its place: the token's key ID is now unknown.
    let mut without = bundle;
    assert!(without.remove_jwt_authority(&kid));
    let (other, _, _) = setup();
    without.add_jwt_authority(other.bundle().jwt_authorities().next().unwrap().clone());
    let without = BundleSet::new().with(without);
    let err = cache
        .validate(svid.token(), &without, AUD, clock.now(), Duration::ZERO)
        .unwrap_err();
    assert_eq!(
        err,
        JwtError::UnknownKeyId {
            key_id: kid,
            trust_domain: "example.org".into()
        }
    );
}

#[test]
fn a_cached_token_whose_key_id_now_names_another_key_is_refused() {
    let (ca, clock, id) = setup();
    let svid = ca
        .issue_jwt_svid(&id, &[AUD], Duration::from_secs(60))
        .unwrap();
    let cache = JwtSvidCache::new(8);
    let kid = cache
        .validate(
            svid.token(),
            &BundleSet::new().with(ca.bundle()),
            AUD,
            clock.now(),
            Duration::ZERO,
        )
        .unwrap()
        .key_id()
        .to_owned();

    // Another CA's key published under the same key ID.
    let (other, _, _) = setup();
    let mut jwk = other
        .bundle()
        .jwt_authorities()
        .next()
        .unwrap()
        .jwk()
        .clone();
    jwk.insert("kid".into(), kid.clone().into());
    let mut swapped = TrustBundle::new(TrustDomain::new("example.org").unwrap());
    swapped.add_jwt_authority(
        JwtAuthority::from_jwk_json(serde_json::to_vec(&jwk).unwrap().as_slice()).unwrap(),
    );
    let err = cache
        .validate(
            svid.token(),
            &BundleSet::new().with(swapped),
            AUD,
            clock.now(),
            Duration::ZERO,
        )
        .unwrap_err();
    assert!(matches!(err, JwtError::BadSignature { .. }), "{err:?}");
}

#[test]
fn a_cached_token_is_checked_against_the_audience_of_each_request() {
    let (ca, clock, id) = setup();
    let bundles = BundleSet::new().with(ca.bundle());
    let svid = ca
        .issue_jwt_svid(&id, &[AUD], Duration::from_secs(60))
        .unwrap();
    let cache = JwtSvidCache::new(8);
    cache
        .validate(svid.token(), &bundles, AUD, clock.now(), Duration::ZERO)
        .unwrap();
    let err = cache
        .validate(
            svid.token(),
            &bundles,
            "spiffe://example.org/other",
            clock.now(),
            Duration::ZERO,
        )
        .unwrap_err();
    assert!(matches!(err, JwtError::WrongAudience { .. }), "{err:?}");
}

/// A token with an `nbf` claim, signed by a fresh P-256 key published in
/// the returned bundle set under `kid` "k1".
fn token_with_not_before(now: u64) -> (String, BundleSet) {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
    use ring::rand::SystemRandom;
    use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};

    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let pair =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
    let point = pair.public_key().as_ref();
    let jwk = serde_json::json!({
        "kty": "EC", "crv": "P-256", "kid": "k1",
        "x": B64.encode(&point[1..33]), "y": B64.encode(&point[33..65]),
    });
    let mut bundle = TrustBundle::new(TrustDomain::new("example.org").unwrap());
    bundle.add_jwt_authority(JwtAuthority::from_jwk_json(jwk.to_string().as_bytes()).unwrap());
    let header = B64.encode(r#"{"alg":"ES256","kid":"k1","typ":"JWT"}"#);
    let claims = serde_json::json!({
        "sub": "spiffe://example.org/billing", "aud": AUD,
        "nbf": now, "iat": now, "exp": now + 60,
    });
    let input = format!("{header}.{}", B64.encode(claims.to_string()));
    let sig = pair.sign(&rng, input.as_bytes()).unwrap();
    (
        format!("{input}.{}", B64.encode(sig.as_ref())),
        BundleSet::new().with(bundle),
    )
}

#[test]
fn a_cached_token_before_its_not_before_is_refused() {
    let clock = ManualClock::starting_now();
    let now = clock
        .now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let (token, bundles) = token_with_not_before(now);
    let cache = JwtSvidCache::new(8);
    cache
        .validate(&token, &bundles, AUD, clock.now(), Duration::ZERO)
        .unwrap();
    clock.rewind(Duration::from_secs(30));
    let err = cache
        .validate(&token, &bundles, AUD, clock.now(), Duration::ZERO)
        .unwrap_err();
    assert!(matches!(err, JwtError::NotYetValid { .. }), "{err:?}");
    let within = cache.validate(&token, &bundles, AUD, clock.now(), Duration::from_secs(30));
    assert!(within.is_ok(), "{within:?}");
}

#[test]
fn failures_are_never_cached() {
    let (ca, clock, id) = setup();
    let bundles = BundleSet::new().with(ca.bundle());
    let cache = JwtSvidCache::new(8);
    for kind in [BadJwt::Expired, BadJwt::TamperedPayload, BadJwt::AlgNone] {
        let token = ca.issue_bad_jwt_svid(kind, &id, AUD).unwrap();
        for _ in 0..2 {
            assert!(
                cache
                    .validate(&token, &bundles, AUD, clock.now(), Duration::ZERO)
                    .is_err()
            );
        }
    }
    assert!(cache.is_empty());
}

#[test]
fn the_cache_holds_at_most_its_capacity_and_drops_expired_tokens_first() {
    let (ca, clock, id) = setup();
    let bundles = BundleSet::new().with(ca.bundle());
    let cache = JwtSvidCache::new(2);
    let short = ca
        .issue_jwt_svid(&id, &[AUD], Duration::from_secs(10))
        .unwrap();
    let long = ca
        .issue_jwt_svid(&id, &[AUD], Duration::from_secs(600))
        .unwrap();
    for t in [&short, &long] {
        cache
            .validate(t.token(), &bundles, AUD, clock.now(), Duration::ZERO)
            .unwrap();
    }
    assert_eq!(cache.len(), 2);
    clock.advance(Duration::from_secs(20));
    let third = ca
        .issue_jwt_svid(&id, &[AUD], Duration::from_secs(600))
        .unwrap();
    let third_claims = cache
        .validate(third.token(), &bundles, AUD, clock.now(), Duration::ZERO)
        .unwrap();
    assert_eq!(cache.len(), 2);
    // The expired token made room: the long-lived one is still a hit.
    let a = cache
        .validate(long.token(), &bundles, AUD, clock.now(), Duration::ZERO)
        .unwrap();
    let b = cache
        .validate(long.token(), &bundles, AUD, clock.now(), Duration::ZERO)
        .unwrap();
    assert!(Arc::ptr_eq(&a, &b));
    let again = cache
        .validate(third.token(), &bundles, AUD, clock.now(), Duration::ZERO)
        .unwrap();
    assert!(Arc::ptr_eq(&third_claims, &again));
    assert_eq!(cache.len(), 2);
}

#[test]
fn a_forged_token_with_a_cached_tokens_signature_is_refused_and_evicts_nothing() {
    let (ca, clock, id) = setup();
    let bundles = BundleSet::new().with(ca.bundle());
    let svid = ca
        .issue_jwt_svid(&id, &[AUD], Duration::from_secs(60))
        .unwrap();
    let cache = JwtSvidCache::new(8);
    let first = cache
        .validate(svid.token(), &bundles, AUD, clock.now(), Duration::ZERO)
        .unwrap();
    // Another subject in the payload, the signature (and so the hashed
    // tail) of the cached token kept.
    let mut parts = svid.token().split('.');
    let (header, payload, signature) = (
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap(),
    );
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
    let claims = String::from_utf8(B64.decode(payload).unwrap())
        .unwrap()
        .replace("/billing", "/admin");
    let forged = format!("{header}.{}.{signature}", B64.encode(claims));
    let err = cache
        .validate(&forged, &bundles, AUD, clock.now(), Duration::ZERO)
        .unwrap_err();
    assert!(matches!(err, JwtError::BadSignature { .. }), "{err:?}");
    let again = cache
        .validate(svid.token(), &bundles, AUD, clock.now(), Duration::ZERO)
        .unwrap();
    assert!(Arc::ptr_eq(&first, &again));
    assert_eq!(cache.len(), 1);
}

#[test]
fn cached_answers_only_the_exact_bytes_of_a_stored_token_and_only_while_it_holds() {
    let (ca, clock, id) = setup();
    let bundles = BundleSet::new().with(ca.bundle());
    let svid = ca
        .issue_jwt_svid(&id, &[AUD], Duration::from_secs(60))
        .unwrap();
    let token = svid.token().as_bytes();
    let cache = JwtSvidCache::new(8);
    let at = |cache: &JwtSvidCache, bytes: &[u8]| {
        cache.cached(bytes, &bundles, AUD, clock.now(), Duration::ZERO)
    };
    // Nothing is answered before a full validation stored the token.
    assert!(at(&cache, token).is_none());
    let validated = cache
        .validate(svid.token(), &bundles, AUD, clock.now(), Duration::ZERO)
        .unwrap();
    let hit = at(&cache, token).unwrap();
    assert!(Arc::ptr_eq(&validated, &hit));
    // The same tail with other bytes before it, the token with a byte
    // more or a byte less: none of them is the stored token.
    let mut other_head = token.to_vec();
    other_head[0] ^= 1;
    assert!(at(&cache, &other_head).is_none());
    assert!(at(&cache, &[token, b"="].concat()).is_none());
    assert!(at(&cache, &token[1..]).is_none());
    // Another audience, or the token's expiry passed: no answer.
    assert!(
        cache
            .cached(
                token,
                &bundles,
                "spiffe://example.org/other",
                clock.now(),
                Duration::ZERO
            )
            .is_none()
    );
    clock.advance(Duration::from_secs(61));
    assert!(at(&cache, token).is_none());
}
