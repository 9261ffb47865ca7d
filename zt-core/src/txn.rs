//! Transaction Tokens (Txn-Tokens), as specified by the IETF OAuth working
//! group's draft-ietf-oauth-transaction-tokens, revision **-08** (2 March
//! 2026): its claim set with `scope` and a top-level `req_wl` that may name
//! a chain of requesting workloads, the `txntoken+jwt` type and the
//! `Txn-Token` HTTP header.
//!
//! A Txn-Token Service (TTS) issues a short-lived, signed token when an
//! external request enters the trust domain; the token travels with every
//! internal call made for that request and tells each workload who the
//! request is for and what it may do, immutably.
//!
//! | where | name | rule here |
//! |---|---|---|
//! | header | `typ` | required, exactly `txntoken+jwt` |
//! | header | `alg`, `kid` | an asymmetric algorithm; a key of the TTS's JWKS made for it |
//! | claim | `iss` | optional; a string when present; required and equal to the TTS's issuer when one is configured ([`TxnTokenValidator::with_issuer`]) |
//! | claim | `txn` | required: the transaction's unique ID (non-empty string, at most [`MAX_ID_LEN`] bytes) |
//! | claim | `sub` | required: the subject the transaction is for |
//! | claim | `iat` | required, not in the future (leeway allowed) |
//! | claim | `exp` | required, not in the past (leeway allowed) |
//! | claim | `aud` | required: must include the configured audience (the trust domain) |
//! | claim | `scope` | required: space-separated scope tokens |
//! | claim | `req_wl` | required: the requesting workload, a SPIFFE ID; or, in a replacement token, the workloads that requested it in turn, comma-separated, the latest last (at most [`MAX_REQUESTING_WORKLOADS`]) |
//! | claim | `tctx` | optional: the transaction context, a JSON object |
//! | claim | `rctx` | optional: the requester context, a JSON object |
//!
//! ## Changes from earlier revisions
//!
//! - -07 renamed the purpose claim `purp` to `scope` and moved `req_wl`
//!   out of `rctx` to a required top-level claim; zt reads only the -07/-08
//!   forms (a token with `purp` and no `scope` fails
//!   [`TxnTokenError::BadScope`]).
//! - -08 lets `req_wl` hold several workload identifiers separated by `,`:
//!   a TTS replacing a token appends the workload that asked for the
//!   replacement and removes none. zt reads the list in order; the last
//!   entry is the workload that requested *this* token
//!   ([`TxnToken::requesting_workload`]), the others its predecessors
//!   ([`TxnToken::requesting_workloads`]). The draft leaves the form of a
//!   workload identifier open; here each must be a SPIFFE ID.
//! - `iss` is optional in the draft, and must be used "where the signing
//!   keys are not predetermined". zt's keys are always predetermined (the
//!   JWKS the validator is built with), so `iss` is not required by
//!   default; a deployment whose TTS names itself configures the issuer,
//!   and then a token without it, or naming another, is refused.
//!
//! The draft's lifetime rule ("on the order of minutes or less") binds the
//! TTS; the validator enforces `exp` as issued and sets no cap of its own.
//!
//! # Binding at every hop
//!
//! zt binds a Txn-Token to the connection it arrives on as it binds user
//! contexts ([`crate::user`]): with
//! [`validate_for_caller`](TxnTokenValidator::validate_for_caller), the
//! requesting workload (the last entry of `req_wl`) must be the
//! authenticated caller (the mTLS peer or JWT-SVID subject). A token lifted
//! from one workload cannot be replayed by another. A workload that calls
//! the next one therefore asks the TTS for a replacement token, presenting
//! its own as the `subject_token` (the draft's "Txn-Token as a
//! `subject_token`": the `txn`, `sub` and `aud` are kept and the requester
//! is appended to `req_wl`), which the development TTS
//! (`zt_dev::DevUserIssuer`) does with `replace_txn_token`.
//!
//! This is stricter than the draft's validation section, which has each
//! workload forward the token it received unmodified. Where tokens are
//! forwarded unchanged, validate with [`validate`](TxnTokenValidator::validate)
//! (no binding) and authorize the hop by its own identity.
//!
//! Tokens are never logged: [`TxnToken`]'s `Debug` omits the token.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde_json::{Map, Value};

use crate::SpiffeId;
use crate::id::parse_canonical;
use crate::jwt::MAX_LEEWAY;
use crate::time::Timestamp;
use crate::user::{
    JwkSet, KeyedJwsError, MAX_ID_LEN, MAX_SCOPES, TrustedKey, is_scope_token, trusted_key,
    verify_keyed_jws,
};

/// The HTTP header a Txn-Token travels in.
pub const TXN_TOKEN_HEADER: &str = "txn-token";

/// The JOSE `typ` of a Txn-Token.
pub const TXN_TOKEN_TYPE: &str = "txntoken+jwt";

/// The most workloads a `req_wl` claim may name (each replacement appends
/// one); a longer chain is refused with
/// [`TxnTokenError::TooManyRequestingWorkloads`].
pub const MAX_REQUESTING_WORKLOADS: usize = 16;

/// Why a Txn-Token was rejected. One variant per rule.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum TxnTokenError {
    /// The token is not a well-formed compact JWS with JSON header and
    /// claims.
    #[error("the Txn-Token is malformed: {reason}")]
    Malformed {
        /// What was wrong.
        reason: String,
    },
    /// The `alg` header is not an allowed asymmetric algorithm.
    #[error("the Txn-Token's algorithm `{alg}` is not allowed")]
    UnsupportedAlgorithm {
        /// The `alg` header value.
        alg: String,
    },
    /// The `typ` header is missing or not `txntoken+jwt`.
    #[error("the Txn-Token's `typ` header is {typ}; it must be `txntoken+jwt`")]
    BadType {
        /// The `typ` value as JSON, or `none`.
        typ: String,
    },
    /// The header has no `kid`.
    #[error("the Txn-Token header has no `kid`")]
    MissingKeyId,
    /// The TTS's JWKS has no key with the token's `kid`.
    #[error("the Txn-Token Service's JWKS has no key with ID `{key_id}`")]
    UnknownKeyId {
        /// The token's `kid`.
        key_id: String,
    },
    /// The token's `alg` is not the algorithm of the key it names.
    #[error("the Txn-Token says `{alg}` but key `{key_id}` is for another algorithm")]
    AlgorithmMismatch {
        /// The token's `alg`.
        alg: String,
        /// The key.
        key_id: String,
    },
    /// The signature does not verify.
    #[error("the Txn-Token's signature is invalid ({reason})")]
    BadSignature {
        /// What the verifier reported.
        reason: String,
    },
    /// An issuer is configured and the token has no `iss` claim.
    #[error("the Txn-Token has no `iss` claim; it must be `{expected}`")]
    MissingIssuer {
        /// The configured issuer.
        expected: String,
    },
    /// An issuer is configured and the token's `iss` is another.
    #[error("the Txn-Token's issuer is {found}; it must be `{expected}`")]
    WrongIssuer {
        /// The configured issuer.
        expected: String,
        /// The `iss` claim, as JSON.
        found: String,
    },
    /// The `txn` claim is missing or not a valid transaction ID.
    #[error("the Txn-Token's `txn` is invalid: {reason}")]
    BadTransactionId {
        /// What was wrong.
        reason: String,
    },
    /// The token has no `sub` claim (or an empty one).
    #[error("the Txn-Token has no `sub` claim")]
    MissingSubject,
    /// The token has no `iat` claim.
    #[error("the Txn-Token has no `iat` claim")]
    MissingIssuedAt,
    /// The token's `iat` is in the future.
    #[error("the Txn-Token was issued at {issued_at}, in the future (now {now})")]
    IssuedInFuture {
        /// The `iat` claim.
        issued_at: Timestamp,
        /// The time used for the check.
        now: Timestamp,
    },
    /// The token has no `exp` claim.
    #[error("the Txn-Token has no `exp` claim")]
    MissingExpiry,
    /// The token has expired.
    #[error("the Txn-Token expired at {expired_at} (now {now})")]
    Expired {
        /// The `exp` claim.
        expired_at: Timestamp,
        /// The time used for the check.
        now: Timestamp,
    },
    /// The token has no `aud` claim.
    #[error("the Txn-Token has no `aud` claim")]
    MissingAudience,
    /// The token's audience does not include the expected one.
    #[error("the Txn-Token's audience {found:?} does not include `{expected}`")]
    WrongAudience {
        /// The audience required.
        expected: String,
        /// The audience found.
        found: Vec<String>,
    },
    /// The `scope` claim is missing or not a list of scope tokens.
    #[error("the Txn-Token's `scope` is invalid: {reason}")]
    BadScope {
        /// What was wrong.
        reason: String,
    },
    /// The `req_wl` claim is missing or not a SPIFFE ID.
    #[error("the Txn-Token's `req_wl` is invalid: {reason}")]
    BadRequestingWorkload {
        /// What was wrong.
        reason: String,
    },
    /// The `req_wl` claim names more workloads than
    /// [`MAX_REQUESTING_WORKLOADS`].
    #[error("the Txn-Token's `req_wl` names {count} workloads; at most {max} are accepted")]
    TooManyRequestingWorkloads {
        /// How many it names.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// The `tctx` claim is present but not a JSON object.
    #[error("the Txn-Token's `tctx` must be a JSON object")]
    BadTransactionContext,
    /// The `rctx` claim is present but not a JSON object.
    #[error("the Txn-Token's `rctx` must be a JSON object")]
    BadRequesterContext,
    /// The requesting workload is not the workload that sent the request.
    #[error(
        "the Txn-Token names `{requester}` as its requesting workload, but the request came \
         from `{caller}`; a workload calling onward must obtain a replacement Txn-Token"
    )]
    RequesterMismatch {
        /// The authenticated caller.
        caller: SpiffeId,
        /// The requesting workload: the last entry of `req_wl`.
        requester: SpiffeId,
    },
    /// A JWKS key cannot be used for validation.
    #[error("JWKS key {key_id:?} cannot be used: {reason}")]
    UnusableKey {
        /// The key's `kid`, if any.
        key_id: Option<String>,
        /// Why.
        reason: String,
    },
}

impl TxnTokenError {
    /// A short, stable name for logs and audit records, such as
    /// `txn-token:expired`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Malformed { .. } => "txn-token:malformed",
            Self::UnsupportedAlgorithm { .. } => "txn-token:unsupported-algorithm",
            Self::BadType { .. } => "txn-token:bad-typ",
            Self::MissingKeyId => "txn-token:missing-kid",
            Self::UnknownKeyId { .. } => "txn-token:unknown-kid",
            Self::AlgorithmMismatch { .. } => "txn-token:algorithm-mismatch",
            Self::BadSignature { .. } => "txn-token:bad-signature",
            Self::MissingIssuer { .. } => "txn-token:missing-iss",
            Self::WrongIssuer { .. } => "txn-token:wrong-iss",
            Self::BadTransactionId { .. } => "txn-token:bad-txn",
            Self::MissingSubject => "txn-token:missing-sub",
            Self::MissingIssuedAt => "txn-token:missing-iat",
            Self::IssuedInFuture { .. } => "txn-token:iat-in-future",
            Self::MissingExpiry => "txn-token:missing-exp",
            Self::Expired { .. } => "txn-token:expired",
            Self::MissingAudience => "txn-token:missing-aud",
            Self::WrongAudience { .. } => "txn-token:wrong-aud",
            Self::BadScope { .. } => "txn-token:bad-scope",
            Self::BadRequestingWorkload { .. } => "txn-token:bad-req-wl",
            Self::TooManyRequestingWorkloads { .. } => "txn-token:too-many-req-wl",
            Self::BadTransactionContext => "txn-token:bad-tctx",
            Self::BadRequesterContext => "txn-token:bad-rctx",
            Self::RequesterMismatch { .. } => "txn-token:requester-mismatch",
            Self::UnusableKey { .. } => "txn-token:unusable-key",
        }
    }
}

/// A verified Txn-Token. Cheap to clone; `Debug` omits the token.
#[derive(Clone, PartialEq)]
pub struct TxnToken {
    inner: Arc<TxnInner>,
}

#[derive(PartialEq)]
struct TxnInner {
    txn: String,
    subject: String,
    audience: Vec<String>,
    scopes: Box<[Box<str>]>,
    /// The last entry of `requesters`.
    requester: SpiffeId,
    /// Every entry of `req_wl`, in order.
    requesters: Box<[SpiffeId]>,
    issuer: Option<String>,
    transaction_context: Map<String, Value>,
    requester_context: Map<String, Value>,
    issued_at: SystemTime,
    expiry: SystemTime,
    token: String,
}

impl TxnToken {
    /// The transaction ID (`txn`).
    pub fn txn(&self) -> &str {
        &self.inner.txn
    }

    /// The subject (`sub`).
    pub fn subject(&self) -> &str {
        &self.inner.subject
    }

    /// The audience (`aud`).
    pub fn audience(&self) -> &[String] {
        &self.inner.audience
    }

    /// The scopes, sorted, without duplicates.
    pub fn scopes(&self) -> &[Box<str>] {
        &self.inner.scopes
    }

    /// `true` if the token carries `scope`.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.inner
            .scopes
            .binary_search_by(|s| (**s).cmp(scope))
            .is_ok()
    }

    /// The requesting workload: the last entry of `req_wl`, the workload
    /// the TTS issued this token to.
    pub fn requesting_workload(&self) -> &SpiffeId {
        &self.inner.requester
    }

    /// Every workload `req_wl` names, in order: the one the first token of
    /// the transaction was issued to first, the requesting workload last.
    /// One entry for a token that was never replaced.
    pub fn requesting_workloads(&self) -> &[SpiffeId] {
        &self.inner.requesters
    }

    /// The issuer (`iss`), if the token names one.
    pub fn issuer(&self) -> Option<&str> {
        self.inner.issuer.as_deref()
    }

    /// The transaction context (`tctx`); empty without one.
    pub fn transaction_context(&self) -> &Map<String, Value> {
        &self.inner.transaction_context
    }

    /// The requester context (`rctx`); empty without one.
    pub fn requester_context(&self) -> &Map<String, Value> {
        &self.inner.requester_context
    }

    /// When the token was issued (`iat`).
    pub fn issued_at(&self) -> SystemTime {
        self.inner.issued_at
    }

    /// When the token expires (`exp`).
    pub fn expiry(&self) -> SystemTime {
        self.inner.expiry
    }

    /// The token (a bearer credential: never log it).
    pub fn token(&self) -> &str {
        &self.inner.token
    }
}

impl fmt::Debug for TxnToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = &*self.inner;
        f.debug_struct("TxnToken")
            .field("txn", &inner.txn)
            .field("subject", &inner.subject)
            .field("scopes", &inner.scopes)
            .field("requesting_workload", &inner.requester.to_string())
            .field("expiry", &Timestamp(inner.expiry))
            .field("token", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// Validates Txn-Tokens of one Txn-Token Service, by its JWKS. Immutable,
/// cheap to clone; build a new one to follow a key rotation.
#[derive(Clone)]
pub struct TxnTokenValidator {
    inner: Arc<ValidatorInner>,
}

#[derive(Clone)]
struct ValidatorInner {
    audience: String,
    issuer: Option<String>,
    keys: HashMap<String, TrustedKey>,
    leeway: Duration,
}

impl fmt::Debug for TxnTokenValidator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut kids: Vec<&str> = self.inner.keys.keys().map(String::as_str).collect();
        kids.sort_unstable();
        f.debug_struct("TxnTokenValidator")
            .field("audience", &self.inner.audience)
            .field("issuer", &self.inner.issuer)
            .field("key_ids", &kids)
            .field("leeway", &self.inner.leeway)
            .finish()
    }
}

impl TxnTokenValidator {
    /// A validator for Txn-Tokens for `audience` (the trust domain, as the
    /// TTS names it) signed by a key of `jwks`. Every key must have a `kid`
    /// and be asymmetric; an RSA key must name its `alg`.
    ///
    /// # Errors
    ///
    /// [`TxnTokenError::UnusableKey`] for the first key that breaks these
    /// rules.
    pub fn new(audience: impl Into<String>, jwks: &JwkSet) -> Result<Self, TxnTokenError> {
        let mut keys = HashMap::with_capacity(jwks.keys.len());
        for jwk in &jwks.keys {
            let key_id = jwk.common.key_id.clone();
            let unusable = |reason: String| TxnTokenError::UnusableKey {
                key_id: key_id.clone(),
                reason,
            };
            let Some(kid) = key_id.clone().filter(|k| !k.is_empty()) else {
                return Err(unusable("the key has no `kid`".to_owned()));
            };
            keys.insert(kid, trusted_key(jwk).map_err(&unusable)?);
        }
        Ok(Self {
            inner: Arc::new(ValidatorInner {
                audience: audience.into(),
                issuer: None,
                keys,
                leeway: Duration::from_secs(30),
            }),
        })
    }

    /// Sets the clock leeway for `exp` and `iat` (default 30 s), capped at
    /// [`MAX_LEEWAY`].
    #[must_use]
    pub fn with_leeway(mut self, leeway: Duration) -> Self {
        Arc::make_mut(&mut self.inner).leeway = leeway.min(MAX_LEEWAY);
        self
    }

    /// Requires every token to name `issuer` (the TTS) in its `iss`
    /// claim. Without it, `iss` is optional and any string is accepted.
    #[must_use]
    pub fn with_issuer(mut self, issuer: impl Into<String>) -> Self {
        Arc::make_mut(&mut self.inner).issuer = Some(issuer.into());
        self
    }

    /// The audience tokens must carry.
    pub fn audience(&self) -> &str {
        &self.inner.audience
    }

    /// The issuer tokens must name, if one is configured.
    pub fn issuer(&self) -> Option<&str> {
        self.inner.issuer.as_deref()
    }

    /// Validates `token` at time `now`.
    ///
    /// # Errors
    ///
    /// The [`TxnTokenError`] of the first rule the token breaks, in the
    /// order of the table in the [module docs](self) (header, signature,
    /// then claims).
    pub fn validate(&self, token: &str, now: SystemTime) -> Result<TxnToken, TxnTokenError> {
        let inner = &*self.inner;
        let claims = verify_keyed_jws(token, &inner.keys, |header| match header.get("typ") {
            Some(Value::String(typ)) if typ == TXN_TOKEN_TYPE => Ok(()),
            Some(other) => Err(other.to_string()),
            None => Err("none".to_owned()),
        })?;

        let issuer = match claims.get("iss") {
            None => None,
            Some(Value::String(iss)) => Some(iss.clone()),
            Some(other) => match &inner.issuer {
                Some(expected) => {
                    return Err(TxnTokenError::WrongIssuer {
                        expected: expected.clone(),
                        found: other.to_string(),
                    });
                }
                None => return Err(malformed("`iss` must be a string")),
            },
        };
        if let Some(expected) = &inner.issuer {
            match &issuer {
                None => {
                    return Err(TxnTokenError::MissingIssuer {
                        expected: expected.clone(),
                    });
                }
                Some(found) if found != expected => {
                    return Err(TxnTokenError::WrongIssuer {
                        expected: expected.clone(),
                        found: Value::String(found.clone()).to_string(),
                    });
                }
                Some(_) => {}
            }
        }

        let txn = match claims.get("txn") {
            None => return Err(bad_txn("the token has no `txn`")),
            Some(Value::String(s)) if s.is_empty() => return Err(bad_txn("`txn` is empty")),
            Some(Value::String(s)) if s.len() > MAX_ID_LEN => {
                return Err(bad_txn(format!("`txn` is longer than {MAX_ID_LEN} bytes")));
            }
            Some(Value::String(s)) if s.chars().any(char::is_control) => {
                return Err(bad_txn("`txn` holds a control character"));
            }
            Some(Value::String(s)) => s.clone(),
            Some(_) => return Err(bad_txn("`txn` must be a string")),
        };
        let subject = claims
            .get("sub")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or(TxnTokenError::MissingSubject)?
            .to_owned();
        let issued_at = crate::jwt::numeric_date(&claims, "iat")
            .map_err(malformed)?
            .ok_or(TxnTokenError::MissingIssuedAt)?;
        if issued_at > now + inner.leeway {
            return Err(TxnTokenError::IssuedInFuture {
                issued_at: Timestamp(issued_at),
                now: Timestamp(now),
            });
        }
        let expiry = crate::jwt::numeric_date(&claims, "exp")
            .map_err(malformed)?
            .ok_or(TxnTokenError::MissingExpiry)?;
        if expiry
            .checked_add(inner.leeway)
            .is_some_and(|deadline| now > deadline)
        {
            return Err(TxnTokenError::Expired {
                expired_at: Timestamp(expiry),
                now: Timestamp(now),
            });
        }
        let audience = crate::jwt::audience_claim(&claims)
            .map_err(malformed)?
            .ok_or(TxnTokenError::MissingAudience)?;
        if !audience.contains(&inner.audience) {
            return Err(TxnTokenError::WrongAudience {
                expected: inner.audience.clone(),
                found: audience,
            });
        }
        let scopes = scopes_of(&claims)?;
        let requesters = requesters_of(&claims)?;
        let requester =
            requesters
                .last()
                .cloned()
                .ok_or_else(|| TxnTokenError::BadRequestingWorkload {
                    reason: "`req_wl` names no workload".to_owned(),
                })?;
        let transaction_context = match claims.get("tctx") {
            None => Map::new(),
            Some(Value::Object(map)) => map.clone(),
            Some(_) => return Err(TxnTokenError::BadTransactionContext),
        };
        let requester_context = match claims.get("rctx") {
            None => Map::new(),
            Some(Value::Object(map)) => map.clone(),
            Some(_) => return Err(TxnTokenError::BadRequesterContext),
        };
        Ok(TxnToken {
            inner: Arc::new(TxnInner {
                txn,
                subject,
                audience,
                scopes,
                requester,
                requesters,
                issuer,
                transaction_context,
                requester_context,
                issued_at,
                expiry,
                token: token.to_owned(),
            }),
        })
    }

    /// Validates `token` and checks binding: its requesting workload (the
    /// last entry of `req_wl`) must be `caller`, the workload that
    /// authenticated the request.
    ///
    /// # Errors
    ///
    /// Those of [`validate`](Self::validate), then
    /// [`TxnTokenError::RequesterMismatch`].
    pub fn validate_for_caller(
        &self,
        token: &str,
        now: SystemTime,
        caller: &SpiffeId,
    ) -> Result<TxnToken, TxnTokenError> {
        let verified = self.validate(token, now)?;
        if verified.requesting_workload() != caller {
            return Err(TxnTokenError::RequesterMismatch {
                caller: caller.clone(),
                requester: verified.requesting_workload().clone(),
            });
        }
        Ok(verified)
    }
}

fn malformed(reason: impl Into<String>) -> TxnTokenError {
    TxnTokenError::Malformed {
        reason: reason.into(),
    }
}

fn bad_txn(reason: impl Into<String>) -> TxnTokenError {
    TxnTokenError::BadTransactionId {
        reason: reason.into(),
    }
}

impl From<KeyedJwsError> for TxnTokenError {
    fn from(e: KeyedJwsError) -> Self {
        match e {
            KeyedJwsError::Malformed(reason) => Self::Malformed { reason },
            KeyedJwsError::UnsupportedAlgorithm(alg) => Self::UnsupportedAlgorithm { alg },
            KeyedJwsError::BadType(typ) => Self::BadType { typ },
            KeyedJwsError::MissingKeyId => Self::MissingKeyId,
            KeyedJwsError::UnknownKeyId(key_id) => Self::UnknownKeyId { key_id },
            KeyedJwsError::AlgorithmMismatch { alg, key_id } => {
                Self::AlgorithmMismatch { alg, key_id }
            }
            KeyedJwsError::BadSignature(reason) => Self::BadSignature { reason },
        }
    }
}

/// The `req_wl` chain: one SPIFFE ID, or several separated by `,`.
fn requesters_of(claims: &Map<String, Value>) -> Result<Box<[SpiffeId]>, TxnTokenError> {
    let bad = |reason: String| TxnTokenError::BadRequestingWorkload { reason };
    let text = match claims.get("req_wl") {
        Some(Value::String(s)) => s,
        Some(_) => return Err(bad("`req_wl` must be a string".to_owned())),
        None => return Err(bad("the token has no `req_wl`".to_owned())),
    };
    let count = text.split(',').count();
    if count > MAX_REQUESTING_WORKLOADS {
        return Err(TxnTokenError::TooManyRequestingWorkloads {
            count,
            max: MAX_REQUESTING_WORKLOADS,
        });
    }
    text.split(',')
        .enumerate()
        .map(|(i, entry)| {
            if entry.is_empty() {
                return Err(bad(format!(
                    "entry {} of `req_wl` is empty; entries are separated by a single `,`",
                    i + 1
                )));
            }
            parse_canonical(entry).map_err(|e| {
                bad(if count == 1 {
                    format!("not a SPIFFE ID: {e}")
                } else {
                    format!("entry {} is not a SPIFFE ID: {e}", i + 1)
                })
            })
        })
        .collect()
}

fn scopes_of(claims: &Map<String, Value>) -> Result<Box<[Box<str>]>, TxnTokenError> {
    let bad = |reason: &str| TxnTokenError::BadScope {
        reason: reason.to_owned(),
    };
    let text = match claims.get("scope") {
        None => return Err(bad("the token has no `scope`")),
        Some(Value::String(s)) => s,
        Some(_) => return Err(bad("`scope` must be a space-separated string")),
    };
    let mut scopes: Vec<Box<str>> = Vec::new();
    for scope in text.split(' ').filter(|s| !s.is_empty()) {
        if !is_scope_token(scope) {
            return Err(bad(
                "a scope holds a character outside the RFC 6749 scope-token set",
            ));
        }
        scopes.push(scope.into());
    }
    if scopes.len() > MAX_SCOPES {
        return Err(TxnTokenError::BadScope {
            reason: format!("more than {MAX_SCOPES} scopes"),
        });
    }
    scopes.sort_unstable();
    scopes.dedup();
    Ok(scopes.into_boxed_slice())
}
