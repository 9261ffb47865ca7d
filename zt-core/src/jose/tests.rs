#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code"
)]

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, RsaKeyPair};
use serde_json::{Map, Value, json};

use super::{CompactJws, JoseError, JwsAlgorithm, PublicKey};

const MESSAGE: &[u8] = b"eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJzcGlmZmU6Ly9leGFtcGxlLm9yZy9iIn0";

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn map(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => panic!("not an object"),
    }
}

fn ec_key(
    alg: &'static signature::EcdsaSigningAlgorithm,
    crv: &str,
) -> (EcdsaKeyPair, Map<String, Value>) {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
    let pair = EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).unwrap();
    let point = pair.public_key().as_ref();
    let len = (point.len() - 1) / 2;
    let jwk = map(json!({
        "kty": "EC",
        "crv": crv,
        "x": b64(&point[1..=len]),
        "y": b64(&point[1 + len..]),
    }));
    (pair, jwk)
}

#[test]
fn es256_signature_verifies_and_a_changed_message_does_not() {
    let (pair, jwk) = ec_key(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, "P-256");
    let key = PublicKey::from_jwk(&jwk).unwrap();
    let sig = pair.sign(&SystemRandom::new(), MESSAGE).unwrap();
    assert_eq!(
        key.verify(JwsAlgorithm::Es256, MESSAGE, sig.as_ref()),
        Ok(())
    );
    assert_eq!(
        key.verify(JwsAlgorithm::Es256, b"another message", sig.as_ref()),
        Err(JoseError::BadSignature)
    );
    assert_eq!(key.implied_algorithm(), Some(JwsAlgorithm::Es256));
}

#[test]
fn es384_signature_verifies() {
    let (pair, jwk) = ec_key(&signature::ECDSA_P384_SHA384_FIXED_SIGNING, "P-384");
    let key = PublicKey::from_jwk(&jwk).unwrap();
    let sig = pair.sign(&SystemRandom::new(), MESSAGE).unwrap();
    assert_eq!(
        key.verify(JwsAlgorithm::Es384, MESSAGE, sig.as_ref()),
        Ok(())
    );
}

#[test]
fn ed25519_signature_verifies() {
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
    let jwk = map(json!({"kty": "OKP", "crv": "Ed25519", "x": b64(pair.public_key().as_ref())}));
    let key = PublicKey::from_jwk(&jwk).unwrap();
    let sig = pair.sign(MESSAGE);
    assert_eq!(
        key.verify(JwsAlgorithm::EdDsa, MESSAGE, sig.as_ref()),
        Ok(())
    );
}

/// A 2048-bit RSA key made by openssl (ring cannot generate RSA keys); the
/// PEM output is PKCS#8 on every openssl version (3.0 writes a bare
/// RSAPrivateKey from `genpkey -outform DER`).
fn rsa_key() -> RsaKeyPair {
    let out = std::process::Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
        ])
        .output()
        .expect("openssl is needed to make an RSA test key");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pem = String::from_utf8(out.stdout).unwrap();
    let der = pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect::<String>();
    let der = base64::engine::general_purpose::STANDARD
        .decode(der)
        .unwrap();
    RsaKeyPair::from_pkcs8(&der).unwrap()
}

#[test]
fn rsa_pkcs1_and_pss_signatures_verify_with_the_padding_they_were_made_with() {
    let pair = rsa_key();
    let public: ring::rsa::PublicKeyComponents<Vec<u8>> = pair.public().into();
    let mut n = public.n.clone();
    // A leading zero byte in `n` (as some encoders write it) is accepted.
    n.insert(0, 0);
    let jwk = map(json!({
        "kty": "RSA",
        "n": b64(&n),
        "e": b64(&public.e),
    }));
    let key = PublicKey::from_jwk(&jwk).unwrap();
    assert_eq!(key.implied_algorithm(), None);
    let rng = SystemRandom::new();
    let mut sig = vec![0; pair.public().modulus_len()];
    pair.sign(&signature::RSA_PKCS1_SHA256, &rng, MESSAGE, &mut sig)
        .unwrap();
    assert_eq!(key.verify(JwsAlgorithm::Rs256, MESSAGE, &sig), Ok(()));
    assert_eq!(
        key.verify(JwsAlgorithm::Ps256, MESSAGE, &sig),
        Err(JoseError::BadSignature)
    );
    pair.sign(&signature::RSA_PSS_SHA256, &rng, MESSAGE, &mut sig)
        .unwrap();
    assert_eq!(key.verify(JwsAlgorithm::Ps256, MESSAGE, &sig), Ok(()));
}

#[test]
fn a_key_is_only_used_with_an_algorithm_of_its_own_type() {
    let (pair, jwk) = ec_key(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, "P-256");
    let key = PublicKey::from_jwk(&jwk).unwrap();
    let sig = pair.sign(&SystemRandom::new(), MESSAGE).unwrap();
    for alg in [
        JwsAlgorithm::Es384,
        JwsAlgorithm::Rs256,
        JwsAlgorithm::EdDsa,
    ] {
        assert_eq!(
            key.verify(alg, MESSAGE, sig.as_ref()),
            Err(JoseError::AlgorithmMismatch {
                alg,
                key: "EC P-256"
            })
        );
        assert!(!key.fits(alg));
    }
}

#[test]
fn symmetric_private_and_malformed_keys_are_refused_with_the_reason() {
    let (_, good) = ec_key(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, "P-256");
    let refused = |jwk: Map<String, Value>| match PublicKey::from_jwk(&jwk) {
        Err(JoseError::UnusableKey { reason }) => reason,
        other => panic!("expected UnusableKey, got {other:?}"),
    };
    assert!(refused(map(json!({"kty": "oct", "k": "c2VjcmV0"}))).contains("private member `k`"));
    assert!(refused(map(json!({"kty": "oct"}))).contains("symmetric"));
    let mut with_d = good.clone();
    with_d.insert("d".into(), json!("AAAA"));
    assert!(refused(with_d).contains("private member `d`"));
    let mut secp256k1 = good.clone();
    secp256k1.insert("crv".into(), json!("secp256k1"));
    assert!(refused(secp256k1).contains("unsupported elliptic curve"));
    let mut short = good.clone();
    short.insert("x".into(), json!(b64(&[1; 31])));
    assert!(refused(short).contains("31 bytes"));
    let mut not_b64 = good;
    not_b64.insert("y".into(), json!("not base64!"));
    assert!(refused(not_b64).contains("not base64url"));
    assert!(refused(map(json!({"crv": "P-256"}))).contains("`kty`"));
    assert!(refused(map(json!({"kty": "RSA", "n": "", "e": "AQAB"}))).contains("zero"));
}

#[test]
fn compact_jws_needs_exactly_three_parts() {
    assert!(CompactJws::split("a.b.c").is_ok());
    for bad in ["a.b", "a.b.c.d", "abc", ""] {
        assert!(
            matches!(CompactJws::split(bad), Err(JoseError::Malformed { .. })),
            "{bad:?}"
        );
    }
    let jws = CompactJws::split("h.p.s").unwrap();
    assert_eq!((jws.header(), jws.payload()), ("h", "p"));
}

#[test]
fn algorithm_names_round_trip_and_none_and_hmac_are_unknown() {
    for name in [
        "ES256", "ES384", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "EdDSA",
    ] {
        assert_eq!(JwsAlgorithm::from_name(name).unwrap().name(), name);
    }
    for name in ["none", "HS256", "HS384", "HS512", "ES512", "es256"] {
        assert_eq!(JwsAlgorithm::from_name(name), None, "{name}");
    }
}
