//! [`JwtAuthLayer`]: JWT-SVID and user-context validation for axum and
//! tonic.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode, header};
use http_body::Body;
use tower::{Layer, Service};
use zt_core::SpiffeId;
use zt_core::jwt::{JwtError, JwtSvidCache, JwtSvidClaims, validate_jwt_svid};
use zt_core::revocation::Revocations;
use zt_core::source::{SourceError, SvidSource};
use zt_core::time::{SharedClock, Timestamp, system_clock};
use zt_core::txn::{TXN_TOKEN_HEADER, TxnToken, TxnTokenError, TxnTokenValidator};
use zt_core::user::{USER_CONTEXT_HEADER, UserContext, UserContextError, UserContextValidator};

use crate::authorize::{ResponseBody, ResponseFuture, is_grpc};
use crate::peer::VerifiedPeer;

/// Default clock leeway for `exp` and `nbf` of JWT-SVIDs.
pub const DEFAULT_JWT_LEEWAY: Duration = Duration::from_secs(30);

/// Why [`JwtAuthLayer`] refused a request. The caller only sees `401`; this
/// goes to the log.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum JwtAuthError {
    /// A JWT-SVID is required and the request has none.
    #[error("the request carries no JWT-SVID in `{header}`")]
    MissingJwtSvid {
        /// The header looked in.
        header: String,
    },
    /// The credential header is not `Bearer <token>` (or, for a custom
    /// header, not visible ASCII).
    #[error("the `{header}` header is not a bearer token")]
    MalformedHeader {
        /// The header.
        header: String,
    },
    /// The JWT-SVID breaks a SPIFFE rule.
    #[error("the JWT-SVID was rejected: {0}")]
    JwtSvid(#[from] JwtError),
    /// This service has no trust bundle to validate with (fail closed).
    #[error("no local trust bundle to validate the JWT-SVID with: {0}")]
    LocalSource(#[from] SourceError),
    /// Binding is on and the JWT-SVID's subject is not the mTLS peer.
    #[error(
        "the JWT-SVID subject `{subject}` is not the mTLS peer {}",
        match .peer { Some(p) => format!("`{p}`"), None => "(none)".to_owned() }
    )]
    NotBoundToPeer {
        /// The JWT-SVID's subject.
        subject: SpiffeId,
        /// The mTLS peer, if any.
        peer: Option<SpiffeId>,
    },
    /// The mTLS peer the request came over is revoked (by ID or leaf
    /// serial), whatever token it carries.
    #[error("the mTLS peer `{peer}` is revoked")]
    PeerRevoked {
        /// The peer.
        peer: SpiffeId,
    },
    /// The mTLS peer's certificate has expired since the handshake.
    #[error("the mTLS peer `{peer}`'s certificate expired at {expired_at}")]
    PeerExpired {
        /// The peer.
        peer: SpiffeId,
        /// When its certificate expired.
        expired_at: Timestamp,
    },
    /// The JWT-SVID's subject is revoked.
    #[error("the JWT-SVID subject `{subject}` is revoked")]
    Revoked {
        /// The subject.
        subject: SpiffeId,
    },
    /// A user context is required and the request has none.
    #[error("the request carries no user context in `{header}`")]
    MissingUserContext {
        /// The header looked in.
        header: String,
    },
    /// The user-context token was rejected.
    #[error("the user context was rejected: {0}")]
    UserContext(#[from] UserContextError),
    /// Actor binding is on, but the request has no authenticated caller to
    /// bind the user context to.
    #[error("a user context arrived without an authenticated caller to bind it to")]
    NoCallerForUserContext,
    /// A Txn-Token is required and the request has none.
    #[error("the request carries no Txn-Token in `{header}`")]
    MissingTxnToken {
        /// The header looked in.
        header: String,
    },
    /// The Txn-Token was rejected.
    #[error("the Txn-Token was rejected: {0}")]
    TxnToken(#[from] TxnTokenError),
    /// Binding is on, but the request has no authenticated caller to bind
    /// the Txn-Token to.
    #[error("a Txn-Token arrived without an authenticated caller to bind it to")]
    NoCallerForTxnToken,
}

impl JwtAuthError {
    /// The task ID of a refused task-scoped token, for the audit record.
    pub fn task_id(&self) -> Option<&str> {
        match self {
            Self::UserContext(UserContextError::Revoked { task_id, .. }) => task_id.as_deref(),
            _ => None,
        }
    }

    /// A short, stable name for logs and audit records, such as
    /// `jwt-svid:expired`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::MissingJwtSvid { .. } => "jwt-svid:missing",
            Self::MalformedHeader { .. } => "jwt-svid:malformed-header",
            Self::JwtSvid(e) => match e {
                JwtError::Malformed { .. } => "jwt-svid:malformed",
                JwtError::UnsupportedAlgorithm { .. } => "jwt-svid:unsupported-algorithm",
                JwtError::BadType { .. } => "jwt-svid:bad-typ",
                JwtError::MissingKeyId => "jwt-svid:missing-kid",
                JwtError::MissingSubject => "jwt-svid:missing-sub",
                JwtError::SubjectNotSpiffeId(_) => "jwt-svid:sub-not-spiffe-id",
                JwtError::UnknownTrustDomain { .. } => "jwt-svid:unknown-trust-domain",
                JwtError::UnknownKeyId { .. } => "jwt-svid:unknown-kid",
                JwtError::NoJwtBundle { .. } => "jwt-svid:no-jwt-bundle",
                JwtError::BadSignature { .. } => "jwt-svid:bad-signature",
                JwtError::MissingExpiry => "jwt-svid:missing-exp",
                JwtError::Expired { .. } => "jwt-svid:expired",
                JwtError::NotYetValid { .. } => "jwt-svid:not-yet-valid",
                JwtError::MissingAudience => "jwt-svid:missing-aud",
                JwtError::WrongAudience { .. } => "jwt-svid:wrong-aud",
                _ => "jwt-svid:invalid",
            },
            Self::LocalSource(_) => "jwt-svid:no-local-bundle",
            Self::NotBoundToPeer { .. } => "jwt-svid:not-bound-to-peer",
            Self::Revoked { .. } => "jwt-svid:revoked",
            Self::PeerRevoked { .. } => "peer:revoked",
            Self::PeerExpired { .. } => "peer:expired",
            Self::MissingUserContext { .. } => "user-context:missing",
            Self::UserContext(e) => e.kind(),
            Self::NoCallerForUserContext => "user-context:no-caller",
            Self::MissingTxnToken { .. } => "txn-token:missing",
            Self::TxnToken(e) => e.kind(),
            Self::NoCallerForTxnToken => "txn-token:no-caller",
        }
    }
}

/// A JWT-SVID that [`JwtAuthLayer`] validated, in the request extensions.
/// It has no public constructor. Cheap to clone.
#[derive(Clone, PartialEq)]
pub struct VerifiedJwtSvid {
    claims: Arc<JwtSvidClaims>,
}

impl VerifiedJwtSvid {
    /// The subject: the workload the token was issued to.
    pub fn subject(&self) -> &SpiffeId {
        self.claims.subject()
    }

    /// The validated claims.
    pub fn claims(&self) -> &JwtSvidClaims {
        &self.claims
    }

    /// Reads the JWT-SVID from request extensions.
    pub fn from_extensions(extensions: &http::Extensions) -> Option<&Self> {
        extensions.get::<Self>()
    }
}

impl fmt::Debug for VerifiedJwtSvid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("VerifiedJwtSvid")
            .field(&self.claims)
            .finish()
    }
}

/// What [`JwtAuthLayer::authenticate`] established about a request.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct Authenticated {
    /// The validated JWT-SVID, if the request carried one.
    pub jwt_svid: Option<VerifiedJwtSvid>,
    /// The validated user context, if the request carried one.
    pub user: Option<UserContext>,
    /// The validated Txn-Token, if the request carried one.
    pub txn: Option<TxnToken>,
}

struct TxnConfig {
    validator: TxnTokenValidator,
    header: HeaderName,
    required: bool,
    bind: bool,
}

struct UserConfig {
    validator: UserContextValidator,
    header: HeaderName,
    required: bool,
    bind_actor: bool,
}

struct Config {
    source: Arc<dyn SvidSource>,
    audience: String,
    header: HeaderName,
    require_jwt_svid: bool,
    bind_to_peer: bool,
    leeway: Duration,
    clock: SharedClock,
    revocations: Option<Revocations>,
    user: Option<UserConfig>,
    txn: Option<TxnConfig>,
    target: Arc<str>,
    cache: Option<Arc<JwtSvidCache>>,
}

/// A tower layer that validates the JWT-SVID and the user context of every
/// request before the inner service sees it.
///
/// - **JWT-SVID** (header `Authorization: Bearer <token>` by default): checked
///   by [`validate_jwt_svid`] against the bundles of this service's
///   [`SvidSource`] and the configured audience (allow-listed algorithms,
///   `kid` in the bundle of the subject's trust domain, `aud`, `exp` with
///   bounded leeway, `nbf`, `sub` a SPIFFE ID). Required by default. With
///   [`bind_to_peer`](JwtAuthBuilder::bind_to_peer), the subject must be
///   the mTLS peer. A revoked subject is refused, as a revoked peer is.
///   A token seen before is answered from a [`JwtSvidCache`] without a
///   second signature check (see [`token_cache`](JwtAuthBuilder::token_cache)).
/// - **User context** (header [`USER_CONTEXT_HEADER`]), if configured with
///   [`user_context`](JwtAuthBuilder::user_context): validated by a
///   [`UserContextValidator`]; by default its current actor must be the
///   authenticated caller (the JWT-SVID subject, else the mTLS peer).
///   A user context whose `jti` is revoked in the layer's
///   [`revocations`](JwtAuthBuilder::revocations) is refused (task
///   credentials, [`zt_core::task`]).
/// - **Transaction Token** (header [`TXN_TOKEN_HEADER`]), if configured
///   with [`txn_token`](JwtAuthBuilder::txn_token): validated by a
///   [`TxnTokenValidator`]; by default its requesting workload (`req_wl`)
///   must be the authenticated caller. Its `txn` goes into the audit
///   record.
///
/// On success the request gets a [`VerifiedJwtSvid`] and a [`UserContext`]
/// in its extensions ([`AuthorizeLayer`](crate::AuthorizeLayer) reads both;
/// handlers use the [`VerifiedUser`] extractor). On failure the caller gets
/// `401` (`UNAUTHENTICATED` for gRPC) with no detail; the reason is logged
/// as a `WARN` event with target `zt::audit` (`decision = "deny"`, `reason`
/// a [`JwtAuthError::kind`]). Tokens are never logged.
///
/// Put it outside [`AuthorizeLayer`](crate::AuthorizeLayer), so it runs
/// first:
///
/// ```no_run
/// # fn app(policy: zt_authz::policy::Policy, source: std::sync::Arc<dyn zt_core::source::SvidSource>,
/// #        users: zt_core::user::UserContextValidator) {
/// use axum::{Router, routing::get};
/// use zt_server::{AuthorizeLayer, JwtAuthLayer, VerifiedUser};
///
/// let app: Router = Router::new()
///     .route("/entries", get(|user: VerifiedUser| async move { user.subject().to_owned() }))
///     .route_layer(AuthorizeLayer::from_policy(policy))
///     .layer(
///         JwtAuthLayer::builder(source, "spiffe://example.org/ledger")
///             .bind_to_peer(true)
///             .user_context(users)
///             .build(),
///     );
/// # }
/// ```
#[derive(Clone)]
pub struct JwtAuthLayer {
    config: Arc<Config>,
}

impl fmt::Debug for JwtAuthLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &*self.config;
        f.debug_struct("JwtAuthLayer")
            .field("audience", &c.audience)
            .field("header", &c.header)
            .field("require_jwt_svid", &c.require_jwt_svid)
            .field("bind_to_peer", &c.bind_to_peer)
            .field("leeway", &c.leeway)
            .field(
                "user_context",
                &c.user.as_ref().map(|u| u.validator.issuer().to_owned()),
            )
            .finish_non_exhaustive()
    }
}

/// Configures a [`JwtAuthLayer`]; from [`JwtAuthLayer::builder`].
pub struct JwtAuthBuilder {
    config: Config,
}

impl fmt::Debug for JwtAuthBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtAuthBuilder")
            .field("audience", &self.config.audience)
            .finish_non_exhaustive()
    }
}

impl JwtAuthLayer {
    /// A builder validating JWT-SVIDs for `audience` (usually this
    /// service's SPIFFE ID) with the bundles of `source`.
    pub fn builder(source: Arc<dyn SvidSource>, audience: impl Into<String>) -> JwtAuthBuilder {
        JwtAuthBuilder {
            config: Config {
                source,
                audience: audience.into(),
                header: header::AUTHORIZATION,
                require_jwt_svid: true,
                bind_to_peer: true,
                leeway: DEFAULT_JWT_LEEWAY,
                clock: system_clock(),
                revocations: None,
                user: None,
                txn: None,
                target: Arc::from("-"),
                cache: Some(Arc::new(JwtSvidCache::default())),
            },
        }
    }

    /// Validates the credentials in `headers` of a request that came over
    /// a connection with `peer`, as the layer does for every request: the
    /// peer itself is refused if it is revoked (ID or leaf serial) or its
    /// certificate has expired since the handshake, then as
    /// [`authenticate`](Self::authenticate).
    ///
    /// # Errors
    ///
    /// The [`JwtAuthError`] for the first check that fails.
    pub fn authenticate_request(
        &self,
        headers: &HeaderMap,
        peer: Option<&VerifiedPeer>,
    ) -> Result<Authenticated, JwtAuthError> {
        let c = &*self.config;
        let now = c.clock.now();
        if let Some(peer) = peer {
            if c.revocations
                .as_ref()
                .is_some_and(|r| r.check(peer.id(), peer.serial()).is_some())
            {
                return Err(JwtAuthError::PeerRevoked {
                    peer: peer.id().clone(),
                });
            }
            if now > peer.not_after() {
                return Err(JwtAuthError::PeerExpired {
                    peer: peer.id().clone(),
                    expired_at: Timestamp(peer.not_after()),
                });
            }
        }
        self.credentials(headers, peer.map(VerifiedPeer::id), now)
    }

    /// Validates the credentials in `headers` of a request whose mTLS peer
    /// has the SPIFFE ID `peer`. A peer whose ID is revoked is refused; its
    /// serial and expiry are checked by
    /// [`authenticate_request`](Self::authenticate_request), which the
    /// layer calls.
    ///
    /// # Errors
    ///
    /// The [`JwtAuthError`] for the first check that fails.
    pub fn authenticate(
        &self,
        headers: &HeaderMap,
        peer: Option<&SpiffeId>,
    ) -> Result<Authenticated, JwtAuthError> {
        let c = &*self.config;
        if let (Some(peer), Some(revocations)) = (peer, &c.revocations)
            && revocations.current().is_id_revoked(peer)
        {
            return Err(JwtAuthError::PeerRevoked { peer: peer.clone() });
        }
        self.credentials(headers, peer, c.clock.now())
    }

    /// The tokens in `headers`, validated at `now`, of a request whose mTLS
    /// peer (`peer`) has been checked already.
    fn credentials(
        &self,
        headers: &HeaderMap,
        peer: Option<&SpiffeId>,
        now: SystemTime,
    ) -> Result<Authenticated, JwtAuthError> {
        let c = &*self.config;
        let mut out = Authenticated::default();
        match headers.get(&c.header) {
            Some(value) => {
                let malformed = || JwtAuthError::MalformedHeader {
                    header: c.header.to_string(),
                };
                let token = bearer_bytes(value, &c.header).ok_or_else(malformed)?;
                let snapshot = match c.source.current() {
                    Ok(snapshot) => snapshot,
                    // A malformed header is reported as such whatever the
                    // local state.
                    Err(error) => {
                        header_text(token).ok_or_else(malformed)?;
                        return Err(error.into());
                    }
                };
                let bundles = snapshot.bundles();
                // A token the cache holds is the exact bytes of one that
                // passed every check, so it is answered without reading it
                // as text; any other is checked in full.
                let cached = c
                    .cache
                    .as_ref()
                    .and_then(|cache| cache.cached(token, bundles, &c.audience, now, c.leeway));
                let result = match cached {
                    Some(claims) => Ok(claims),
                    None => {
                        let token = header_text(token).ok_or_else(malformed)?;
                        match &c.cache {
                            Some(cache) => {
                                cache.validate(token, bundles, &c.audience, now, c.leeway)
                            }
                            None => validate_jwt_svid(token, bundles, &c.audience, now, c.leeway)
                                .map(Arc::new),
                        }
                    }
                };
                let claims = zt_core::metrics::jwt_validation(result)?;
                let subject = claims.subject();
                if c.bind_to_peer && peer != Some(subject) {
                    return Err(JwtAuthError::NotBoundToPeer {
                        subject: subject.clone(),
                        peer: peer.cloned(),
                    });
                }
                if c.revocations
                    .as_ref()
                    .is_some_and(|r| r.check(subject, &[]).is_some())
                {
                    return Err(JwtAuthError::Revoked {
                        subject: subject.clone(),
                    });
                }
                out.jwt_svid = Some(VerifiedJwtSvid { claims });
            }
            None if c.require_jwt_svid => {
                return Err(JwtAuthError::MissingJwtSvid {
                    header: c.header.to_string(),
                });
            }
            None => {}
        }
        if let Some(user) = &c.user {
            match headers.get(&user.header) {
                Some(value) => {
                    let token = value
                        .to_str()
                        .map_err(|_| JwtAuthError::MalformedHeader {
                            header: user.header.to_string(),
                        })?
                        .trim();
                    let caller = out.jwt_svid.as_ref().map(VerifiedJwtSvid::subject).or(peer);
                    let context = if user.bind_actor {
                        let caller = caller.ok_or(JwtAuthError::NoCallerForUserContext)?;
                        user.validator.validate_for_caller(token, now, caller)?
                    } else {
                        user.validator.validate(token, now)?
                    };
                    if let (Some(token_id), Some(revocations)) =
                        (context.token_id(), &c.revocations)
                        && revocations.is_token_revoked(token_id)
                    {
                        return Err(UserContextError::Revoked {
                            token_id: token_id.to_owned(),
                            task_id: context.task_id().map(str::to_owned),
                        }
                        .into());
                    }
                    out.user = Some(context);
                }
                None if user.required => {
                    return Err(JwtAuthError::MissingUserContext {
                        header: user.header.to_string(),
                    });
                }
                None => {}
            }
        }
        if let Some(txn) = &c.txn {
            match headers.get(&txn.header) {
                Some(value) => {
                    let token = value
                        .to_str()
                        .map_err(|_| JwtAuthError::MalformedHeader {
                            header: txn.header.to_string(),
                        })?
                        .trim();
                    let caller = out.jwt_svid.as_ref().map(VerifiedJwtSvid::subject).or(peer);
                    let verified = if txn.bind {
                        let caller = caller.ok_or(JwtAuthError::NoCallerForTxnToken)?;
                        txn.validator.validate_for_caller(token, now, caller)?
                    } else {
                        txn.validator.validate(token, now)?
                    };
                    out.txn = Some(verified);
                }
                None if txn.required => {
                    return Err(JwtAuthError::MissingTxnToken {
                        header: txn.header.to_string(),
                    });
                }
                None => {}
            }
        }
        Ok(out)
    }
}

/// The token of `Authorization: Bearer <token>`, or the whole value of a
/// custom header; `None` if the value is not that (or empty).
#[cfg(feature = "oidc")]
pub(crate) fn bearer_token<'a>(value: &'a HeaderValue, name: &HeaderName) -> Option<&'a str> {
    bearer_bytes(value, name).and_then(header_text)
}

/// The token bytes of `Authorization: Bearer <token>` (the scheme in any
/// case, spaces around the token ignored), or the whole value of a custom
/// header, trimmed; `None` if the value is not that (or empty). The token's
/// own bytes are not checked: [`header_text`] does that.
fn bearer_bytes<'a>(value: &'a HeaderValue, name: &HeaderName) -> Option<&'a [u8]> {
    let text = value.as_bytes().trim_ascii();
    let token = if *name == header::AUTHORIZATION {
        let space = text.iter().position(|&b| b == b' ')?;
        let (scheme, rest) = text.split_at(space);
        if !scheme.eq_ignore_ascii_case(b"bearer") {
            return None;
        }
        rest.trim_ascii()
    } else {
        text
    };
    (!token.is_empty()).then_some(token)
}

/// `bytes` as text if they are what a header value may hold as text:
/// visible ASCII, spaces and tabs (as [`HeaderValue::to_str`] requires).
fn header_text(bytes: &[u8]) -> Option<&str> {
    bytes
        .iter()
        .all(|&b| b == b'\t' || (b' '..=b'~').contains(&b))
        .then(|| std::str::from_utf8(bytes).ok())
        .flatten()
}

impl JwtAuthBuilder {
    /// Reads the JWT-SVID from `name` instead of `Authorization`. A custom
    /// header holds the bare token, without `Bearer`.
    #[must_use]
    pub fn header(mut self, name: HeaderName) -> Self {
        self.config.header = name;
        self
    }

    /// Whether every request must carry a JWT-SVID (default `true`). When
    /// `false`, a request without one proceeds on its mTLS identity; one
    /// that carries a JWT-SVID must still carry a valid one.
    #[must_use]
    pub fn require_jwt_svid(mut self, required: bool) -> Self {
        self.config.require_jwt_svid = required;
        self
    }

    /// Whether the JWT-SVID's subject must equal the mTLS peer's SPIFFE ID
    /// (default `true`).
    ///
    /// Bound, a JWT-SVID is only accepted from the workload it was issued
    /// to: a token stolen or replayed by another workload is refused, since
    /// the thief would also need the subject's mTLS key. Turn it off only
    /// for a peer that forwards tokens it did not receive for itself (a
    /// gateway or proxy passing its callers' JWT-SVIDs on); the peer is
    /// then still checked for revocation and expiry on every request, but
    /// any peer holding a valid token for this audience speaks as its
    /// subject.
    #[must_use]
    pub fn bind_to_peer(mut self, bind: bool) -> Self {
        self.config.bind_to_peer = bind;
        self
    }

    /// Clock leeway for `exp` and `nbf` (default [`DEFAULT_JWT_LEEWAY`]),
    /// capped at [`zt_core::jwt::MAX_LEEWAY`].
    #[must_use]
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.config.leeway = leeway.min(zt_core::jwt::MAX_LEEWAY);
        self
    }

    /// The clock expiry is checked with. Default: system.
    #[must_use]
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.config.clock = clock;
        self
    }

    /// Refuses JWT-SVIDs whose subject is on `revocations`, and user-context
    /// tokens whose `jti` is revoked there
    /// ([`Revocations::revoke_token_id`]).
    #[must_use]
    pub fn revocations(mut self, revocations: Revocations) -> Self {
        self.config.revocations = Some(revocations);
        self
    }

    /// Validates Transaction Tokens (header [`TXN_TOKEN_HEADER`],
    /// [`zt_core::txn`]) with `validator`, binding each to its caller: the
    /// token's requesting workload (`req_wl`) must be the JWT-SVID subject,
    /// else the mTLS peer. A request without one proceeds without it unless
    /// [`require_txn_token`](Self::require_txn_token). The verified
    /// [`TxnToken`] goes into the request extensions and its `txn` into
    /// the audit record.
    #[must_use]
    pub fn txn_token(mut self, validator: TxnTokenValidator) -> Self {
        self.config.txn = Some(TxnConfig {
            validator,
            header: HeaderName::from_static(TXN_TOKEN_HEADER),
            required: false,
            bind: true,
        });
        self
    }

    /// Refuses requests without a Txn-Token (`401`). Needs
    /// [`txn_token`](Self::txn_token).
    #[must_use]
    pub fn require_txn_token(mut self, required: bool) -> Self {
        if let Some(txn) = &mut self.config.txn {
            txn.required = required;
        }
        self
    }

    /// Whether the Txn-Token's `req_wl` must be the authenticated caller
    /// (default `true`). Turn it off only where tokens are forwarded
    /// unchanged through the call chain. Needs [`txn_token`](Self::txn_token).
    #[must_use]
    pub fn bind_txn_token_to_caller(mut self, bind: bool) -> Self {
        if let Some(txn) = &mut self.config.txn {
            txn.bind = bind;
        }
        self
    }

    /// Validates user-context tokens (header [`USER_CONTEXT_HEADER`]) with
    /// `validator`, binding each to its caller. A request without one
    /// proceeds without a user context unless
    /// [`require_user_context`](Self::require_user_context).
    #[must_use]
    pub fn user_context(mut self, validator: UserContextValidator) -> Self {
        self.config.user = Some(UserConfig {
            validator,
            header: HeaderName::from_static(USER_CONTEXT_HEADER),
            required: false,
            bind_actor: true,
        });
        self
    }

    /// Reads the user context from `name` instead of
    /// [`USER_CONTEXT_HEADER`]. No effect without
    /// [`user_context`](Self::user_context).
    #[must_use]
    pub fn user_context_header(mut self, name: HeaderName) -> Self {
        if let Some(user) = &mut self.config.user {
            user.header = name;
        }
        self
    }

    /// Whether every request must carry a user context (default `false`).
    /// No effect without [`user_context`](Self::user_context).
    #[must_use]
    pub fn require_user_context(mut self, required: bool) -> Self {
        if let Some(user) = &mut self.config.user {
            user.required = required;
        }
        self
    }

    /// Whether the user context's current actor must be the authenticated
    /// caller (default `true`). Turning it off accepts a user context that
    /// any workload holding it presents. No effect without
    /// [`user_context`](Self::user_context).
    #[must_use]
    pub fn bind_user_context_to_caller(mut self, bind: bool) -> Self {
        if let Some(user) = &mut self.config.user {
            user.bind_actor = bind;
        }
        self
    }

    /// Where validated JWT-SVIDs are remembered, so a caller that reuses its
    /// token pays for one signature check rather than one per request (see
    /// [`JwtSvidCache`] for what a cached answer still checks: the key in
    /// the current bundle, expiry, not-before and audience, every time).
    /// Default: a cache of [`zt_core::jwt::cache::DEFAULT_CAPACITY`] tokens
    /// per layer. `None` validates every token in full; pass one cache to
    /// several layers to share it.
    #[must_use]
    pub fn token_cache(mut self, cache: Option<Arc<JwtSvidCache>>) -> Self {
        self.config.cache = cache;
        self
    }

    /// Names the service in log events. Default: `-`.
    #[must_use]
    pub fn target(mut self, name: impl AsRef<str>) -> Self {
        self.config.target = Arc::from(name.as_ref());
        self
    }

    /// Builds the layer.
    pub fn build(self) -> JwtAuthLayer {
        JwtAuthLayer {
            config: Arc::new(self.config),
        }
    }
}

impl<S> Layer<S> for JwtAuthLayer {
    type Service = JwtAuth<S>;

    fn layer(&self, inner: S) -> Self::Service {
        JwtAuth {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service [`JwtAuthLayer`] wraps around another.
#[derive(Clone)]
pub struct JwtAuth<S> {
    inner: S,
    layer: JwtAuthLayer,
}

impl<S> fmt::Debug for JwtAuth<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtAuth")
            .field("layer", &self.layer)
            .finish_non_exhaustive()
    }
}

impl<S> JwtAuth<S> {
    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S, B, ResBody> Service<Request<B>> for JwtAuth<S>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
    ResBody: Body<Data = Bytes>,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let verified = VerifiedPeer::from_extensions(req.extensions());
        let peer = verified.map(VerifiedPeer::id);
        match self.layer.authenticate_request(req.headers(), verified) {
            Ok(found) => {
                if let Some(jwt) = found.jwt_svid {
                    req.extensions_mut().insert(jwt);
                }
                if let Some(user) = found.user {
                    req.extensions_mut().insert(user);
                }
                if let Some(txn) = found.txn {
                    req.extensions_mut().insert(txn);
                }
                ResponseFuture::inner(self.inner.call(req))
            }
            Err(error) => {
                tracing::warn!(
                    target: "zt::audit",
                    caller = %peer.map_or_else(|| "-".to_owned(), ToString::to_string),
                    target_service = &*self.layer.config.target,
                    method = req.method().as_str(),
                    path = req.uri().path(),
                    decision = "deny",
                    reason = error.kind(),
                    task = error.task_id().unwrap_or("-"),
                    detail = %error,
                    "request credentials rejected"
                );
                ResponseFuture::denied(unauthenticated(is_grpc(req.headers())))
            }
        }
    }
}

/// `401` (or gRPC `UNAUTHENTICATED`) with no detail.
pub(crate) fn unauthenticated(grpc: bool) -> Response<Bytes> {
    let mut response = if grpc {
        let mut response = Response::new(Bytes::new());
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc"),
        );
        headers.insert("grpc-status", HeaderValue::from_static("16"));
        headers.insert("grpc-message", HeaderValue::from_static("unauthenticated"));
        response
    } else {
        let mut response = Response::new(Bytes::from_static(b"{\"error\":\"unauthenticated\"}"));
        *response.status_mut() = StatusCode::UNAUTHORIZED;
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        response
    };
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The verified user context of a request, as an axum extractor (and a
/// wrapper handlers can hold). Dereferences to [`UserContext`].
///
/// Rejects with `401` when the request has no verified user context; use
/// `Option<VerifiedUser>` where one is optional.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedUser(pub UserContext);

impl std::ops::Deref for VerifiedUser {
    type Target = UserContext;

    fn deref(&self) -> &UserContext {
        &self.0
    }
}

/// The rejection of the [`VerifiedUser`] extractor: `401`, no detail.
#[derive(Debug, Clone, Copy, Default)]
pub struct MissingUserContext;

impl fmt::Display for MissingUserContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("no verified user context on this request")
    }
}

impl std::error::Error for MissingUserContext {}

#[cfg(feature = "axum")]
mod axum_impl {
    use axum::extract::{FromRequestParts, OptionalFromRequestParts};
    use axum::http::StatusCode;
    use axum::http::request::Parts;
    use axum::response::{IntoResponse, Response};
    use zt_core::user::UserContext;

    use super::{MissingUserContext, VerifiedJwtSvid, VerifiedUser};
    use crate::peer::MissingPeer;

    impl IntoResponse for MissingUserContext {
        fn into_response(self) -> Response {
            (StatusCode::UNAUTHORIZED, "unauthenticated").into_response()
        }
    }

    impl<S: Send + Sync> FromRequestParts<S> for VerifiedUser {
        type Rejection = MissingUserContext;

        async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
            parts
                .extensions
                .get::<UserContext>()
                .cloned()
                .map(VerifiedUser)
                .ok_or(MissingUserContext)
        }
    }

    impl<S: Send + Sync> OptionalFromRequestParts<S> for VerifiedUser {
        type Rejection = std::convert::Infallible;

        async fn from_request_parts(
            parts: &mut Parts,
            _: &S,
        ) -> Result<Option<Self>, Self::Rejection> {
            Ok(parts
                .extensions
                .get::<UserContext>()
                .cloned()
                .map(VerifiedUser))
        }
    }

    impl<S: Send + Sync> FromRequestParts<S> for VerifiedJwtSvid {
        type Rejection = MissingPeer;

        async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
            parts.extensions.get::<Self>().cloned().ok_or(MissingPeer)
        }
    }

    impl<S: Send + Sync> OptionalFromRequestParts<S> for VerifiedJwtSvid {
        type Rejection = std::convert::Infallible;

        async fn from_request_parts(
            parts: &mut Parts,
            _: &S,
        ) -> Result<Option<Self>, Self::Rejection> {
            Ok(parts.extensions.get::<Self>().cloned())
        }
    }
}
