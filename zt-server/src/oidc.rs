//! [`OidcAuthLayer`]: OIDC workload tokens (a CI job's, a Kubernetes
//! service account's) as the caller of a request.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, Request, Response, header};
use http_body::Body;
use serde_json::{Map, Value};
use tower::{Layer, Service};
use zt_authz::policy;
use zt_core::SpiffeId;
use zt_core::revocation::Revocations;
use zt_core::time::{SharedClock, Timestamp, system_clock};
use zt_oidc::{OidcError, OidcValidator, VerifiedWorkloadToken};

use crate::authorize::{ResponseBody, is_grpc};
use crate::jwt::{bearer_token, unauthenticated};
use crate::peer::VerifiedPeer;

/// Default bound on validating one token, key fetches included. The
/// validator bounds each fetch by its own timeout; this bounds the whole
/// check, so a request never waits longer whatever the issuer does.
pub const DEFAULT_OIDC_VALIDATION_TIMEOUT: Duration = Duration::from_secs(10);

/// Why [`OidcAuthLayer`] refused a request. The caller only sees `401`
/// (`UNAUTHENTICATED`); this goes to the audit log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OidcAuthError {
    /// A token is required and the request has none.
    #[error("the request carries no OIDC token in `{header}`")]
    MissingToken {
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
    /// The token was refused by the validator (issuer, signature, claims,
    /// keys).
    #[error("the OIDC token was rejected: {0}")]
    Token(#[from] OidcError),
    /// Validation did not finish within the layer's bound.
    #[error("the OIDC token could not be validated within {after:?}")]
    Timeout {
        /// The bound.
        after: Duration,
    },
    /// The token's `jti` is on the revocation list.
    #[error("the OIDC token `{token_id}` of `{identity}` is revoked")]
    TokenRevoked {
        /// The token's `jti`.
        token_id: String,
        /// The identity it was issued for.
        identity: SpiffeId,
    },
    /// The identity made from the token's claims is revoked.
    #[error("the OIDC identity `{identity}` is revoked")]
    IdentityRevoked {
        /// The identity.
        identity: SpiffeId,
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
}

impl OidcAuthError {
    /// A short, stable name for logs and audit records, such as
    /// `oidc:missing` or `oidc:expired` (the validator's
    /// [`OidcError::kind`] for a refused token).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::MissingToken { .. } => "oidc:missing",
            Self::MalformedHeader { .. } => "oidc:malformed-header",
            Self::Token(e) => e.kind(),
            Self::Timeout { .. } => "oidc:timeout",
            Self::TokenRevoked { .. } => "oidc:token-revoked",
            Self::IdentityRevoked { .. } => "oidc:identity-revoked",
            Self::PeerRevoked { .. } => "peer:revoked",
            Self::PeerExpired { .. } => "peer:expired",
        }
    }
}

/// An OIDC workload token that [`OidcAuthLayer`] verified, in the request
/// extensions. [`AuthorizeLayer`](crate::AuthorizeLayer) takes its
/// [`identity`](Self::identity) as the caller. It has no public
/// constructor. Cheap to clone.
#[derive(Clone, PartialEq)]
pub struct VerifiedOidcToken {
    token: Arc<VerifiedWorkloadToken>,
}

impl VerifiedOidcToken {
    /// The SPIFFE ID the issuer's identity template made from the claims:
    /// the caller policy names.
    pub fn identity(&self) -> &SpiffeId {
        self.token.identity()
    }

    /// The issuer (`iss`).
    pub fn issuer(&self) -> &str {
        self.token.issuer()
    }

    /// The subject (`sub`; empty if the token has none).
    pub fn subject(&self) -> &str {
        self.token.subject()
    }

    /// When the token expires (`exp`).
    pub fn expiry(&self) -> SystemTime {
        self.token.expiry()
    }

    /// The token id (`jti`), if it has one.
    pub fn token_id(&self) -> Option<&str> {
        token_id(self.token.claims())
    }

    /// All verified claims.
    pub fn claims(&self) -> &Map<String, Value> {
        self.token.claims()
    }

    /// The verified token.
    pub fn token(&self) -> &VerifiedWorkloadToken {
        &self.token
    }

    /// Reads the token from request extensions.
    pub fn from_extensions(extensions: &http::Extensions) -> Option<&Self> {
        extensions.get::<Self>()
    }
}

impl fmt::Debug for VerifiedOidcToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("VerifiedOidcToken")
            .field(&self.token)
            .finish()
    }
}

fn token_id(claims: &Map<String, Value>) -> Option<&str> {
    claims.get("jti").and_then(Value::as_str)
}

struct Config {
    validator: OidcValidator,
    header: HeaderName,
    require_token: bool,
    revocations: Option<Revocations>,
    clock: SharedClock,
    timeout: Duration,
    target: Arc<str>,
}

/// A tower layer that verifies the OIDC workload token of every request
/// and makes its identity the request's caller.
///
/// The token is read from `Authorization: Bearer <token>` (or a custom
/// header, [`header`](OidcAuthBuilder::header)) and checked by an
/// [`OidcValidator`]: issuer allow-list, signature with the issuer's
/// published keys, `aud`, `exp`, `nbf`, `iat`, and the identity template.
/// Validation is asynchronous and bounded
/// ([`validation_timeout`](OidcAuthBuilder::validation_timeout)): a slow
/// issuer delays a request at most that long, then the request is refused.
/// With [`revocations`](OidcAuthBuilder::revocations), a token whose `jti`
/// is revoked ([`Revocations::revoke_token_id`]) or whose identity is
/// revoked ([`Revocations::revoke_id`]) is refused, and so is an mTLS peer
/// that is revoked or whose certificate expired since the handshake.
///
/// On success the request gets, in its extensions, a
/// [`VerifiedOidcToken`] — which [`AuthorizeLayer`](crate::AuthorizeLayer)
/// takes as the caller, so ordinary `callers` patterns name OIDC callers —
/// and a [`policy::Context`] of the token's claims
/// ([`policy::Context::from_claims`]), so rules' `when` conditions can
/// require `repository`, `ref`, `environment`, `kubernetes.io.namespace`
/// and the like. On failure the caller gets `401` (`UNAUTHENTICATED` for
/// gRPC) with no detail; the reason is a `WARN` event with target
/// `zt::audit` (`decision = "deny"`, `reason` an [`OidcAuthError::kind`],
/// `detail`). Tokens are never logged.
///
/// A request that came over mutual TLS and carries a valid token is the
/// token's caller; the peer is still checked for revocation and expiry,
/// here and by `AuthorizeLayer`. With
/// [`require_token(false)`](OidcAuthBuilder::require_token), a request
/// with an mTLS peer and no token proceeds as the peer; one without a peer
/// is always refused without a valid token.
///
/// Put it outside [`AuthorizeLayer`](crate::AuthorizeLayer), so it runs
/// first. For callers that hold no SVID at all (a CI job), give the layer
/// to [`ServerBuilder::token_callers`](crate::ServerBuilder::token_callers).
///
/// ```no_run
/// # fn app(policy: zt_authz::policy::Policy, validator: zt_oidc::OidcValidator) {
/// use axum::{Router, routing::post};
/// use zt_server::{AuthorizeLayer, OidcAuthLayer};
///
/// let app: Router = Router::new()
///     .route("/deploy", post(|| async { "deploying" }))
///     .route_layer(AuthorizeLayer::from_policy(policy))
///     .route_layer(OidcAuthLayer::builder(validator).target("deploy-gate").build());
/// # }
/// ```
#[derive(Clone)]
pub struct OidcAuthLayer {
    config: Arc<Config>,
}

impl fmt::Debug for OidcAuthLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &*self.config;
        f.debug_struct("OidcAuthLayer")
            .field("validator", &c.validator)
            .field("header", &c.header)
            .field("require_token", &c.require_token)
            .field("revocations", &c.revocations.is_some())
            .field("timeout", &c.timeout)
            .finish_non_exhaustive()
    }
}

/// Configures an [`OidcAuthLayer`]; from [`OidcAuthLayer::builder`].
pub struct OidcAuthBuilder {
    config: Config,
}

impl fmt::Debug for OidcAuthBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OidcAuthBuilder")
            .field("validator", &self.config.validator)
            .finish_non_exhaustive()
    }
}

impl OidcAuthLayer {
    /// A builder verifying tokens with `validator` (its issuers, audiences
    /// and identity templates). Start the validator's background refresh
    /// ([`OidcValidator::spawn_refresh`]) so requests seldom wait for keys.
    pub fn builder(validator: OidcValidator) -> OidcAuthBuilder {
        OidcAuthBuilder {
            config: Config {
                validator,
                header: header::AUTHORIZATION,
                require_token: true,
                revocations: None,
                clock: system_clock(),
                timeout: DEFAULT_OIDC_VALIDATION_TIMEOUT,
                target: Arc::from("-"),
            },
        }
    }

    /// Whether requests without an mTLS peer or token are refused for lack
    /// of a token (always, for requests without an mTLS peer).
    pub fn requires_token(&self) -> bool {
        self.config.require_token
    }

    /// Verifies the token in `headers` of a request that came over a
    /// connection with `peer` (`None`: no client certificate), as the
    /// layer does for every request. `Ok(None)`: the request carries no
    /// token, has an mTLS peer, and the token is not required.
    ///
    /// # Errors
    ///
    /// The [`OidcAuthError`] for the first check that fails.
    pub async fn authenticate(
        &self,
        headers: &HeaderMap,
        peer: Option<&VerifiedPeer>,
    ) -> Result<Option<VerifiedOidcToken>, OidcAuthError> {
        let c = &*self.config;
        if let Some(peer) = peer {
            if c.revocations
                .as_ref()
                .is_some_and(|r| r.check(peer.id(), peer.serial()).is_some())
            {
                return Err(OidcAuthError::PeerRevoked {
                    peer: peer.id().clone(),
                });
            }
            if c.clock.now() > peer.not_after() {
                return Err(OidcAuthError::PeerExpired {
                    peer: peer.id().clone(),
                    expired_at: Timestamp(peer.not_after()),
                });
            }
        }
        let Some(value) = headers.get(&c.header) else {
            return if peer.is_some() && !c.require_token {
                Ok(None)
            } else {
                Err(OidcAuthError::MissingToken {
                    header: c.header.to_string(),
                })
            };
        };
        let token =
            bearer_token(value, &c.header).ok_or_else(|| OidcAuthError::MalformedHeader {
                header: c.header.to_string(),
            })?;
        let verified = tokio::time::timeout(c.timeout, c.validator.verify(token))
            .await
            .map_err(|_| OidcAuthError::Timeout { after: c.timeout })??;
        if let Some(revocations) = &c.revocations {
            if let Some(jti) = token_id(verified.claims())
                && revocations.is_token_revoked(jti)
            {
                return Err(OidcAuthError::TokenRevoked {
                    token_id: jti.to_owned(),
                    identity: verified.identity().clone(),
                });
            }
            if revocations.current().is_id_revoked(verified.identity()) {
                return Err(OidcAuthError::IdentityRevoked {
                    identity: verified.identity().clone(),
                });
            }
        }
        Ok(Some(VerifiedOidcToken {
            token: Arc::new(verified),
        }))
    }

    /// Authenticates `req` and, on success, puts the verified token and
    /// its claims in its extensions. On failure, records the refusal and
    /// returns the response to send.
    pub(crate) async fn admit<B>(&self, req: &mut Request<B>) -> Result<(), Response<Bytes>> {
        let peer = VerifiedPeer::from_extensions(req.extensions()).cloned();
        match self.authenticate(req.headers(), peer.as_ref()).await {
            Ok(Some(token)) => {
                let context = policy::Context::from_claims(token.claims());
                req.extensions_mut().insert(context);
                req.extensions_mut().insert(token);
                Ok(())
            }
            Ok(None) => Ok(()),
            Err(error) => {
                tracing::warn!(
                    target: "zt::audit",
                    caller = %peer.map_or_else(|| "-".to_owned(), |p| p.id().to_string()),
                    target_service = &*self.config.target,
                    method = req.method().as_str(),
                    path = req.uri().path(),
                    decision = "deny",
                    reason = error.kind(),
                    detail = %error,
                    "OIDC token rejected"
                );
                Err(unauthenticated(is_grpc(req.headers())))
            }
        }
    }
}

impl OidcAuthBuilder {
    /// Reads the token from `name` instead of `Authorization`. A custom
    /// header holds the bare token, without `Bearer`.
    #[must_use]
    pub fn header(mut self, name: HeaderName) -> Self {
        self.config.header = name;
        self
    }

    /// Whether a request with an mTLS peer must carry a token (default
    /// `true`). When `false`, such a request without a token proceeds as
    /// its peer; one that carries a token must carry a valid one. A
    /// request without an mTLS peer always needs a valid token.
    #[must_use]
    pub fn require_token(mut self, required: bool) -> Self {
        self.config.require_token = required;
        self
    }

    /// Refuses tokens whose `jti` is revoked
    /// ([`Revocations::revoke_token_id`]), tokens whose identity is
    /// revoked, and revoked mTLS peers.
    #[must_use]
    pub fn revocations(mut self, revocations: Revocations) -> Self {
        self.config.revocations = Some(revocations);
        self
    }

    /// The clock an mTLS peer's certificate expiry is checked with
    /// (token times are checked on the validator's clock). Default: system.
    #[must_use]
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.config.clock = clock;
        self
    }

    /// Bound on validating one token, key fetches included (default
    /// [`DEFAULT_OIDC_VALIDATION_TIMEOUT`]); past it the request is refused
    /// ([`OidcAuthError::Timeout`]).
    #[must_use]
    pub fn validation_timeout(mut self, timeout: Duration) -> Self {
        self.config.timeout = timeout;
        self
    }

    /// Names the service in audit events. Default: `-`.
    #[must_use]
    pub fn target(mut self, name: impl AsRef<str>) -> Self {
        self.config.target = Arc::from(name.as_ref());
        self
    }

    /// Builds the layer.
    pub fn build(self) -> OidcAuthLayer {
        OidcAuthLayer {
            config: Arc::new(self.config),
        }
    }
}

impl<S> Layer<S> for OidcAuthLayer {
    type Service = OidcAuth<S>;

    fn layer(&self, inner: S) -> Self::Service {
        OidcAuth {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service [`OidcAuthLayer`] wraps around another.
#[derive(Clone)]
pub struct OidcAuth<S> {
    inner: S,
    layer: OidcAuthLayer,
}

impl<S> fmt::Debug for OidcAuth<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OidcAuth")
            .field("layer", &self.layer)
            .finish_non_exhaustive()
    }
}

impl<S> OidcAuth<S> {
    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

/// The future of [`OidcAuth`]: token validation, then the inner service's
/// response or a refusal.
pub type OidcAuthFuture<ResBody, E> =
    Pin<Box<dyn Future<Output = Result<Response<ResponseBody<ResBody>>, E>> + Send>>;

impl<S, B, ResBody> Service<Request<B>> for OidcAuth<S>
where
    S: Service<Request<B>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
    ResBody: Body<Data = Bytes>,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = OidcAuthFuture<ResBody, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        // The service that was polled ready serves this request; its clone
        // stays for the next.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let layer = self.layer.clone();
        Box::pin(async move {
            match layer.admit(&mut req).await {
                Ok(()) => inner
                    .call(req)
                    .await
                    .map(|response| response.map(ResponseBody::inner)),
                Err(denied) => Ok(denied.map(ResponseBody::denied)),
            }
        })
    }
}
