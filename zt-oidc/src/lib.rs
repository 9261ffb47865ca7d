//! OIDC workload tokens for zt.
//!
//! A CI job, a Kubernetes pod or a cloud workload often proves itself with
//! an OIDC token from its platform rather than an X.509-SVID.
//! [`OidcValidator`] verifies such tokens and turns each into a
//! [`VerifiedWorkloadToken`] whose [`identity`](VerifiedWorkloadToken::identity)
//! is a SPIFFE ID made from its claims by a per-issuer
//! [`IdentityTemplate`], so policy names OIDC callers with the same
//! matchers as SVID callers.
//!
//! # What is checked
//!
//! - the issuer is on the allow-list ([`IssuerConfig`]);
//! - no `crit` header extension (none is understood);
//! - the header's `alg` is asymmetric and allowed for that issuer: `none`
//!   and `HS*` are refused with their own errors;
//! - the signature verifies (zt_core::jose, ring) with the key the header's
//!   `kid` names in the issuer's JWKS;
//! - `iss` equals the issuer, `aud` holds an expected audience, `exp` is
//!   present and not past, `nbf` and `iat` are not in the future, each with
//!   the issuer's leeway (at most [`MAX_LEEWAY`]);
//! - the identity template can be filled from the claims.
//!
//! # Keys
//!
//! The JWKS is found by discovery (`{issuer}/.well-known/openid-configuration`,
//! whose `issuer` must equal the configured one exactly) and fetched over
//! HTTPS with reqwest on rustls, with the crypto provider of zt-tls passed
//! explicitly and the roots given in [`FetchOptions`]. Responses are
//! bounded in size and time; a JWKS that is malformed or holds a symmetric
//! key is refused. Keys are cached and refreshed in the background (every
//! [`FetchOptions::refresh_interval`], or the `Cache-Control: max-age`
//! clamped to bounds) and when a token names an unknown `kid` — at most
//! once per [`FetchOptions::refetch_interval`] per issuer, so a flood of
//! unknown kids is not a flood of fetches. Through an outage the last good
//! JWKS is used until it is [`FetchOptions::max_stale`] old; after that
//! every token of that issuer is refused ([`OidcError::KeysStale`]).
//!
//! Tokens are never logged and errors never quote them.
//!
//! # Quick start
//!
//! ```no_run
//! use zt_oidc::{FetchOptions, IdentityTemplate, IssuerConfig, OidcValidator};
//!
//! # async fn run(token: &str) -> Result<(), zt_oidc::OidcError> {
//! let github = IssuerConfig::new(
//!     "https://token.actions.githubusercontent.com",
//!     "https://deploy.example",
//!     IdentityTemplate::new("spiffe://github.example/repo/{repository:path}/env/{environment}")?,
//! )?;
//! let validator = OidcValidator::new(vec![github], FetchOptions::default())?;
//! let verified = validator.validate(token).await?;
//! println!("caller {} (sub {})", verified.identity(), verified.subject());
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]

mod template;

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rustls_pki_types::CertificateDer;
use serde_json::{Map, Value};
use zt_core::SpiffeId;
use zt_core::jose::{CompactJws, JoseError, JwsAlgorithm, PublicKey};
use zt_core::time::{SharedClock, system_clock};

pub use template::IdentityTemplate;

/// The largest leeway an issuer may be given for `exp`, `nbf` and `iat`.
pub const MAX_LEEWAY: Duration = Duration::from_secs(300);

/// Why a token, a configuration or a key fetch was refused.
///
/// No variant carries the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OidcError {
    /// An issuer configuration is unusable.
    #[error("issuer `{issuer}` configuration: {reason}")]
    InvalidConfig {
        /// The issuer.
        issuer: String,
        /// What was wrong.
        reason: String,
    },
    /// An identity template is unusable.
    #[error("identity template `{template}`: {reason}")]
    InvalidTemplate {
        /// The template.
        template: String,
        /// What was wrong.
        reason: String,
    },
    /// An algorithm was configured or used that is not an asymmetric one
    /// zt verifies.
    #[error(
        "algorithm `{alg}` is not supported; only ES256, ES384, RS256/384/512, PS256/384/512 and EdDSA are"
    )]
    UnsupportedAlgorithm {
        /// The algorithm's name.
        alg: String,
    },
    /// The token is not a compact JWS with JSON header and claims.
    #[error("malformed token: {reason}")]
    Malformed {
        /// What was wrong.
        reason: String,
    },
    /// The token is unsigned (`alg` `none`).
    #[error("unsigned token (alg `none`) refused")]
    UnsignedToken,
    /// The token is signed with a shared secret (`HS*`).
    #[error(
        "symmetric algorithm `{alg}` refused; OIDC workload tokens must be signed with a public key"
    )]
    SymmetricAlgorithm {
        /// The algorithm's name.
        alg: String,
    },
    /// The algorithm is one zt verifies but the issuer does not allow.
    #[error("algorithm `{alg}` is not allowed for issuer `{issuer}`")]
    AlgorithmNotAllowed {
        /// The algorithm.
        alg: JwsAlgorithm,
        /// The issuer.
        issuer: String,
    },
    /// The token's `iss` is not on the allow-list (or missing).
    #[error("issuer `{issuer}` is not trusted")]
    UntrustedIssuer {
        /// The `iss` claim (empty if missing).
        issuer: String,
    },
    /// The header names no `kid`.
    #[error("the token header names no `kid`")]
    MissingKeyId,
    /// The issuer's JWKS has no key with the token's `kid`, even after a
    /// refetch (or while refetches are rate-limited).
    #[error("issuer `{issuer}` has no key `{kid}`")]
    UnknownKey {
        /// The issuer.
        issuer: String,
        /// The `kid`.
        kid: String,
    },
    /// The signature does not verify, or the key does not fit the
    /// algorithm.
    #[error("signature: {0}")]
    Signature(JoseError),
    /// `aud` holds none of the expected audiences.
    #[error("audience {found:?} is not one of {expected:?}")]
    WrongAudience {
        /// The token's audiences.
        found: Vec<String>,
        /// The configured audiences.
        expected: Vec<String>,
    },
    /// A required claim is missing or of the wrong type.
    #[error("claim `{claim}`: {reason}")]
    InvalidClaim {
        /// The claim.
        claim: &'static str,
        /// What was wrong.
        reason: &'static str,
    },
    /// `exp` has passed (beyond the leeway).
    #[error("token expired at {exp} (unix seconds)")]
    Expired {
        /// The `exp` claim.
        exp: u64,
    },
    /// `nbf` is in the future (beyond the leeway).
    #[error("token not valid before {nbf} (unix seconds)")]
    NotYetValid {
        /// The `nbf` claim.
        nbf: u64,
    },
    /// `iat` is in the future (beyond the leeway).
    #[error("token issued in the future, at {iat} (unix seconds)")]
    IssuedInFuture {
        /// The `iat` claim.
        iat: u64,
    },
    /// A claim the identity template needs cannot form the ID.
    #[error("identity claim `{claim}`: {reason}")]
    IdentityClaim {
        /// The claim's dotted path.
        claim: String,
        /// What was wrong.
        reason: String,
    },
    /// Discovery or the JWKS could not be fetched (network, TLS, HTTP
    /// status, timeout).
    #[error("fetching `{url}`: {reason}")]
    Fetch {
        /// The URL.
        url: String,
        /// What failed.
        reason: String,
    },
    /// A response exceeded the size bound.
    #[error("`{url}` sent more than {limit} bytes")]
    ResponseTooLarge {
        /// The URL.
        url: String,
        /// The bound.
        limit: usize,
    },
    /// Discovery named another issuer.
    #[error("discovery for `{expected}` names issuer `{found}`")]
    IssuerMismatch {
        /// The configured issuer.
        expected: String,
        /// The discovery document's `issuer`.
        found: String,
    },
    /// A discovery document or JWKS is not what the specifications say.
    #[error("`{url}` is malformed: {reason}")]
    MalformedDocument {
        /// The URL.
        url: String,
        /// What was wrong.
        reason: String,
    },
    /// The JWKS holds a symmetric (`oct`) key.
    #[error("`{url}` publishes a symmetric key; refused")]
    SymmetricKey {
        /// The JWKS URL.
        url: String,
    },
    /// The last good JWKS is older than `max_stale` and no fresh one
    /// could be fetched: the issuer's tokens are refused.
    #[error("keys of issuer `{issuer}` are stale ({age:?} old) and could not be refreshed")]
    KeysStale {
        /// The issuer.
        issuer: String,
        /// How old the last good JWKS is.
        age: Duration,
    },
}

impl OidcError {
    /// A stable code for audit records and metrics, such as
    /// `oidc:expired` or `oidc:unknown-kid`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::InvalidConfig { .. } => "oidc:invalid-config",
            Self::InvalidTemplate { .. } => "oidc:invalid-template",
            Self::UnsupportedAlgorithm { .. } => "oidc:unsupported-algorithm",
            Self::Malformed { .. } => "oidc:malformed",
            Self::UnsignedToken => "oidc:alg-none",
            Self::SymmetricAlgorithm { .. } => "oidc:symmetric-algorithm",
            Self::AlgorithmNotAllowed { .. } => "oidc:algorithm-not-allowed",
            Self::UntrustedIssuer { .. } => "oidc:untrusted-issuer",
            Self::MissingKeyId => "oidc:missing-kid",
            Self::UnknownKey { .. } => "oidc:unknown-kid",
            Self::Signature(_) => "oidc:bad-signature",
            Self::WrongAudience { .. } => "oidc:wrong-aud",
            Self::InvalidClaim { .. } => "oidc:invalid-claim",
            Self::Expired { .. } => "oidc:expired",
            Self::NotYetValid { .. } => "oidc:not-yet-valid",
            Self::IssuedInFuture { .. } => "oidc:issued-in-future",
            Self::IdentityClaim { .. } => "oidc:identity-claim",
            Self::Fetch { .. } => "oidc:fetch-failed",
            Self::ResponseTooLarge { .. } => "oidc:response-too-large",
            Self::IssuerMismatch { .. } => "oidc:issuer-mismatch",
            Self::MalformedDocument { .. } => "oidc:malformed-document",
            Self::SymmetricKey { .. } => "oidc:symmetric-key",
            Self::KeysStale { .. } => "oidc:keys-stale",
        }
    }
}

/// One trusted issuer and how its tokens are judged.
#[derive(Debug, Clone)]
pub struct IssuerConfig {
    issuer: String,
    audiences: Vec<String>,
    algorithms: Vec<JwsAlgorithm>,
    leeway: Duration,
    identity: IdentityTemplate,
}

impl IssuerConfig {
    /// An issuer (an `https` URL, compared to `iss` exactly) whose tokens
    /// must carry `audience`, with identities made by `identity`. Allowed
    /// algorithms default to ES256, ES384, RS256, PS256 and EdDSA; the
    /// leeway to 30 seconds.
    ///
    /// # Errors
    ///
    /// [`OidcError::InvalidConfig`] if the issuer is not an `https` URL or
    /// the audience is empty.
    pub fn new(
        issuer: impl Into<String>,
        audience: impl Into<String>,
        identity: IdentityTemplate,
    ) -> Result<Self, OidcError> {
        let issuer = issuer.into();
        let audience = audience.into();
        let invalid = |reason: &str| OidcError::InvalidConfig {
            issuer: issuer.clone(),
            reason: reason.to_owned(),
        };
        if !issuer.starts_with("https://") || issuer.len() <= "https://".len() {
            return Err(invalid("the issuer must be an https URL"));
        }
        if audience.is_empty() {
            return Err(invalid("the audience is empty"));
        }
        Ok(Self {
            issuer,
            audiences: vec![audience],
            algorithms: vec![
                JwsAlgorithm::Es256,
                JwsAlgorithm::Es384,
                JwsAlgorithm::Rs256,
                JwsAlgorithm::Ps256,
                JwsAlgorithm::EdDsa,
            ],
            leeway: Duration::from_secs(30),
            identity,
        })
    }

    /// Accepts `audience` too.
    #[must_use]
    pub fn also_audience(mut self, audience: impl Into<String>) -> Self {
        self.audiences.push(audience.into());
        self
    }

    /// The algorithms accepted, by `alg` name.
    ///
    /// # Errors
    ///
    /// [`OidcError::UnsignedToken`] for `none`,
    /// [`OidcError::SymmetricAlgorithm`] for `HS*`,
    /// [`OidcError::UnsupportedAlgorithm`] for any other name zt does not
    /// verify, [`OidcError::InvalidConfig`] for an empty list.
    pub fn algorithms(mut self, names: &[&str]) -> Result<Self, OidcError> {
        let mut algorithms = Vec::new();
        for name in names {
            algorithms.push(algorithm(name)?);
        }
        if algorithms.is_empty() {
            return Err(OidcError::InvalidConfig {
                issuer: self.issuer,
                reason: "no algorithm allowed".into(),
            });
        }
        self.algorithms = algorithms;
        Ok(self)
    }

    /// The leeway for `exp`, `nbf` and `iat`.
    ///
    /// # Errors
    ///
    /// [`OidcError::InvalidConfig`] above [`MAX_LEEWAY`].
    pub fn leeway(mut self, leeway: Duration) -> Result<Self, OidcError> {
        if leeway > MAX_LEEWAY {
            return Err(OidcError::InvalidConfig {
                issuer: self.issuer,
                reason: format!("leeway {leeway:?} exceeds {MAX_LEEWAY:?}"),
            });
        }
        self.leeway = leeway;
        Ok(self)
    }

    /// The issuer URL.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }
}

/// An `alg` name as an algorithm zt verifies, or the typed refusal.
fn algorithm(name: &str) -> Result<JwsAlgorithm, OidcError> {
    if name.eq_ignore_ascii_case("none") {
        return Err(OidcError::UnsignedToken);
    }
    if name.starts_with("HS") {
        return Err(OidcError::SymmetricAlgorithm {
            alg: name.to_owned(),
        });
    }
    JwsAlgorithm::from_name(name).ok_or_else(|| OidcError::UnsupportedAlgorithm {
        alg: name.to_owned(),
    })
}

/// How discovery and JWKS are fetched and cached.
#[derive(Debug, Clone)]
pub struct FetchOptions {
    /// Roots trusted for the issuers' HTTPS (DER). Empty: the operating
    /// system's roots.
    pub roots: Vec<CertificateDer<'static>>,
    /// Bound on one request, body included; validation never waits longer
    /// for a fetch.
    pub timeout: Duration,
    /// Bound on a response body.
    pub max_body: usize,
    /// Background refresh interval when the JWKS sends no max-age.
    pub refresh_interval: Duration,
    /// Lower bound on a max-age honoured for background refresh.
    pub min_refresh: Duration,
    /// Upper bound on a max-age honoured for background refresh.
    pub max_refresh: Duration,
    /// At most one fetch per issuer per this interval on demand (unknown
    /// `kid`, stale keys), measured on the validator's clock.
    pub refetch_interval: Duration,
    /// How old the last good JWKS may grow through an outage before the
    /// issuer's tokens are refused.
    pub max_stale: Duration,
}

impl Default for FetchOptions {
    fn default() -> Self {
        Self {
            roots: Vec::new(),
            timeout: Duration::from_secs(5),
            max_body: 256 * 1024,
            refresh_interval: Duration::from_secs(300),
            min_refresh: Duration::from_secs(60),
            max_refresh: Duration::from_secs(3600),
            refetch_interval: Duration::from_secs(30),
            max_stale: Duration::from_secs(24 * 3600),
        }
    }
}

/// A token that passed every check.
#[derive(Clone, PartialEq)]
pub struct VerifiedWorkloadToken {
    issuer: String,
    subject: String,
    identity: SpiffeId,
    expiry: SystemTime,
    claims: Map<String, Value>,
}

impl fmt::Debug for VerifiedWorkloadToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifiedWorkloadToken")
            .field("issuer", &self.issuer)
            .field("subject", &self.subject)
            .field("identity", &self.identity.to_string())
            .field("expiry", &self.expiry)
            .finish_non_exhaustive()
    }
}

impl VerifiedWorkloadToken {
    /// The issuer (`iss`).
    pub fn issuer(&self) -> &str {
        &self.issuer
    }
    /// The subject (`sub`; empty if the token has none).
    pub fn subject(&self) -> &str {
        &self.subject
    }
    /// The SPIFFE ID the issuer's template made from the claims.
    pub fn identity(&self) -> &SpiffeId {
        &self.identity
    }
    /// When the token expires (`exp`).
    pub fn expiry(&self) -> SystemTime {
        self.expiry
    }
    /// All claims, for rules that look at the token's context.
    pub fn claims(&self) -> &Map<String, Value> {
        &self.claims
    }
}

/// Verifies OIDC workload tokens from a fixed set of issuers. Cheap to
/// clone; clones share the key caches.
#[derive(Clone)]
pub struct OidcValidator {
    inner: Arc<Inner>,
}

impl fmt::Debug for OidcValidator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OidcValidator")
            .field("issuers", &self.inner.issuers.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

struct Inner {
    issuers: HashMap<String, Issuer>,
    http: reqwest::Client,
    options: FetchOptions,
    clock: SharedClock,
}

struct Issuer {
    config: IssuerConfig,
    cache: Mutex<Cache>,
    /// Held while fetching, so concurrent callers share one fetch.
    fetching: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct Cache {
    keys: Option<Arc<HashMap<String, PublicKey>>>,
    fetched_at: Option<SystemTime>,
    last_attempt: Option<SystemTime>,
    jwks_uri: Option<String>,
    max_age: Option<Duration>,
}

impl OidcValidator {
    /// A validator for `issuers`, fetching with `options`, on the system
    /// clock.
    ///
    /// # Errors
    ///
    /// [`OidcError::InvalidConfig`] if an issuer appears twice, none is
    /// given, or the HTTPS client cannot be built.
    pub fn new(issuers: Vec<IssuerConfig>, options: FetchOptions) -> Result<Self, OidcError> {
        Self::with_clock(issuers, options, system_clock())
    }

    /// Like [`new`](Self::new), reading "now" from `clock` for claim checks,
    /// staleness and the refetch rate limit.
    ///
    /// # Errors
    ///
    /// As [`new`](Self::new).
    pub fn with_clock(
        issuers: Vec<IssuerConfig>,
        options: FetchOptions,
        clock: SharedClock,
    ) -> Result<Self, OidcError> {
        let config_err = |issuer: &str, reason: String| OidcError::InvalidConfig {
            issuer: issuer.to_owned(),
            reason,
        };
        if issuers.is_empty() {
            return Err(config_err("", "no issuer configured".into()));
        }
        let mut map = HashMap::new();
        for config in issuers {
            let name = config.issuer.clone();
            let issuer = Issuer {
                config,
                cache: Mutex::new(Cache::default()),
                fetching: tokio::sync::Mutex::new(()),
            };
            if map.insert(name.clone(), issuer).is_some() {
                return Err(config_err(&name, "configured twice".into()));
            }
        }
        let http = http_client(&options).map_err(|reason| config_err("", reason))?;
        Ok(Self {
            inner: Arc::new(Inner {
                issuers: map,
                http,
                options,
                clock,
            }),
        })
    }

    /// Starts refreshing every issuer's JWKS in the background (on the
    /// tokio runtime), each at its `max-age` clamped to
    /// [`FetchOptions::min_refresh`]..[`FetchOptions::max_refresh`], or
    /// [`FetchOptions::refresh_interval`]. The tasks end when the last
    /// clone of the validator is dropped.
    pub fn spawn_refresh(&self) {
        for name in self.inner.issuers.keys() {
            let weak: Weak<Inner> = Arc::downgrade(&self.inner);
            let name = name.clone();
            tokio::spawn(async move {
                loop {
                    let wait = {
                        let Some(inner) = weak.upgrade() else { return };
                        let Some(issuer) = inner.issuers.get(&name) else {
                            return;
                        };
                        if let Err(e) = inner.refresh(issuer, false).await {
                            tracing::warn!(issuer = %name, error = %e, "OIDC JWKS refresh failed");
                        }
                        let max_age = lock(&issuer.cache).max_age;
                        refresh_wait(&inner.options, max_age)
                    };
                    tokio::time::sleep(wait).await;
                }
            });
        }
    }

    /// Verifies `token` and returns its issuer, subject, identity, expiry
    /// and claims.
    ///
    /// # Errors
    ///
    /// The [`OidcError`] naming the first rule the token breaks, or why the
    /// issuer's keys are not available. The token itself is never quoted.
    /// Each refusal is recorded as a `WARN` event with target `zt::audit`
    /// (`decision = "deny"`, `reason` = [`OidcError::kind`], `detail`).
    pub async fn validate(&self, token: &str) -> Result<VerifiedWorkloadToken, OidcError> {
        let result = self.validate_inner(token).await;
        match &result {
            Ok(verified) => tracing::debug!(
                target: "zt::audit",
                issuer = %verified.issuer,
                identity = %verified.identity,
                decision = "allow",
                "OIDC workload token verified"
            ),
            Err(e) => tracing::warn!(
                target: "zt::audit",
                decision = "deny",
                reason = e.kind(),
                detail = %e,
                "OIDC workload token refused"
            ),
        }
        result
    }

    /// Verifies `token` as [`validate`](Self::validate) does, without
    /// recording the outcome: for a caller that writes its own audit
    /// record, naming the request the token came with.
    ///
    /// # Errors
    ///
    /// As [`validate`](Self::validate).
    pub async fn verify(&self, token: &str) -> Result<VerifiedWorkloadToken, OidcError> {
        self.validate_inner(token).await
    }

    async fn validate_inner(&self, token: &str) -> Result<VerifiedWorkloadToken, OidcError> {
        let malformed = |reason: &str| OidcError::Malformed {
            reason: reason.to_owned(),
        };
        let jws = CompactJws::split(token).map_err(|_| malformed("not a compact JWS"))?;
        let header = decode_object(jws.header()).ok_or_else(|| malformed("header is not JSON"))?;
        let claims =
            decode_object(jws.payload()).ok_or_else(|| malformed("claims are not JSON"))?;
        let alg_name = header
            .get("alg")
            .and_then(Value::as_str)
            .ok_or_else(|| malformed("header has no `alg`"))?;
        let alg = algorithm(alg_name)?;
        // RFC 7515 4.1.11: extensions marked critical must be understood;
        // zt understands none.
        if header.contains_key("crit") {
            return Err(malformed("critical header extensions are not supported"));
        }

        let iss = claims.get("iss").and_then(Value::as_str).unwrap_or("");
        let issuer = self
            .inner
            .issuers
            .get(iss)
            .ok_or_else(|| OidcError::UntrustedIssuer {
                issuer: iss.to_owned(),
            })?;
        let config = &issuer.config;
        if !config.algorithms.contains(&alg) {
            return Err(OidcError::AlgorithmNotAllowed {
                alg,
                issuer: config.issuer.clone(),
            });
        }
        let kid = header
            .get("kid")
            .and_then(Value::as_str)
            .ok_or(OidcError::MissingKeyId)?;
        let key = self.inner.key(issuer, kid).await?;
        jws.verify(&key, alg).map_err(OidcError::Signature)?;

        // Audience.
        let found: Vec<String> = match claims.get("aud") {
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        };
        if !found.iter().any(|a| config.audiences.contains(a)) {
            return Err(OidcError::WrongAudience {
                found,
                expected: config.audiences.clone(),
            });
        }

        // Times.
        let now = self
            .inner
            .clock
            .now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let leeway = config.leeway.as_secs();
        let exp = time_claim(&claims, "exp")?.ok_or(OidcError::InvalidClaim {
            claim: "exp",
            reason: "missing",
        })?;
        if now >= exp.saturating_add(leeway) {
            return Err(OidcError::Expired { exp });
        }
        if let Some(nbf) = time_claim(&claims, "nbf")?
            && nbf > now.saturating_add(leeway)
        {
            return Err(OidcError::NotYetValid { nbf });
        }
        if let Some(iat) = time_claim(&claims, "iat")?
            && iat > now.saturating_add(leeway)
        {
            return Err(OidcError::IssuedInFuture { iat });
        }

        let identity = config.identity.render(&claims)?;
        let subject = claims
            .get("sub")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        Ok(VerifiedWorkloadToken {
            issuer: config.issuer.clone(),
            subject,
            identity,
            expiry: UNIX_EPOCH + Duration::from_secs(exp),
            claims,
        })
    }
}

impl Inner {
    /// The key `kid` of `issuer`: from the cache, or after one
    /// (rate-limited, time-bounded) fetch.
    async fn key(&self, issuer: &Issuer, kid: &str) -> Result<PublicKey, OidcError> {
        let now = self.clock.now();
        let (keys, age, may_fetch) = {
            let cache = lock(&issuer.cache);
            let age = cache
                .fetched_at
                .map(|t| now.duration_since(t).unwrap_or_default());
            let may_fetch = cache.last_attempt.is_none_or(|t| {
                now.duration_since(t).unwrap_or_default() >= self.options.refetch_interval
            });
            (cache.keys.clone(), age, may_fetch)
        };
        let fresh = age.is_some_and(|a| a <= self.options.max_stale);
        if fresh && let Some(key) = keys.as_ref().and_then(|k| k.get(kid)) {
            return Ok(key.clone());
        }
        // Unknown kid, no keys yet, or keys too old: one fetch if allowed.
        // Otherwise a fetch under way (the background refresh's, or another
        // request's) is waited for, within the timeout, so a token that
        // arrives while the first keys are being fetched is not refused
        // for want of keys the fetch is about to store.
        let fetched = if may_fetch {
            Some(self.refresh(issuer, true).await)
        } else {
            let _ = tokio::time::timeout(self.options.timeout, issuer.fetching.lock()).await;
            None
        };
        let (keys, age) = {
            let cache = lock(&issuer.cache);
            let age = cache
                .fetched_at
                .map(|t| self.clock.now().duration_since(t).unwrap_or_default());
            (cache.keys.clone(), age)
        };
        match age {
            Some(age) if age <= self.options.max_stale => keys
                .as_ref()
                .and_then(|k| k.get(kid))
                .cloned()
                .ok_or_else(|| OidcError::UnknownKey {
                    issuer: issuer.config.issuer.clone(),
                    kid: kid.to_owned(),
                }),
            Some(age) => Err(OidcError::KeysStale {
                issuer: issuer.config.issuer.clone(),
                age,
            }),
            // Never fetched: report why.
            None => match fetched {
                Some(Err(e)) => Err(e),
                _ => Err(OidcError::Fetch {
                    url: issuer.config.issuer.clone(),
                    reason: format!(
                        "no keys fetched yet; the next attempt is allowed {:?} after the last",
                        self.options.refetch_interval
                    ),
                }),
            },
        }
    }

    /// Fetches discovery (first time) and the JWKS, bounded by the
    /// timeout, and stores the keys on success.
    ///
    /// A fetch already under way is waited for (at most the timeout) and
    /// not repeated. An on-demand fetch (unknown `kid`, stale keys) is
    /// skipped when the last attempt is younger than the refetch interval.
    async fn refresh(&self, issuer: &Issuer, on_demand: bool) -> Result<(), OidcError> {
        let timeout = self.options.timeout;
        let Ok(_one) = issuer.fetching.try_lock() else {
            let _ = tokio::time::timeout(timeout, issuer.fetching.lock()).await;
            return Ok(());
        };
        {
            let now = self.clock.now();
            let mut cache = lock(&issuer.cache);
            if on_demand
                && cache.last_attempt.is_some_and(|t| {
                    now.duration_since(t).unwrap_or_default() < self.options.refetch_interval
                })
            {
                return Ok(());
            }
            cache.last_attempt = Some(now);
        }
        let url = issuer.config.issuer.clone();
        let work = async {
            let cached = lock(&issuer.cache).jwks_uri.clone();
            let jwks_uri = match cached {
                Some(uri) => uri,
                None => self.discover(&issuer.config.issuer).await?,
            };
            let (body, max_age) = self.get(&jwks_uri).await?;
            let keys = parse_jwks(&jwks_uri, &body)?;
            Ok::<_, OidcError>((jwks_uri, keys, max_age))
        };
        let (jwks_uri, keys, max_age) =
            tokio::time::timeout(timeout, work)
                .await
                .map_err(|_| OidcError::Fetch {
                    url,
                    reason: format!("no answer within {timeout:?}"),
                })??;
        let mut cache = lock(&issuer.cache);
        cache.jwks_uri = Some(jwks_uri);
        cache.keys = Some(Arc::new(keys));
        cache.fetched_at = Some(self.clock.now());
        cache.max_age = max_age;
        Ok(())
    }

    /// The `jwks_uri` of `issuer`'s discovery document.
    async fn discover(&self, issuer: &str) -> Result<String, OidcError> {
        let url = format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        );
        let (body, _) = self.get(&url).await?;
        let malformed = |reason: &str| OidcError::MalformedDocument {
            url: url.clone(),
            reason: reason.to_owned(),
        };
        let doc: Map<String, Value> =
            serde_json::from_slice(&body).map_err(|_| malformed("not a JSON object"))?;
        let found = doc
            .get("issuer")
            .and_then(Value::as_str)
            .ok_or_else(|| malformed("no `issuer`"))?;
        if found != issuer {
            return Err(OidcError::IssuerMismatch {
                expected: issuer.to_owned(),
                found: found.to_owned(),
            });
        }
        let jwks_uri = doc
            .get("jwks_uri")
            .and_then(Value::as_str)
            .ok_or_else(|| malformed("no `jwks_uri`"))?;
        if !jwks_uri.starts_with("https://") {
            return Err(malformed("`jwks_uri` is not https"));
        }
        Ok(jwks_uri.to_owned())
    }

    /// GET `url`: the body (at most `max_body` bytes) and the max-age.
    async fn get(&self, url: &str) -> Result<(Vec<u8>, Option<Duration>), OidcError> {
        let fetch_err = |reason: String| OidcError::Fetch {
            url: url.to_owned(),
            reason,
        };
        let mut response = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| fetch_err(e.to_string()))?;
        if !response.status().is_success() {
            return Err(fetch_err(format!("HTTP {}", response.status())));
        }
        let limit = self.options.max_body;
        let too_large = || OidcError::ResponseTooLarge {
            url: url.to_owned(),
            limit,
        };
        if response.content_length().is_some_and(|n| n > limit as u64) {
            return Err(too_large());
        }
        let max_age = response
            .headers()
            .get(reqwest::header::CACHE_CONTROL)
            .and_then(|v| v.to_str().ok())
            .and_then(max_age);
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| fetch_err(e.to_string()))?
        {
            if body.len() + chunk.len() > limit {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok((body, max_age))
    }
}

/// How long the background task waits before the next refresh.
fn refresh_wait(options: &FetchOptions, max_age: Option<Duration>) -> Duration {
    match max_age {
        Some(age) => age.clamp(
            options.min_refresh,
            options.max_refresh.max(options.min_refresh),
        ),
        None => options.refresh_interval,
    }
}

/// The `max-age` of a `Cache-Control` header value.
fn max_age(header: &str) -> Option<Duration> {
    header.split(',').find_map(|directive| {
        let (name, value) = directive.trim().split_once('=')?;
        if name.trim().eq_ignore_ascii_case("max-age") {
            value
                .trim()
                .trim_matches('"')
                .parse()
                .ok()
                .map(Duration::from_secs)
        } else {
            None
        }
    })
}

/// The keys of a JWKS by `kid`. Keys without `kid`, or whose `use` is not
/// `sig`, are skipped; a symmetric key or a malformed set refuses the whole
/// document.
fn parse_jwks(url: &str, body: &[u8]) -> Result<HashMap<String, PublicKey>, OidcError> {
    let malformed = |reason: String| OidcError::MalformedDocument {
        url: url.to_owned(),
        reason,
    };
    let doc: Map<String, Value> =
        serde_json::from_slice(body).map_err(|_| malformed("not a JSON object".into()))?;
    let keys = doc
        .get("keys")
        .and_then(Value::as_array)
        .ok_or_else(|| malformed("no `keys` array".into()))?;
    let mut out = HashMap::new();
    for key in keys {
        let jwk = key
            .as_object()
            .ok_or_else(|| malformed("a key is not an object".into()))?;
        if jwk.get("kty").and_then(Value::as_str) == Some("oct") {
            return Err(OidcError::SymmetricKey {
                url: url.to_owned(),
            });
        }
        if jwk
            .get("use")
            .and_then(Value::as_str)
            .is_some_and(|u| u != "sig")
        {
            continue;
        }
        let Some(kid) = jwk.get("kid").and_then(Value::as_str) else {
            continue;
        };
        let public =
            PublicKey::from_jwk(jwk).map_err(|e| malformed(format!("key `{kid}`: {e}")))?;
        out.insert(kid.to_owned(), public);
    }
    Ok(out)
}

fn decode_object(segment: &str) -> Option<Map<String, Value>> {
    let bytes = URL_SAFE_NO_PAD.decode(segment).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// A NumericDate claim: `None` if absent, an error if not a non-negative
/// number.
fn time_claim(claims: &Map<String, Value>, claim: &'static str) -> Result<Option<u64>, OidcError> {
    match claims.get(claim) {
        None => Ok(None),
        Some(v) => v
            .as_u64()
            .or_else(|| {
                v.as_f64()
                    .filter(|f| f.is_finite() && *f >= 0.0)
                    .map(|f| f as u64)
            })
            .map(Some)
            .ok_or(OidcError::InvalidClaim {
                claim,
                reason: "not a non-negative number",
            }),
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn http_client(options: &FetchOptions) -> Result<reqwest::Client, String> {
    let mut roots = rustls::RootCertStore::empty();
    if options.roots.is_empty() {
        for cert in rustls_native_certs::load_native_certs().certs {
            let _ = roots.add(cert);
        }
    } else {
        for cert in &options.roots {
            roots
                .add(cert.clone())
                .map_err(|e| format!("root certificate: {e}"))?;
        }
    }
    let provider = Arc::new(zt_tls::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    reqwest::Client::builder()
        .tls_backend_preconfigured(config)
        .timeout(options.timeout)
        .connect_timeout(options.timeout)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn max_age_parsed_and_clamped() {
        let options = FetchOptions::default();
        assert_eq!(
            max_age("public, max-age=120"),
            Some(Duration::from_secs(120))
        );
        assert_eq!(max_age("no-store"), None);
        assert_eq!(
            refresh_wait(&options, Some(Duration::from_secs(1))),
            options.min_refresh
        );
        assert_eq!(
            refresh_wait(&options, Some(Duration::from_secs(999_999))),
            options.max_refresh
        );
        assert_eq!(
            refresh_wait(&options, Some(Duration::from_secs(120))),
            Duration::from_secs(120)
        );
        assert_eq!(refresh_wait(&options, None), options.refresh_interval);
    }

    #[test]
    fn configured_algorithms_refuse_none_and_hmac() {
        let t = IdentityTemplate::new("spiffe://x.example/{sub}").unwrap();
        let c = IssuerConfig::new("https://issuer.example", "aud", t).unwrap();
        assert_eq!(
            c.clone().algorithms(&["none"]).unwrap_err(),
            OidcError::UnsignedToken
        );
        assert!(matches!(
            c.clone().algorithms(&["HS256"]),
            Err(OidcError::SymmetricAlgorithm { .. })
        ));
        assert!(matches!(
            c.clone().algorithms(&["XS1"]),
            Err(OidcError::UnsupportedAlgorithm { .. })
        ));
        assert!(matches!(
            c.clone().leeway(Duration::from_secs(301)),
            Err(OidcError::InvalidConfig { .. })
        ));
        assert!(c.algorithms(&["ES256", "EdDSA"]).is_ok());
    }

    #[test]
    fn unusable_configurations_refused() {
        let t = || IdentityTemplate::new("spiffe://x.example/{sub}").unwrap();
        assert!(matches!(
            IssuerConfig::new("http://issuer.example", "aud", t()),
            Err(OidcError::InvalidConfig { .. })
        ));
        assert!(matches!(
            IssuerConfig::new("https://issuer.example", "", t()),
            Err(OidcError::InvalidConfig { .. })
        ));
        let c = IssuerConfig::new("https://issuer.example", "aud", t()).unwrap();
        assert!(matches!(
            OidcValidator::new(vec![c.clone(), c], FetchOptions::default()),
            Err(OidcError::InvalidConfig { reason, .. }) if reason == "configured twice"
        ));
        assert!(matches!(
            OidcValidator::new(Vec::new(), FetchOptions::default()),
            Err(OidcError::InvalidConfig { .. })
        ));
    }

    #[test]
    fn time_claims_must_be_numbers() {
        let claims = serde_json::json!({"nbf": "soon", "iat": -5, "exp": 10});
        let claims = claims.as_object().unwrap();
        assert!(matches!(
            time_claim(claims, "nbf"),
            Err(OidcError::InvalidClaim { claim: "nbf", .. })
        ));
        assert!(matches!(
            time_claim(claims, "iat"),
            Err(OidcError::InvalidClaim { claim: "iat", .. })
        ));
        assert_eq!(time_claim(claims, "exp"), Ok(Some(10)));
        assert_eq!(time_claim(claims, "missing"), Ok(None));
    }

    #[test]
    fn jwks_parsing_refuses_symmetric_and_private_keys() {
        let url = "https://issuer.example/jwks";
        assert!(matches!(
            parse_jwks(url, br#"{"keys":[{"kty":"oct","k":"c2VjcmV0","kid":"a"}]}"#),
            Err(OidcError::SymmetricKey { .. })
        ));
        assert!(matches!(
            parse_jwks(url, br#"{"keys":{}}"#),
            Err(OidcError::MalformedDocument { .. })
        ));
        assert!(matches!(
            parse_jwks(
                url,
                br#"{"keys":[{"kty":"EC","crv":"P-256","kid":"a","x":"AA","y":"AA","d":"AA"}]}"#
            ),
            Err(OidcError::MalformedDocument { .. })
        ));
        assert_eq!(parse_jwks(url, br#"{"keys":[]}"#).map(|k| k.len()), Ok(0));
    }
}
