//! Delegated user context: who the end user is, which scopes the request
//! carries for them, and which services it passed through.
//!
//! A caller acting for a user forwards a **user-context token** in its own
//! header ([`USER_CONTEXT_HEADER`]), next to its own identity (mTLS and,
//! optionally, a JWT-SVID). The token is a JWT signed by an issuer the
//! service trusts, identified by its JWKS, in the spirit of the IETF
//! Transaction Tokens draft. It carries only what a hop needs:
//!
//! | claim | meaning |
//! |---|---|
//! | `iss` | the issuer; must equal the configured one |
//! | `aud` | must contain the configured audience (for example the trust domain) |
//! | `sub` | the end user |
//! | `scope` | space-separated scopes (RFC 8693 §4.2) |
//! | `exp`, `nbf` | validity, checked with bounded leeway; `exp` is required |
//! | `act` | the actor chain (RFC 8693 §4.1): `{"sub": <SPIFFE ID of the current actor>, "act": {…previous actor…}}` |
//! | `jti` | optional token ID (RFC 7519 §4.1.7), which [`Revocations::revoke_token_id`](crate::revocation::Revocations::revoke_token_id) revokes |
//! | `task_id` | optional: the task the token was issued for (see [`crate::task`]); a token with a task ID must carry a `jti` |
//!
//! The JOSE `typ` header, when present, must be [`USER_CONTEXT_TYPES`]:
//! `JWT`, or the JWT access-token type of RFC 9068 (`at+jwt`). Other typed
//! tokens, such as Transaction Tokens (`txntoken+jwt`) or DPoP proofs, are
//! refused, so a token minted for one purpose cannot be replayed as a user
//! context (RFC 8725 §3.11).
//!
//! # Trust model
//!
//! The whole token, `act` chain included, is signed by the issuer: a hop
//! cannot add itself, drop a previous hop or widen the scopes without the
//! issuer. A service that forwards the context **exchanges** the token it
//! received for one naming itself as the current actor
//! ([`ActorExchange`], RFC 8693 token exchange); the issuer may narrow the
//! scopes but never widens them. The receiving service then checks
//! **actor binding**: the current actor (outermost `act.sub`) must be the
//! workload that authenticated the request (its mTLS peer or JWT-SVID
//! subject), see [`UserContextValidator::validate_for_caller`]. So a
//! token lifted from one service cannot be replayed by another.
//!
//! The earlier entries of the chain are exactly as trustworthy as the
//! issuer's checks at each exchange: a production issuer (a token-exchange
//! service) must authenticate the workload asking for an exchange and
//! require it to be the token's audience or current actor. The development
//! issuer (`zt_dev::DevUserIssuer`) performs no such check; it is
//! for tests and laptops.
//!
//! Tokens are never logged: [`UserContext`]'s `Debug` shows the subject,
//! scopes and chain but not the token, and error messages never quote it.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::Jwk;
use serde_json::{Map, Value};

pub use jsonwebtoken::jwk::JwkSet;

use crate::SpiffeId;
use crate::id::parse_canonical;
use crate::jose::{CompactJws, JoseError, JwsAlgorithm, PublicKey};
use crate::jwt::{MAX_LEEWAY, MAX_TOKEN_LEN};
use crate::source::BoxFuture;
use crate::time::Timestamp;

/// The header a user-context token travels in.
pub const USER_CONTEXT_HEADER: &str = "zt-user-context";

/// The longest `act` chain accepted.
pub const MAX_ACT_DEPTH: usize = 16;

/// The most scopes a token may carry.
pub const MAX_SCOPES: usize = 64;

/// The longest `jti` or `task_id` accepted, in bytes.
pub const MAX_ID_LEN: usize = 256;

/// The `typ` header values a user-context token may carry (when it has
/// one): `JWT`, and RFC 9068's JWT access-token type in its short and full
/// forms.
pub const USER_CONTEXT_TYPES: &[&str] = &["JWT", "at+jwt", "application/at+jwt"];

/// Why a user-context token was rejected. One variant per rule.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum UserContextError {
    /// The token is not a well-formed compact JWS.
    #[error("the user-context token is malformed: {reason}")]
    Malformed {
        /// What was wrong.
        reason: String,
    },
    /// The `alg` header is not an asymmetric algorithm.
    #[error(
        "the user-context token's algorithm `{alg}` is not allowed; use ES256/384, RS256/384/512, PS256/384/512 or EdDSA"
    )]
    UnsupportedAlgorithm {
        /// The `alg` header value.
        alg: String,
    },
    /// The `typ` header is present but not one of [`USER_CONTEXT_TYPES`].
    #[error(
        "the user-context token's `typ` header is {typ}; a user context is typed `JWT` or `at+jwt` (or has no `typ`)"
    )]
    BadType {
        /// The `typ` header value, as JSON.
        typ: String,
    },
    /// The header has no `kid`.
    #[error("the user-context token header has no `kid`")]
    MissingKeyId,
    /// The issuer's JWKS has no usable key with the token's `kid`.
    #[error("the trusted JWKS has no key with ID `{key_id}`")]
    UnknownKeyId {
        /// The token's `kid`.
        key_id: String,
    },
    /// The token's `alg` is not the algorithm of the key it names.
    #[error("the token says `{alg}` but key `{key_id}` is for another algorithm")]
    AlgorithmMismatch {
        /// The token's `alg`.
        alg: String,
        /// The key.
        key_id: String,
    },
    /// The signature does not verify.
    #[error("the user-context token's signature is invalid ({reason})")]
    BadSignature {
        /// What the verifier reported.
        reason: String,
    },
    /// The `iss` claim is missing or not the trusted issuer.
    #[error("the user-context token's issuer {found:?} is not the trusted issuer `{expected}`")]
    WrongIssuer {
        /// The trusted issuer.
        expected: String,
        /// The `iss` claim, if any.
        found: Option<String>,
    },
    /// The token has no `sub` claim.
    #[error("the user-context token has no `sub` claim")]
    MissingSubject,
    /// The token has no `exp` claim.
    #[error("the user-context token has no `exp` claim; user contexts must expire")]
    MissingExpiry,
    /// The token has expired.
    #[error("the user-context token expired at {expired_at} (now {now})")]
    Expired {
        /// The `exp` claim.
        expired_at: Timestamp,
        /// The time used for the check.
        now: Timestamp,
    },
    /// The token's `nbf` is in the future.
    #[error("the user-context token is not valid before {not_before} (now {now})")]
    NotYetValid {
        /// The `nbf` claim.
        not_before: Timestamp,
        /// The time used for the check.
        now: Timestamp,
    },
    /// The token has no `aud` claim.
    #[error("the user-context token has no `aud` claim")]
    MissingAudience,
    /// The token's audience does not include the expected one.
    #[error("the user-context token's audience {found:?} does not include `{expected}`")]
    WrongAudience {
        /// The audience required.
        expected: String,
        /// The audience found.
        found: Vec<String>,
    },
    /// The `scope` claim is not a space-separated list of scope tokens.
    #[error("the user-context token's `scope` is invalid: {reason}")]
    BadScope {
        /// What was wrong.
        reason: String,
    },
    /// An `act` entry is not an object with a SPIFFE ID `sub`.
    #[error("the user-context token's `act` chain is invalid: {reason}")]
    BadActor {
        /// What was wrong.
        reason: String,
    },
    /// The `act` chain is longer than [`MAX_ACT_DEPTH`].
    #[error("the user-context token's `act` chain is deeper than {MAX_ACT_DEPTH} entries")]
    ActChainTooLong,
    /// The current actor is not the workload that sent the request.
    #[error(
        "the user context names {} as its current actor, but the request came from `{caller}`; \
         a service forwarding a user context must exchange it for one that names itself",
        match .actor { Some(a) => format!("`{a}`"), None => "no actor".to_owned() }
    )]
    ActorMismatch {
        /// The authenticated caller.
        caller: SpiffeId,
        /// The current actor the token names, if any.
        actor: Option<SpiffeId>,
    },
    /// The `jti` claim is present but not a non-empty string of at most
    /// [`MAX_ID_LEN`] bytes, or missing from a token with a `task_id`.
    #[error("the user-context token's `jti` is invalid: {reason}")]
    BadTokenId {
        /// What was wrong.
        reason: String,
    },
    /// The `task_id` claim is present but not a non-empty string of at most
    /// [`MAX_ID_LEN`] bytes.
    #[error("the user-context token's `task_id` is invalid: {reason}")]
    BadTaskId {
        /// What was wrong.
        reason: String,
    },
    /// The token's ID is on the revocation list (its task completed).
    #[error("the user-context token `{token_id}` is revoked")]
    Revoked {
        /// The `jti` claim.
        token_id: String,
        /// The `task_id` claim, if any.
        task_id: Option<String>,
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

impl UserContextError {
    /// A short, stable name for logs and audit records, such as
    /// `user-context:expired`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Malformed { .. } => "user-context:malformed",
            Self::UnsupportedAlgorithm { .. } => "user-context:unsupported-algorithm",
            Self::BadType { .. } => "user-context:bad-typ",
            Self::MissingKeyId => "user-context:missing-kid",
            Self::UnknownKeyId { .. } => "user-context:unknown-kid",
            Self::AlgorithmMismatch { .. } => "user-context:algorithm-mismatch",
            Self::BadSignature { .. } => "user-context:bad-signature",
            Self::WrongIssuer { .. } => "user-context:wrong-issuer",
            Self::MissingSubject => "user-context:missing-sub",
            Self::MissingExpiry => "user-context:missing-exp",
            Self::Expired { .. } => "user-context:expired",
            Self::NotYetValid { .. } => "user-context:not-yet-valid",
            Self::MissingAudience => "user-context:missing-aud",
            Self::WrongAudience { .. } => "user-context:wrong-aud",
            Self::BadScope { .. } => "user-context:bad-scope",
            Self::BadActor { .. } => "user-context:bad-act",
            Self::ActChainTooLong => "user-context:act-too-long",
            Self::ActorMismatch { .. } => "user-context:actor-mismatch",
            Self::UnusableKey { .. } => "user-context:unusable-key",
            Self::BadTokenId { .. } => "user-context:bad-jti",
            Self::BadTaskId { .. } => "user-context:bad-task-id",
            Self::Revoked { .. } => "user-context:revoked",
        }
    }
}

/// A verified user context. Cheap to clone.
///
/// `Debug` shows the subject, scopes, actor chain, issuer and expiry, never
/// the token.
#[derive(Clone, PartialEq, Eq)]
pub struct UserContext {
    inner: Arc<Inner>,
}

#[derive(PartialEq, Eq)]
struct Inner {
    subject: String,
    scopes: Box<[Box<str>]>,
    actors: Box<[SpiffeId]>,
    issuer: String,
    expiry: SystemTime,
    token_id: Option<Box<str>>,
    task_id: Option<Box<str>>,
    token: String,
}

impl UserContext {
    /// The end user (`sub`).
    pub fn subject(&self) -> &str {
        &self.inner.subject
    }

    /// The scopes, sorted, without duplicates.
    pub fn scopes(&self) -> &[Box<str>] {
        &self.inner.scopes
    }

    /// `true` if the context carries `scope`.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.inner
            .scopes
            .binary_search_by(|s| (**s).cmp(scope))
            .is_ok()
    }

    /// The services the request passed through, in the order it passed
    /// them: the first is the first service that acted for the user, the
    /// last is the current actor. Empty when no service has acted yet.
    pub fn actors(&self) -> &[SpiffeId] {
        &self.inner.actors
    }

    /// The current actor (outermost `act.sub`), if any.
    pub fn current_actor(&self) -> Option<&SpiffeId> {
        self.inner.actors.last()
    }

    /// The issuer (`iss`).
    pub fn issuer(&self) -> &str {
        &self.inner.issuer
    }

    /// When the token expires (`exp`).
    pub fn expiry(&self) -> SystemTime {
        self.inner.expiry
    }

    /// The token ID (`jti`), if the token has one.
    pub fn token_id(&self) -> Option<&str> {
        self.inner.token_id.as_deref()
    }

    /// The task the token was issued for (`task_id`), if any.
    pub fn task_id(&self) -> Option<&str> {
        self.inner.task_id.as_deref()
    }

    /// The token, for forwarding it (after an [`ActorExchange`]) to the
    /// next hop. It is a bearer credential: never log it.
    pub fn token(&self) -> &str {
        &self.inner.token
    }
}

impl fmt::Debug for UserContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = &*self.inner;
        f.debug_struct("UserContext")
            .field("subject", &inner.subject)
            .field("scopes", &inner.scopes)
            .field(
                "actors",
                &inner
                    .actors
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>(),
            )
            .field("issuer", &inner.issuer)
            .field("expiry", &Timestamp(inner.expiry))
            .field("token_id", &inner.token_id)
            .field("task_id", &inner.task_id)
            .field("token", &"<redacted>")
            .finish()
    }
}

/// Exchanges a user context for one naming `actor` as the current actor
/// (RFC 8693 token exchange), so the next hop can bind it to its caller.
///
/// A production implementation calls a token-exchange service, which must
/// authenticate `actor`; the development issuer (`zt_dev::DevUserIssuer`)
/// signs locally.
pub trait ActorExchange: Send + Sync + fmt::Debug {
    /// Returns a token with the same subject, the same or fewer scopes
    /// (`scopes`, if given, must be a subset of the context's), and `actor`
    /// appended to the chain.
    ///
    /// # Errors
    ///
    /// Why the exchange was refused or failed.
    fn exchange<'a>(
        &'a self,
        context: &'a UserContext,
        actor: &'a SpiffeId,
        scopes: Option<&'a [&'a str]>,
    ) -> BoxFuture<'a, Result<String, ExchangeError>>;
}

/// Why an [`ActorExchange`] failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ExchangeError {
    /// The exchange asked for a scope the context does not carry.
    #[error("cannot add scope `{scope}` in an exchange; scopes can only be narrowed")]
    WidenedScope {
        /// The scope.
        scope: String,
    },
    /// The context has expired.
    #[error("the user context expired at {expired_at}; it cannot be exchanged")]
    Expired {
        /// When it expired.
        expired_at: Timestamp,
    },
    /// The `act` chain would exceed [`MAX_ACT_DEPTH`].
    #[error("the `act` chain already holds {MAX_ACT_DEPTH} actors")]
    ActChainTooLong,
    /// The issuer failed or refused.
    #[error("the token exchange failed: {reason}")]
    Issuer {
        /// What the issuer reported.
        reason: String,
    },
}

/// One trusted key.
#[derive(Clone)]
pub(crate) struct TrustedKey {
    pub(crate) algorithm: JwsAlgorithm,
    pub(crate) key: PublicKey,
}

/// Validates user-context tokens from one issuer.
///
/// Built from the issuer's JWKS; immutable, cheap to clone. To follow a key
/// rotation, build a new validator from the new JWKS.
#[derive(Clone)]
pub struct UserContextValidator {
    inner: Arc<ValidatorInner>,
}

#[derive(Clone)]
struct ValidatorInner {
    issuer: String,
    audience: String,
    keys: HashMap<String, TrustedKey>,
    leeway: Duration,
    revocations: Option<crate::revocation::Revocations>,
}

impl fmt::Debug for UserContextValidator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut kids: Vec<&str> = self.inner.keys.keys().map(String::as_str).collect();
        kids.sort_unstable();
        f.debug_struct("UserContextValidator")
            .field("issuer", &self.inner.issuer)
            .field("audience", &self.inner.audience)
            .field("key_ids", &kids)
            .field("leeway", &self.inner.leeway)
            .finish()
    }
}

/// The public key of `jwk` and the one algorithm it verifies: the JWK's
/// `alg` member, or the one its curve implies; RSA keys must name theirs.
pub(crate) fn trusted_key(jwk: &Jwk) -> Result<TrustedKey, String> {
    let Ok(Value::Object(map)) = serde_json::to_value(jwk) else {
        return Err("the key does not serialize as a JSON object".to_owned());
    };
    let key = PublicKey::from_jwk(&map).map_err(|e| match e {
        JoseError::UnusableKey { reason } => reason,
        other => other.to_string(),
    })?;
    let algorithm = match map.get("alg").and_then(Value::as_str) {
        Some(name) if name.starts_with("HS") => {
            return Err("symmetric (HMAC) keys are not accepted".to_owned());
        }
        Some(name) => JwsAlgorithm::from_name(name)
            .ok_or_else(|| format!("unsupported algorithm `{name}`"))?,
        None => key
            .implied_algorithm()
            .ok_or_else(|| "RSA keys must name their `alg`".to_owned())?,
    };
    if !key.fits(algorithm) {
        return Err(format!(
            "`alg` {algorithm} does not fit a {} key",
            key.description()
        ));
    }
    Ok(TrustedKey { algorithm, key })
}

impl UserContextValidator {
    /// A validator for tokens from `issuer` (the `iss` claim) for
    /// `audience`, signed by a key in `jwks`.
    ///
    /// Every key must have a `kid` and be asymmetric; an RSA key must name
    /// its `alg`.
    ///
    /// # Errors
    ///
    /// [`UserContextError::UnusableKey`] for the first key that breaks
    /// these rules.
    pub fn new(
        issuer: impl Into<String>,
        audience: impl Into<String>,
        jwks: &JwkSet,
    ) -> Result<Self, UserContextError> {
        let mut keys = HashMap::with_capacity(jwks.keys.len());
        for jwk in &jwks.keys {
            let key_id = jwk.common.key_id.clone();
            let unusable = |reason: String| UserContextError::UnusableKey {
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
                issuer: issuer.into(),
                audience: audience.into(),
                keys,
                leeway: Duration::from_secs(30),
                revocations: None,
            }),
        })
    }

    /// Sets the clock leeway for `exp` and `nbf` (default 30 s), capped at
    /// [`MAX_LEEWAY`].
    #[must_use]
    pub fn with_leeway(mut self, leeway: Duration) -> Self {
        Arc::make_mut(&mut self.inner).leeway = leeway.min(MAX_LEEWAY);
        self
    }

    /// Refuses tokens whose `jti` is revoked in `revocations`
    /// ([`UserContextError::Revoked`]). Clones of the list share it, so a
    /// revocation takes effect at the next validation.
    #[must_use]
    pub fn with_revocations(mut self, revocations: crate::revocation::Revocations) -> Self {
        Arc::make_mut(&mut self.inner).revocations = Some(revocations);
        self
    }

    /// The trusted issuer.
    pub fn issuer(&self) -> &str {
        &self.inner.issuer
    }

    /// The audience tokens must carry.
    pub fn audience(&self) -> &str {
        &self.inner.audience
    }

    /// Validates `token` at time `now`.
    ///
    /// # Errors
    ///
    /// The [`UserContextError`] of the first rule the token breaks: shape,
    /// `alg`, `typ`, `kid`, signature, `iss`, `sub`, `exp`, `nbf`, `aud`,
    /// `scope`, `act`, `jti`, `task_id`, then revocation of the `jti`.
    pub fn validate(&self, token: &str, now: SystemTime) -> Result<UserContext, UserContextError> {
        let inner = &*self.inner;
        let claims = verify_keyed_jws(token, &inner.keys, |header| {
            crate::jwt::check_type(header, USER_CONTEXT_TYPES)
        })?;

        let issuer = claims.get("iss").and_then(Value::as_str);
        if issuer != Some(inner.issuer.as_str()) {
            return Err(UserContextError::WrongIssuer {
                expected: inner.issuer.clone(),
                found: issuer.map(str::to_owned),
            });
        }
        let subject = claims
            .get("sub")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or(UserContextError::MissingSubject)?
            .to_owned();
        let expiry = time_claim(&claims, "exp")?.ok_or(UserContextError::MissingExpiry)?;
        if expiry
            .checked_add(inner.leeway)
            .is_some_and(|deadline| now > deadline)
        {
            return Err(UserContextError::Expired {
                expired_at: Timestamp(expiry),
                now: Timestamp(now),
            });
        }
        if let Some(nbf) = time_claim(&claims, "nbf")?
            && now + inner.leeway < nbf
        {
            return Err(UserContextError::NotYetValid {
                not_before: Timestamp(nbf),
                now: Timestamp(now),
            });
        }
        let audience = audience_of(&claims)?;
        if !audience.contains(&inner.audience) {
            return Err(UserContextError::WrongAudience {
                expected: inner.audience.clone(),
                found: audience,
            });
        }
        let scopes = scopes_of(&claims)?;
        let actors = actors_of(&claims)?;
        let token_id =
            id_claim(&claims, "jti").map_err(|reason| UserContextError::BadTokenId { reason })?;
        let task_id = id_claim(&claims, "task_id")
            .map_err(|reason| UserContextError::BadTaskId { reason })?;
        if task_id.is_some() && token_id.is_none() {
            return Err(UserContextError::BadTokenId {
                reason: "a token with a `task_id` must carry a `jti`, so it can be revoked"
                    .to_owned(),
            });
        }
        if let (Some(id), Some(revocations)) = (&token_id, &inner.revocations)
            && revocations.is_token_revoked(id)
        {
            return Err(UserContextError::Revoked {
                token_id: id.to_string(),
                task_id: task_id.as_deref().map(str::to_owned),
            });
        }
        Ok(UserContext {
            inner: Arc::new(Inner {
                subject,
                scopes,
                actors,
                issuer: inner.issuer.clone(),
                expiry,
                token_id,
                task_id,
                token: token.to_owned(),
            }),
        })
    }

    /// Validates `token` and checks actor binding: the current actor must
    /// be `caller`, the workload that authenticated the request.
    ///
    /// # Errors
    ///
    /// Those of [`validate`](Self::validate), then
    /// [`UserContextError::ActorMismatch`].
    pub fn validate_for_caller(
        &self,
        token: &str,
        now: SystemTime,
        caller: &SpiffeId,
    ) -> Result<UserContext, UserContextError> {
        let context = self.validate(token, now)?;
        if context.current_actor() != Some(caller) {
            return Err(UserContextError::ActorMismatch {
                caller: caller.clone(),
                actor: context.current_actor().cloned(),
            });
        }
        Ok(context)
    }
}

fn malformed(reason: impl Into<String>) -> UserContextError {
    UserContextError::Malformed {
        reason: reason.into(),
    }
}

/// Why a JWS signed by a JWKS-trusted key was refused before its claims
/// were read; each validator turns it into its own error type.
#[derive(Debug)]
pub(crate) enum KeyedJwsError {
    /// Not a compact JWS of JSON objects, or too long.
    Malformed(String),
    /// `alg` is not an asymmetric algorithm zt verifies.
    UnsupportedAlgorithm(String),
    /// `typ` is not one the validator accepts (`none` when required and
    /// absent).
    BadType(String),
    /// No `kid`.
    MissingKeyId,
    /// A `kid` the JWKS does not hold.
    UnknownKeyId(String),
    /// `alg` is not the algorithm of the key `kid` names.
    AlgorithmMismatch {
        /// The token's `alg`.
        alg: String,
        /// The key it names.
        key_id: String,
    },
    /// The signature does not verify.
    BadSignature(String),
}

/// Verifies a compact JWS signed by one of `keys` and returns its payload:
/// size bound, shape, `alg` among the asymmetric algorithms, `typ` (by
/// `check_type`, which returns the refused `typ`), `kid` in `keys` with that
/// key's algorithm, then the signature. The claims are the caller's to
/// check.
pub(crate) fn verify_keyed_jws(
    token: &str,
    keys: &HashMap<String, TrustedKey>,
    check_type: impl FnOnce(&Map<String, Value>) -> Result<(), String>,
) -> Result<Map<String, Value>, KeyedJwsError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(KeyedJwsError::Malformed(format!(
            "the token is {} bytes; at most {MAX_TOKEN_LEN} are accepted",
            token.len()
        )));
    }
    let jws = CompactJws::split(token).map_err(|_| {
        KeyedJwsError::Malformed("a compact JWS has three dot-separated parts".into())
    })?;
    let header = decode_object(jws.header(), "header").map_err(KeyedJwsError::Malformed)?;
    let alg_name = header
        .get("alg")
        .and_then(Value::as_str)
        .ok_or_else(|| KeyedJwsError::Malformed("the header has no `alg`".into()))?;
    let alg = JwsAlgorithm::from_name(alg_name)
        .ok_or_else(|| KeyedJwsError::UnsupportedAlgorithm(alg_name.to_owned()))?;
    check_type(&header).map_err(KeyedJwsError::BadType)?;
    let key_id = header
        .get("kid")
        .and_then(Value::as_str)
        .filter(|k| !k.is_empty())
        .ok_or(KeyedJwsError::MissingKeyId)?;
    let trusted = keys
        .get(key_id)
        .ok_or_else(|| KeyedJwsError::UnknownKeyId(key_id.to_owned()))?;
    if trusted.algorithm != alg {
        return Err(KeyedJwsError::AlgorithmMismatch {
            alg: alg_name.to_owned(),
            key_id: key_id.to_owned(),
        });
    }
    jws.verify(&trusted.key, alg)
        .map_err(|e| KeyedJwsError::BadSignature(e.to_string()))?;
    decode_object(jws.payload(), "payload").map_err(KeyedJwsError::Malformed)
}

impl From<KeyedJwsError> for UserContextError {
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

/// A base64url segment holding a JSON object; the error says which
/// (`what`) and why.
pub(crate) fn decode_object(segment: &str, what: &str) -> Result<Map<String, Value>, String> {
    let bytes = URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| format!("the {what} is not base64url"))?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(format!("the {what} is not a JSON object")),
    }
}

fn time_claim(
    claims: &Map<String, Value>,
    name: &str,
) -> Result<Option<SystemTime>, UserContextError> {
    crate::jwt::numeric_date(claims, name).map_err(malformed)
}

fn audience_of(claims: &Map<String, Value>) -> Result<Vec<String>, UserContextError> {
    crate::jwt::audience_claim(claims)
        .map_err(malformed)?
        .ok_or(UserContextError::MissingAudience)
}

/// An optional identifier claim: absent, or a non-empty string of at most
/// [`MAX_ID_LEN`] bytes without control characters.
fn id_claim(claims: &Map<String, Value>, name: &str) -> Result<Option<Box<str>>, String> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Err(format!("`{name}` is empty")),
        Some(Value::String(s)) if s.len() > MAX_ID_LEN => {
            Err(format!("`{name}` is longer than {MAX_ID_LEN} bytes"))
        }
        Some(Value::String(s)) if s.chars().any(char::is_control) => {
            Err(format!("`{name}` holds a control character"))
        }
        Some(Value::String(s)) => Ok(Some(s.as_str().into())),
        Some(_) => Err(format!("`{name}` must be a string")),
    }
}

/// `true` for an RFC 6749 scope-token: `%x21 / %x23-5B / %x5D-7E`, at
/// least one.
pub fn is_scope_token(scope: &str) -> bool {
    !scope.is_empty()
        && scope
            .bytes()
            .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b))
}

fn scopes_of(claims: &Map<String, Value>) -> Result<Box<[Box<str>]>, UserContextError> {
    let text = match claims.get("scope") {
        None => return Ok(Box::new([])),
        Some(Value::String(s)) => s,
        Some(_) => {
            return Err(UserContextError::BadScope {
                reason: "`scope` must be a space-separated string".to_owned(),
            });
        }
    };
    let mut scopes: Vec<Box<str>> = Vec::new();
    for scope in text.split(' ').filter(|s| !s.is_empty()) {
        if !is_scope_token(scope) {
            return Err(UserContextError::BadScope {
                reason: "a scope holds a character outside the RFC 6749 scope-token set".to_owned(),
            });
        }
        scopes.push(scope.into());
    }
    if scopes.len() > MAX_SCOPES {
        return Err(UserContextError::BadScope {
            reason: format!("more than {MAX_SCOPES} scopes"),
        });
    }
    scopes.sort_unstable();
    scopes.dedup();
    Ok(scopes.into_boxed_slice())
}

/// The `act` chain, oldest actor first.
fn actors_of(claims: &Map<String, Value>) -> Result<Box<[SpiffeId]>, UserContextError> {
    let mut actors = Vec::new();
    let mut next = claims.get("act");
    while let Some(act) = next {
        if actors.len() == MAX_ACT_DEPTH {
            return Err(UserContextError::ActChainTooLong);
        }
        let Value::Object(act) = act else {
            return Err(UserContextError::BadActor {
                reason: "an `act` entry must be an object".to_owned(),
            });
        };
        let sub =
            act.get("sub")
                .and_then(Value::as_str)
                .ok_or_else(|| UserContextError::BadActor {
                    reason: "an `act` entry has no `sub`".to_owned(),
                })?;
        let id = parse_canonical(sub).map_err(|e| UserContextError::BadActor {
            reason: format!("an actor is not a SPIFFE ID: {e}"),
        })?;
        actors.push(id);
        next = act.get("act");
    }
    actors.reverse();
    Ok(actors.into_boxed_slice())
}

/// Builds the nested `act` claim for `actors` (oldest first); `None` when
/// empty. Token issuers (such as `zt_dev::DevUserIssuer`) build it.
pub fn act_claim(actors: &[SpiffeId]) -> Option<Value> {
    let mut claim: Option<Value> = None;
    for actor in actors {
        let mut entry = Map::new();
        entry.insert("sub".into(), Value::String(actor.to_string()));
        if let Some(previous) = claim.take() {
            entry.insert("act".into(), previous);
        }
        claim = Some(Value::Object(entry));
    }
    claim
}
