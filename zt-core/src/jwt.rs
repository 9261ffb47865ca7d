//! JWT-SVIDs: tokens and their validation by the SPIFFE JWT-SVID rules.
//!
//! [`validate_jwt_svid`] checks, in order: the token is a compact JWS of
//! bounded size; `alg` is on the allow-list (ES256/384, RS256/384/512,
//! PS256/384/512; never `none` or HMAC); `typ`, if present, is `JWT` or
//! `JOSE`; `kid` is present; `sub` is a
//! canonical SPIFFE ID; the bundle set has a bundle for the subject's trust
//! domain holding a JWT authority with that `kid` (a bundle with no JWT
//! authority at all is reported as [`JwtError::NoJwtBundle`], one without
//! that key as [`JwtError::UnknownKeyId`]); the signature verifies
//! with that key; `exp` is present and not past (with bounded leeway); `nbf`,
//! if present, is not in the future; `aud` is present and contains the
//! expected audience.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};

use crate::SpiffeId;
use crate::bundle::BundleSet;
use crate::id::{IdError, parse_canonical};
use crate::jose::{CompactJws, JwsAlgorithm};
use crate::time::Timestamp;

pub mod cache;

pub use cache::JwtSvidCache;

/// Largest token accepted, in bytes.
pub const MAX_TOKEN_LEN: usize = 16 * 1024;

/// Largest clock leeway [`validate_jwt_svid`] accepts; larger values are
/// clamped to it.
pub const MAX_LEEWAY: Duration = Duration::from_secs(300);

/// Why a JWT-SVID was rejected. One variant per rule.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum JwtError {
    /// The token is not a well-formed compact JWS.
    #[error("the token is malformed: {reason}")]
    Malformed {
        /// What was wrong.
        reason: String,
    },
    /// The `alg` header is not on the allow-list.
    #[error(
        "the token's algorithm `{alg}` is not allowed; JWT-SVIDs are signed with ES256/384, RS256/384/512 or PS256/384/512"
    )]
    UnsupportedAlgorithm {
        /// The `alg` header value.
        alg: String,
    },
    /// The `typ` header is present but neither `JWT` nor `JOSE`, the only
    /// values the JWT-SVID specification allows.
    #[error(
        "the token's `typ` header is {typ}; a JWT-SVID's `typ`, when present, must be `JWT` or `JOSE`"
    )]
    BadType {
        /// The `typ` header value, as JSON.
        typ: String,
    },
    /// The header has no `kid`.
    #[error("the token header has no `kid`; a JWT-SVID names the key that signed it")]
    MissingKeyId,
    /// The token has no `sub` claim.
    #[error("the token has no `sub` claim")]
    MissingSubject,
    /// The `sub` claim is not a canonical SPIFFE ID.
    #[error("the token's `sub` is not a SPIFFE ID: {0}")]
    SubjectNotSpiffeId(#[source] IdError),
    /// No bundle is held for the subject's trust domain.
    #[error("no trust bundle for trust domain `{trust_domain}`; the token cannot be verified")]
    UnknownTrustDomain {
        /// The subject's trust domain.
        trust_domain: String,
    },
    /// The subject's trust domain has a bundle, but no JWT authority in it
    /// has been received (the JWT bundle stream is off, or has not
    /// delivered it), so no JWT-SVID of that trust domain can be verified.
    #[error(
        "no JWT bundle for trust domain `{trust_domain}` has been received, so the token (key ID `{key_id}`) cannot be verified; check that the source follows JWT bundles"
    )]
    NoJwtBundle {
        /// The token's `kid`.
        key_id: String,
        /// The subject's trust domain.
        trust_domain: String,
    },
    /// The subject's bundle has no authority with the token's `kid`.
    #[error("no JWT authority with key ID `{key_id}` in the bundle of `{trust_domain}`")]
    UnknownKeyId {
        /// The token's `kid`.
        key_id: String,
        /// The subject's trust domain.
        trust_domain: String,
    },
    /// The signature does not verify with the authority's key.
    #[error("the token's signature is invalid ({reason})")]
    BadSignature {
        /// What the verifier reported.
        reason: String,
    },
    /// The token has no `exp` claim.
    #[error("the token has no `exp` claim; JWT-SVIDs must expire")]
    MissingExpiry,
    /// The token has expired.
    #[error("the token expired at {expired_at} (now {now})")]
    Expired {
        /// The `exp` claim.
        expired_at: Timestamp,
        /// The time used for the check.
        now: Timestamp,
    },
    /// The token's `nbf` is in the future.
    #[error("the token is not valid before {not_before} (now {now})")]
    NotYetValid {
        /// The `nbf` claim.
        not_before: Timestamp,
        /// The time used for the check.
        now: Timestamp,
    },
    /// The token has no `aud` claim.
    #[error("the token has no `aud` claim")]
    MissingAudience,
    /// The token's audience does not include the expected one.
    #[error("the token's audience {found:?} does not include `{expected}`")]
    WrongAudience {
        /// The audience required.
        expected: String,
        /// The audience found.
        found: Vec<String>,
    },
}

/// The claims of a validated JWT-SVID.
#[derive(Clone, PartialEq)]
pub struct JwtSvidClaims {
    subject: SpiffeId,
    audience: Vec<String>,
    expiry: SystemTime,
    key_id: String,
    claims: Map<String, Value>,
}

impl JwtSvidClaims {
    /// The subject's SPIFFE ID.
    pub fn subject(&self) -> &SpiffeId {
        &self.subject
    }

    /// The `aud` claim.
    pub fn audience(&self) -> &[String] {
        &self.audience
    }

    /// The `exp` claim.
    pub fn expiry(&self) -> SystemTime {
        self.expiry
    }

    /// The `kid` of the key that signed the token.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// All claims as JSON.
    pub fn claims(&self) -> &Map<String, Value> {
        &self.claims
    }
}

impl fmt::Debug for JwtSvidClaims {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtSvidClaims")
            .field("subject", &self.subject.to_string())
            .field("audience", &self.audience)
            .field("expiry", &Timestamp(self.expiry))
            .finish_non_exhaustive()
    }
}

/// A JWT-SVID token held by a workload, with the fields it needs to decide
/// when to refresh it. The token text is never printed by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct JwtSvid {
    token: String,
    subject: SpiffeId,
    audience: Vec<String>,
    expiry: SystemTime,
}

impl JwtSvid {
    /// Reads the subject, audience and expiry of a token *without verifying
    /// it*; for tokens received from a trusted Workload API.
    ///
    /// # Errors
    ///
    /// [`JwtError::Malformed`], [`JwtError::MissingSubject`],
    /// [`JwtError::SubjectNotSpiffeId`], [`JwtError::MissingExpiry`],
    /// [`JwtError::MissingAudience`].
    pub fn from_trusted_token(token: impl Into<String>) -> Result<Self, JwtError> {
        let token = token.into();
        let (_, (_, claims)) = split_token(&token)?;
        let subject = subject_of(&claims)?;
        let expiry = time_claim(&claims, "exp")?.ok_or(JwtError::MissingExpiry)?;
        let audience = audience_of(&claims)?;
        Ok(Self {
            token,
            subject,
            audience,
            expiry,
        })
    }

    /// The compact JWS text.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The subject's SPIFFE ID.
    pub fn subject(&self) -> &SpiffeId {
        &self.subject
    }

    /// The `aud` claim.
    pub fn audience(&self) -> &[String] {
        &self.audience
    }

    /// The `exp` claim.
    pub fn expiry(&self) -> SystemTime {
        self.expiry
    }
}

impl fmt::Debug for JwtSvid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtSvid")
            .field("subject", &self.subject.to_string())
            .field("audience", &self.audience)
            .field("expiry", &Timestamp(self.expiry))
            .finish_non_exhaustive()
    }
}

fn malformed(reason: impl Into<String>) -> JwtError {
    JwtError::Malformed {
        reason: reason.into(),
    }
}

fn decode_json_segment(segment: &str, what: &str) -> Result<Map<String, Value>, JwtError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| malformed(format!("the {what} is not base64url")))?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(malformed(format!("the {what} is not a JSON object"))),
    }
}

/// Splits a compact JWS and decodes its header and claims (no verification).
/// A decoded JOSE header and claims set.
type Decoded = (Map<String, Value>, Map<String, Value>);

fn split_token(token: &str) -> Result<(CompactJws<'_>, Decoded), JwtError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(malformed(format!(
            "the token is {} bytes; at most {MAX_TOKEN_LEN} are accepted",
            token.len()
        )));
    }
    let jws = CompactJws::split(token)
        .map_err(|_| malformed("a compact JWS has three dot-separated parts"))?;
    let decoded = (
        decode_json_segment(jws.header(), "header")?,
        decode_json_segment(jws.payload(), "payload")?,
    );
    Ok((jws, decoded))
}

fn subject_of(claims: &Map<String, Value>) -> Result<SpiffeId, JwtError> {
    let sub = claims
        .get("sub")
        .and_then(Value::as_str)
        .ok_or(JwtError::MissingSubject)?;
    parse_canonical(sub).map_err(JwtError::SubjectNotSpiffeId)
}

fn time_claim(claims: &Map<String, Value>, name: &str) -> Result<Option<SystemTime>, JwtError> {
    numeric_date(claims, name).map_err(malformed)
}

fn audience_of(claims: &Map<String, Value>) -> Result<Vec<String>, JwtError> {
    audience_claim(claims)
        .map_err(malformed)?
        .ok_or(JwtError::MissingAudience)
}

/// Reads the NumericDate claim `name` (RFC 7519 §2); `Err` says what is
/// wrong with it. Shared by JWT-SVIDs and user-context tokens.
pub(crate) fn numeric_date(
    claims: &Map<String, Value>,
    name: &str,
) -> Result<Option<SystemTime>, String> {
    let Some(v) = claims.get(name) else {
        return Ok(None);
    };
    let secs = v
        .as_u64()
        .or_else(|| v.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
        .ok_or_else(|| format!("`{name}` is not a NumericDate"))?;
    UNIX_EPOCH
        .checked_add(Duration::from_secs(secs))
        .map(Some)
        .ok_or_else(|| format!("`{name}` is out of range"))
}

/// Reads the `aud` claim: a string or a non-empty array of strings;
/// `Ok(None)` when it is missing or empty.
pub(crate) fn audience_claim(claims: &Map<String, Value>) -> Result<Option<Vec<String>>, String> {
    const BAD: &str = "`aud` must be a string or an array of strings";
    match claims.get("aud") {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(vec![s.clone()])),
        Some(Value::Array(items)) if items.is_empty() => Ok(None),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_owned).ok_or_else(|| BAD.to_owned()))
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(_) => Err(BAD.to_owned()),
    }
}

/// The algorithms of the JWT-SVID specification's list that zt verifies.
/// The list also names ES512, which zt refuses: ring, the crypto library
/// under zt's TLS provider, has no P-521 (SPIRE signs with P-256 unless
/// configured otherwise).
fn allowed_algorithm(alg: &str) -> Option<JwsAlgorithm> {
    JwsAlgorithm::from_name(alg).filter(|a| *a != JwsAlgorithm::EdDsa)
}

/// Validates a JWT-SVID for `audience` at time `now`.
///
/// `leeway` widens the `exp` and `nbf` checks for clock skew and is capped
/// at [`MAX_LEEWAY`].
///
/// # Errors
///
/// The [`JwtError`] for the first rule the token breaks (see the module
/// documentation for the order).
pub fn validate_jwt_svid(
    token: &str,
    bundles: &BundleSet,
    audience: &str,
    now: SystemTime,
    leeway: Duration,
) -> Result<JwtSvidClaims, JwtError> {
    let (jws, (header, claims)) = split_token(token)?;
    let alg_name = header
        .get("alg")
        .and_then(Value::as_str)
        .ok_or_else(|| malformed("the header has no `alg`"))?;
    let alg = allowed_algorithm(alg_name).ok_or_else(|| JwtError::UnsupportedAlgorithm {
        alg: alg_name.to_owned(),
    })?;
    check_type(&header, &["JWT", "JOSE"]).map_err(|typ| JwtError::BadType { typ })?;
    let key_id = header
        .get("kid")
        .and_then(Value::as_str)
        .filter(|k| !k.is_empty())
        .ok_or(JwtError::MissingKeyId)?
        .to_owned();
    let subject = subject_of(&claims)?;
    let td = subject.trust_domain();
    let bundle = bundles
        .get(td)
        .ok_or_else(|| JwtError::UnknownTrustDomain {
            trust_domain: td.to_string(),
        })?;
    if bundle.jwt_authorities().next().is_none() {
        return Err(JwtError::NoJwtBundle {
            key_id,
            trust_domain: td.to_string(),
        });
    }
    let authority = bundle
        .jwt_authority(&key_id)
        .ok_or_else(|| JwtError::UnknownKeyId {
            key_id: key_id.clone(),
            trust_domain: td.to_string(),
        })?;

    // Signature only: time and audience are checked below with the injected clock.
    jws.verify(authority.public_key(), alg)
        .map_err(|e| JwtError::BadSignature {
            reason: e.to_string(),
        })?;

    let leeway = leeway.min(MAX_LEEWAY);
    let expiry = time_claim(&claims, "exp")?.ok_or(JwtError::MissingExpiry)?;
    // An expiry too far out to add leeway to has not passed.
    if expiry
        .checked_add(leeway)
        .is_some_and(|deadline| now > deadline)
    {
        return Err(JwtError::Expired {
            expired_at: Timestamp(expiry),
            now: Timestamp(now),
        });
    }
    if let Some(nbf) = time_claim(&claims, "nbf")?
        && now + leeway < nbf
    {
        return Err(JwtError::NotYetValid {
            not_before: Timestamp(nbf),
            now: Timestamp(now),
        });
    }
    let found = audience_of(&claims)?;
    if !found.iter().any(|a| a == audience) {
        return Err(JwtError::WrongAudience {
            expected: audience.to_owned(),
            found,
        });
    }
    Ok(JwtSvidClaims {
        subject,
        audience: found,
        expiry,
        key_id,
        claims,
    })
}

/// Checks the JOSE `typ` header against the values a token profile allows.
/// An absent `typ` passes; a present one must be a string equal to one of
/// `allowed`, exactly (the JWT-SVID specification names `JWT` and `JOSE`,
/// and go-spiffe compares them case-sensitively too).
///
/// # Errors
///
/// The `typ` value, rendered as JSON, when it is not a string or not one
/// of `allowed`.
pub fn check_type(header: &Map<String, Value>, allowed: &[&str]) -> Result<(), String> {
    match header.get("typ") {
        None => Ok(()),
        Some(Value::String(typ)) if allowed.contains(&typ.as_str()) => Ok(()),
        Some(other) => Err(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Map, Value, json};

    use super::check_type;

    fn header(typ: Option<Value>) -> Map<String, Value> {
        let mut header = Map::new();
        header.insert("alg".into(), json!("ES256"));
        if let Some(typ) = typ {
            header.insert("typ".into(), typ);
        }
        header
    }

    #[test]
    fn typ_is_optional_and_otherwise_one_of_the_allowed_values_exactly() {
        let allowed = ["JWT", "JOSE"];
        assert_eq!(check_type(&header(None), &allowed), Ok(()));
        assert_eq!(check_type(&header(Some(json!("JWT"))), &allowed), Ok(()));
        assert_eq!(check_type(&header(Some(json!("JOSE"))), &allowed), Ok(()));
        assert_eq!(
            check_type(&header(Some(json!("jose"))), &allowed),
            Err("\"jose\"".to_owned())
        );
        assert_eq!(
            check_type(&header(Some(json!("at+jwt"))), &allowed),
            Err("\"at+jwt\"".to_owned())
        );
        assert_eq!(
            check_type(&header(Some(json!(1))), &allowed),
            Err("1".to_owned())
        );
    }
}
