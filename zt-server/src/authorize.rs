//! [`AuthorizeLayer`]: per-request authorization for axum and tonic.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::SystemTime;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body::{Body, Frame, SizeHint};
use tower::{Layer, Service};
use zt_authz::policy::{self, PolicyEngine, Transport};
use zt_authz::{Authorizer, Identity, IdentityRole, Outcome};
use zt_core::user::UserContext;

use crate::jwt::VerifiedJwtSvid;
use crate::peer::VerifiedPeer;

/// A tower layer that authorizes every request against a policy before the
/// inner service sees it.
///
/// It reads the [`VerifiedPeer`] that [`ZtServer`](crate::ZtServer) put in
/// the request extensions and asks an [`Authorizer`] — revocation list,
/// policy, dry-run, audit — for a decision. When a
/// [`JwtAuthLayer`](crate::JwtAuthLayer) in front of it validated a
/// JWT-SVID, the caller is the JWT-SVID's subject; when an
/// `OidcAuthLayer` (feature `oidc`) verified an OIDC workload token, the
/// caller is the token's identity. Every identity on the
/// request — the mTLS peer (ID, leaf serial, certificate expiry), the
/// JWT-SVID subject (ID, token expiry), the OIDC token's identity (ID,
/// token expiry) and the actors of a user context —
/// is checked against the revocation list and the clock on every request,
/// not only at the handshake: a peer revoked or expired after it connected
/// is refused on its keep-alive connection whatever token it sends. A
/// validated user context
/// is passed to the policy (rules with `scopes`) and to the audit event
/// (user and actor chain). A [`policy::Context`] in the request extensions
/// (the claims of a token a layer in front verified) is passed to the
/// policy for rules with `when` conditions; without one, every context key
/// is absent. One layer serves axum and tonic:
/// it works on `http::Request<B>`.
///
/// | situation | HTTP | gRPC |
/// |---|---|---|
/// | allowed, or denied in dry-run mode | passed on | passed on |
/// | no verified peer | `401`, `{"error":"unauthenticated"}` | `UNAUTHENTICATED` |
/// | denied by policy or revoked | `403`, `{"error":"permission_denied"}` | `PERMISSION_DENIED` |
///
/// A request is gRPC when its `content-type` is `application/grpc` or
/// `application/grpc+…`; its path is then its gRPC method
/// (`/package.Service/Method`), which `grpc` rules match. The caller learns
/// nothing else: rule ids, policy text and reasons go to the audit log only.
/// Denied requests are refused before the body is read.
///
/// # axum
///
/// Two placements, which differ in what the rules see and in cost:
///
/// | placement | rules match | a path no route serves | per request |
/// |---|---|---|---|
/// | around the router: `AuthorizeLayer::layer(router)` | the raw path | decided like any other (`403` unless a rule lets it through to the router's `404`) | the layer's own work only |
/// | [`Router::route_layer`](https://docs.rs/axum/0.8/axum/struct.Router.html#method.route_layer) | the raw path and the route template (`/invoices/{id}`, axum's `MatchedPath`), also in audit records | `404`, not decided | also axum's wrapping of every route: about 0.2–0.35 µs more (`cargo bench --bench request`) |
///
/// Around the router, a caller learns nothing of which paths exist where
/// no rule admits it. Path patterns match raw paths (`/invoices/{id}`
/// matches `/invoices/7`), so most policies read the same either way; use
/// `route_layer` when audit records should name the route template (as
/// `zt audit suggest` generalises from it) or a rule names a template a
/// raw path cannot match.
///
/// ```no_run
/// # fn app(policy: zt_authz::policy::Policy) {
/// use axum::{Router, routing::get};
/// use tower::Layer as _;
/// use zt_server::AuthorizeLayer;
///
/// let router: Router = Router::new().route("/invoices/{id}", get(|| async { "invoice" }));
/// // Around the router: serve `app` with `ZtServer::serve`.
/// let app = AuthorizeLayer::from_policy(policy.clone()).layer(router.clone());
/// // Or after routing, with route templates:
/// let app: Router = router.route_layer(AuthorizeLayer::from_policy(policy));
/// # }
/// ```
///
/// # tonic
///
/// Wrap the `Routes`; the layer sees each call's method path, which
/// interceptors cannot, so rules can be per method:
///
/// ```no_run
/// # fn routes(routes: tonic::service::Routes, policy: zt_authz::policy::Policy) {
/// use tower::Layer as _;
/// use zt_server::AuthorizeLayer;
///
/// let service = AuthorizeLayer::from_policy(policy).layer(routes.prepare());
/// // server.serve(listener, service, shutdown)
/// # }
/// ```
#[derive(Clone)]
pub struct AuthorizeLayer {
    authorizer: Authorizer,
}

impl fmt::Debug for AuthorizeLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthorizeLayer")
            .field("authorizer", &self.authorizer)
            .finish()
    }
}

impl AuthorizeLayer {
    /// A layer deciding with `authorizer` (which holds the policy, the
    /// revocation list, the dry-run switch and the audit sink).
    pub fn new(authorizer: Authorizer) -> Self {
        Self { authorizer }
    }

    /// A layer enforcing `engine` with no revocation list, no dry run and
    /// audit through `tracing` only.
    pub fn from_policy(engine: impl PolicyEngine + 'static) -> Self {
        Self::new(Authorizer::builder(engine).build())
    }

    /// The authorizer.
    pub fn authorizer(&self) -> &Authorizer {
        &self.authorizer
    }
}

impl<S> Layer<S> for AuthorizeLayer {
    type Service = Authorize<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Authorize {
            inner,
            authorizer: self.authorizer.clone(),
        }
    }
}

/// The service [`AuthorizeLayer`] wraps around another.
#[derive(Clone)]
pub struct Authorize<S> {
    inner: S,
    authorizer: Authorizer,
}

impl<S> fmt::Debug for Authorize<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authorize")
            .field("authorizer", &self.authorizer)
            .finish_non_exhaustive()
    }
}

impl<S> Authorize<S> {
    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

/// `true` for `application/grpc` and `application/grpc+proto` (etc.).
pub(crate) fn is_grpc(headers: &http::HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            ct.strip_prefix("application/grpc")
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('+'))
        })
}

/// The identity and expiry of the OIDC workload token an
/// [`OidcAuthLayer`](crate::OidcAuthLayer) verified, if any.
#[cfg(feature = "oidc")]
fn oidc_caller(extensions: &http::Extensions) -> Option<(&zt_core::SpiffeId, SystemTime)> {
    crate::oidc::VerifiedOidcToken::from_extensions(extensions).map(|t| (t.identity(), t.expiry()))
}

#[cfg(not(feature = "oidc"))]
fn oidc_caller(_: &http::Extensions) -> Option<(&zt_core::SpiffeId, SystemTime)> {
    None
}

#[cfg(feature = "axum")]
fn matched_route(extensions: &http::Extensions) -> Option<&str> {
    extensions
        .get::<axum::extract::MatchedPath>()
        .map(axum::extract::MatchedPath::as_str)
}

#[cfg(not(feature = "axum"))]
fn matched_route(_: &http::Extensions) -> Option<&str> {
    None
}

impl<S, B, ResBody> Service<Request<B>> for Authorize<S>
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

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let grpc = is_grpc(req.headers());
        let outcome = {
            let extensions = req.extensions();
            let peer = VerifiedPeer::from_extensions(extensions);
            // Extensions holding nothing but the peer, as `ZtServer` alone
            // leaves them, hold none of the others either: `None`.
            let others = (extensions.len() > usize::from(peer.is_some())).then_some(extensions);
            let jwt = others.and_then(VerifiedJwtSvid::from_extensions);
            let user = others.and_then(|e| e.get::<UserContext>());
            let token = others.and_then(oidc_caller);
            // The caller is the JWT-SVID subject or the OIDC token's
            // identity when the request carried one, else the mTLS peer; a
            // request carrying both kinds of token has no single caller and
            // is refused as unauthenticated. Every identity on the request
            // is checked for revocation and expiry, so a revoked peer gets
            // nothing through with another workload's token.
            let caller = match (jwt, token) {
                (Some(jwt), None) => Some(jwt.subject()),
                (None, Some((id, _))) => Some(id),
                (None, None) => peer.map(VerifiedPeer::id),
                (Some(_), Some(_)) => None,
            };
            let peer_identity = peer
                .map(|p| Identity::peer(p.id(), p.serial(), p.not_after()).issued_by(p.issuer()));
            let jwt_identity = jwt.map(|j| {
                Identity::new(IdentityRole::JwtSubject, j.subject()).expiring(j.claims().expiry())
            });
            let token_identity = token
                .map(|(id, expiry)| Identity::new(IdentityRole::OidcToken, id).expiring(expiry));
            let path = req.uri().path();
            let mut request = policy::Request::new(caller, req.method().as_str(), path);
            if let Some(user) = user {
                request = request.with_user(user);
            }
            if let Some(txn) = others.and_then(|e| e.get::<zt_core::txn::TxnToken>()) {
                request = request.with_txn(txn.txn());
            }
            if let Some(route) = others.and_then(matched_route) {
                request = request.with_route(route);
            }
            if let Some(context) = others.and_then(|e| e.get::<policy::Context>()) {
                request = request.with_context(context);
            }
            if grpc {
                request = request.with_grpc_method(path);
            }
            if let Some(peer) = peer
                && let Some(posture) = peer.posture()
            {
                request = request.with_transport(
                    Transport::new(
                        posture.version(),
                        posture.cipher_suite(),
                        posture.kx_group_name(),
                        posture.is_post_quantum(),
                    )
                    .with_peer_not_after(peer.not_after()),
                );
            }
            let actors = user.map_or(&[][..], UserContext::actors);
            // Without a delegation chain (the common case) the identities
            // stay on the stack.
            match ([peer_identity, jwt_identity, token_identity], actors) {
                (
                    [Some(a), Some(b), None] | [Some(a), None, Some(b)] | [None, Some(a), Some(b)],
                    [],
                ) => self.authorizer.outcome(&request, &[a, b]),
                ([Some(a), None, None] | [None, Some(a), None] | [None, None, Some(a)], []) => {
                    self.authorizer.outcome(&request, &[a])
                }
                ([None, None, None], []) => self.authorizer.outcome(&request, &[]),
                (head, actors) => {
                    let expiry = user.map(UserContext::expiry);
                    let all: Vec<Identity<'_>> = head
                        .into_iter()
                        .flatten()
                        .chain(actors.iter().map(|actor| {
                            let actor = Identity::new(IdentityRole::Actor, actor);
                            match expiry {
                                Some(at) => actor.expiring(at),
                                None => actor,
                            }
                        }))
                        .collect();
                    self.authorizer.outcome(&request, &all)
                }
            }
        };
        if outcome.proceeds() {
            ResponseFuture::inner(self.inner.call(req))
        } else {
            ResponseFuture::denied(denial(grpc, &outcome))
        }
    }
}

/// The response to a refused request: no detail beyond the category.
fn denial(grpc: bool, outcome: &Outcome) -> Response<Bytes> {
    let unauthenticated = outcome.is_unauthenticated();
    let mut response = if grpc {
        // A trailers-only gRPC response: status in the headers, no body.
        let (code, message) = if unauthenticated {
            ("16", "unauthenticated")
        } else {
            ("7", "permission denied")
        };
        let mut response = Response::new(Bytes::new());
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc"),
        );
        headers.insert("grpc-status", HeaderValue::from_static(code));
        headers.insert("grpc-message", HeaderValue::from_static(message));
        response
    } else {
        let (status, body) = if unauthenticated {
            (
                StatusCode::UNAUTHORIZED,
                &b"{\"error\":\"unauthenticated\"}"[..],
            )
        } else {
            (
                StatusCode::FORBIDDEN,
                &b"{\"error\":\"permission_denied\"}"[..],
            )
        };
        let mut response = Response::new(Bytes::from_static(body));
        *response.status_mut() = status;
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        response
    };
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

pin_project_lite::pin_project! {
    /// The future of [`Authorize`]: the inner service's, or an immediate
    /// refusal.
    pub struct ResponseFuture<F> {
        #[pin]
        kind: FutureKind<F>,
    }
}

pin_project_lite::pin_project! {
    #[project = FutureKindProj]
    enum FutureKind<F> {
        Inner {
            #[pin]
            future: F,
        },
        Denied {
            response: Option<Response<Bytes>>,
        },
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn inner(future: F) -> Self {
        Self {
            kind: FutureKind::Inner { future },
        }
    }

    pub(crate) fn denied(response: Response<Bytes>) -> Self {
        Self {
            kind: FutureKind::Denied {
                response: Some(response),
            },
        }
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.kind {
            FutureKind::Inner { .. } => "inner",
            FutureKind::Denied { .. } => "denied",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}

impl<F, ResBody, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
{
    type Output = Result<Response<ResponseBody<ResBody>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            FutureKindProj::Inner { future } => future
                .poll(cx)
                .map_ok(|response| response.map(ResponseBody::inner)),
            FutureKindProj::Denied { response } => {
                // Polled again after completion: answer with an empty 403
                // rather than panic.
                let response = response.take().unwrap_or_else(|| {
                    let mut r = Response::new(Bytes::new());
                    *r.status_mut() = StatusCode::FORBIDDEN;
                    r
                });
                Poll::Ready(Ok(response.map(ResponseBody::denied)))
            }
        }
    }
}

pin_project_lite::pin_project! {
    /// The response body of [`Authorize`]: the inner service's, or the
    /// short body of a refusal.
    pub struct ResponseBody<B> {
        #[pin]
        kind: BodyKind<B>,
    }
}

pin_project_lite::pin_project! {
    #[project = BodyKindProj]
    enum BodyKind<B> {
        Inner {
            #[pin]
            body: B,
        },
        Denied {
            bytes: Option<Bytes>,
        },
    }
}

impl<B> ResponseBody<B> {
    pub(crate) fn inner(body: B) -> Self {
        Self {
            kind: BodyKind::Inner { body },
        }
    }

    pub(crate) fn denied(bytes: Bytes) -> Self {
        Self {
            kind: BodyKind::Denied {
                bytes: Some(bytes).filter(|b| !b.is_empty()),
            },
        }
    }
}

impl<B: fmt::Debug> fmt::Debug for ResponseBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            BodyKind::Inner { body } => f.debug_tuple("Inner").field(body).finish(),
            BodyKind::Denied { bytes } => f.debug_tuple("Denied").field(bytes).finish(),
        }
    }
}

impl<B> Body for ResponseBody<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        match self.project().kind.project() {
            BodyKindProj::Inner { body } => body.poll_frame(cx),
            BodyKindProj::Denied { bytes } => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            BodyKind::Inner { body } => body.is_end_stream(),
            BodyKind::Denied { bytes } => bytes.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            BodyKind::Inner { body } => body.size_hint(),
            BodyKind::Denied { bytes } => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
        }
    }
}
