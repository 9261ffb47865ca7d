//! Mutual-TLS servers for zero-trust service calls.
//!
//! A [`ZtServer`] presents the workload's X.509-SVID from any
//! [`SvidSource`](zt_core::source::SvidSource), requires a client
//! certificate on every connection, and verifies it by the SPIFFE rules
//! against the bundle of the client's own trust domain. Each accepted
//! connection yields a [`VerifiedPeer`] — SPIFFE ID, trust domain, leaf
//! serial, expiry — that is placed in the extensions of every request on
//! that connection. Identity is verified during the handshake, and requests
//! only read the result; the connection itself is judged again whenever
//! trust changes, and ended when its peer is no longer trusted (expiry,
//! revocation or CRL, bundle change, replaced caller pin: see
//! [`ZtServer::serve`] and [`TrustMonitor`]).
//!
//! `VerifiedPeer` has no public constructor: holding one proves the TLS
//! layer verified it, so authorization code can rely on it.
//!
//! [`AuthorizeLayer`] decides every request by explicit policy before the
//! handler runs: it reads the `VerifiedPeer`, asks a
//! [`zt_authz::Authorizer`] (revocation list, policy, dry-run, audit),
//! and answers refusals with `403` / `PERMISSION_DENIED`, or `401` /
//! `UNAUTHENTICATED` when there is no verified identity.
//!
//! [`JwtAuthLayer`] validates JWT-SVIDs (optionally bound to the mTLS peer)
//! and delegated user-context tokens, and hands them to `AuthorizeLayer`
//! and to handlers ([`VerifiedUser`]); refusals are `401` with no detail.
//!
//! `OidcAuthLayer` (feature `oidc`) verifies OIDC workload tokens — a CI
//! job's, a Kubernetes service account's — and makes the identity made from
//! the token's claims the caller, with the claims available to rules'
//! `when` conditions. `ServerBuilder::token_callers` lets callers without
//! an SVID connect, and passes every request of theirs through that layer.
//!
//! # Quick start
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! use axum::{Router, routing::get};
//! use zt_core::source::WorkloadApiSource;
//! use zt_server::{VerifiedPeer, ZtServer};
//!
//! async fn whoami(peer: VerifiedPeer) -> String {
//!     format!("hello {}", peer.id())
//! }
//!
//! let source = WorkloadApiSource::builder().build().await?;
//! let server = ZtServer::builder(source).build()?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8443").await?;
//! let app = Router::new().route("/whoami", get(whoami));
//! server.serve(listener, app, std::future::pending()).await?;
//! # Ok(()) }
//! ```
//!
//! With authorization, from a policy file reloaded when it changes:
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! use std::time::Duration;
//! use axum::{Router, routing::get};
//! use zt_authz::Authorizer;
//! use zt_authz::policy::PolicyStore;
//! use zt_core::source::WorkloadApiSource;
//! use zt_server::{AuthorizeLayer, ZtServer};
//!
//! let policy = PolicyStore::from_file("policy.toml")?;
//! let _watch = policy.watch(Duration::from_secs(5));
//! let authz = Authorizer::builder(policy).target("billing").build();
//! let app = Router::new()
//!     .route("/invoices/{id}", get(|| async { "invoice" }))
//!     .route_layer(AuthorizeLayer::new(authz));
//!
//! let source = WorkloadApiSource::builder().build().await?;
//! let server = ZtServer::builder(source).build()?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8443").await?;
//! server.serve(listener, app, std::future::pending()).await?;
//! # Ok(()) }
//! ```
//!
//! # Health and metrics
//!
//! [`health::HealthCheck`] gives one view of the service's identity, policy
//! and revocation state, with an axum readiness handler
//! ([`health::ready`]). Every handshake, refusal and decision is recorded
//! through the `metrics` facade (names in `zt_core::metrics`); the
//! application installs the exporter.
//!
//! # Features
//!
//! | feature | gives |
//! |---|---|
//! | `axum` (default) | `VerifiedPeer` as an axum extractor |
//! | `tonic` (default) | [`PeerExt::verified_peer`] on `tonic::Request` |
//! | `macros` (default) | [`callers`] and [`derive@Declared`]: callers declared next to each endpoint ([`macros`]) |
//! | `oidc` | `OidcAuthLayer`: OIDC workload tokens as callers, and `ServerBuilder::token_callers` for callers without an SVID |
//!
//! # Hostile clients
//!
//! Handshakes run off the accept loop, each bounded by a timeout
//! ([`ServerBuilder::handshake_timeout`]) and all together by a limit on
//! concurrent handshakes ([`ServerBuilder::max_concurrent_handshakes`]), so
//! a client that connects and never speaks cannot stall others.
//!
//! TLS session resumption and tickets are disabled: a resumed session
//! would skip client-certificate verification.
#![forbid(unsafe_code)]

mod authorize;
mod builder;
mod error;
pub mod health;
mod jwt;
#[cfg(feature = "oidc")]
mod oidc;
mod peer;
mod serve;
mod trust;
mod watched;

pub use authorize::{Authorize, AuthorizeLayer, ResponseBody, ResponseFuture};
pub use builder::{
    DEFAULT_HANDSHAKE_TIMEOUT, DEFAULT_MAX_CONCURRENT_HANDSHAKES, DEFAULT_TRUST_END_GRACE,
    ServerBuilder, ZtServer,
};
pub use error::Error;
pub use jwt::{
    Authenticated, DEFAULT_JWT_LEEWAY, JwtAuth, JwtAuthBuilder, JwtAuthError, JwtAuthLayer,
    MissingUserContext, VerifiedJwtSvid, VerifiedUser,
};
#[cfg(feature = "oidc")]
pub use oidc::{
    DEFAULT_OIDC_VALIDATION_TIMEOUT, OidcAuth, OidcAuthBuilder, OidcAuthError, OidcAuthFuture,
    OidcAuthLayer, VerifiedOidcToken,
};
pub use peer::{MissingPeer, PeerExt, VerifiedPeer};
pub use serve::{EXPIRY_MARGIN, SHUTDOWN_GRACE};
pub use trust::TrustBoundBody;
pub use zt_core::live::{EndReason, TrustEnded, TrustMonitor};
pub use zt_tls::{ConfigError, PeerRejected, Posture, Side};

#[cfg(feature = "macros")]
pub mod macros;
#[cfg(feature = "macros")]
pub use zt_macros::{Declared, callers};
