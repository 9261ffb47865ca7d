//! Signing compact JWS tokens with the development keys: ES256 with ring
//! (the crypto library under zt's TLS provider), and HS256 for the broken
//! tokens that negative tests need.

use std::fmt;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use serde_json::{Map, Value, json};

use crate::FakeCaError;

fn jwt_err(reason: impl Into<String>) -> FakeCaError {
    FakeCaError::Jwt {
        reason: reason.into(),
    }
}

/// An ES256 signing key. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Es256Key {
    pair: Arc<EcdsaKeyPair>,
}

impl fmt::Debug for Es256Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Es256Key").finish_non_exhaustive()
    }
}

impl Es256Key {
    /// Loads a P-256 key from its PKCS#8 DER encoding.
    pub(crate) fn from_pkcs8(der: &[u8]) -> Result<Self, FakeCaError> {
        let pair =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der, &SystemRandom::new())
                .map_err(|e| jwt_err(format!("not a P-256 PKCS#8 key: {e}")))?;
        Ok(Self {
            pair: Arc::new(pair),
        })
    }

    /// A compact JWS of `claims` with header `{"alg":"ES256","typ":typ,"kid":kid}`
    /// (`typ` left out when `None`).
    pub(crate) fn sign(
        &self,
        kid: &str,
        typ: Option<&str>,
        claims: &Value,
    ) -> Result<String, FakeCaError> {
        let header = header("ES256", typ, Some(kid));
        compact(&header, claims, |input| {
            self.pair
                .sign(&SystemRandom::new(), input)
                .map(|sig| sig.as_ref().to_vec())
                .map_err(|e| jwt_err(format!("ES256 signing failed: {e}")))
        })
    }
}

/// A JOSE header with `alg`, and `typ` and `kid` when given.
pub(crate) fn header(alg: &str, typ: Option<&str>, kid: Option<&str>) -> Map<String, Value> {
    let mut header = Map::new();
    if let Some(typ) = typ {
        header.insert("typ".into(), json!(typ));
    }
    header.insert("alg".into(), json!(alg));
    if let Some(kid) = kid {
        header.insert("kid".into(), json!(kid));
    }
    header
}

/// `base64url(header).base64url(claims).base64url(sign(signing input))`.
pub(crate) fn compact(
    header: &Map<String, Value>,
    claims: &Value,
    sign: impl FnOnce(&[u8]) -> Result<Vec<u8>, FakeCaError>,
) -> Result<String, FakeCaError> {
    let header = serde_json::to_vec(header).map_err(|e| jwt_err(e.to_string()))?;
    let claims = serde_json::to_vec(claims).map_err(|e| jwt_err(e.to_string()))?;
    let mut token = URL_SAFE_NO_PAD.encode(header);
    token.push('.');
    token.push_str(&URL_SAFE_NO_PAD.encode(claims));
    let signature = sign(token.as_bytes())?;
    token.push('.');
    token.push_str(&URL_SAFE_NO_PAD.encode(signature));
    Ok(token)
}

/// An HS256 token over `claims` keyed with `secret`: the shape of an
/// algorithm-confusion attack, for negative tests.
pub(crate) fn hs256(kid: &str, secret: &[u8], claims: &Value) -> Result<String, FakeCaError> {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    compact(&header("HS256", Some("JWT"), Some(kid)), claims, |input| {
        Ok(ring::hmac::sign(&key, input).as_ref().to_vec())
    })
}
