//! Building a [`ZtServer`].

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use tokio_rustls::TlsAcceptor;
use zt_core::live::TrustMonitor;
use zt_core::matcher::IdMatcher;
use zt_core::revocation::Revocations;
use zt_core::source::SvidSource;
use zt_core::time::SharedClock;
use zt_tls::TlsOptions;

use crate::error::Error;

/// Default bound on one TLS handshake.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Default bound on handshakes in progress at once.
pub const DEFAULT_MAX_CONCURRENT_HANDSHAKES: usize = 512;

/// Default time a connection whose peer is no longer trusted is given to
/// finish its in-flight requests after GOAWAY, before it is closed.
pub const DEFAULT_TRUST_END_GRACE: Duration = Duration::from_secs(2);

/// Configures a [`ZtServer`].
pub struct ServerBuilder {
    options: TlsOptions,
    handshake_timeout: Duration,
    max_handshakes: usize,
    trust_end_grace: Duration,
    token_callers: TokenCallers,
}

impl fmt::Debug for ServerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerBuilder")
            .field("options", &self.options)
            .field("handshake_timeout", &self.handshake_timeout)
            .field("max_handshakes", &self.max_handshakes)
            .finish_non_exhaustive()
    }
}

impl ServerBuilder {
    /// Starts a builder presenting identities from `source`.
    pub fn new(source: Arc<dyn SvidSource>) -> Self {
        Self {
            options: TlsOptions::new(source),
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            max_handshakes: DEFAULT_MAX_CONCURRENT_HANDSHAKES,
            trust_end_grace: DEFAULT_TRUST_END_GRACE,
            token_callers: TokenCallers::default(),
        }
    }

    /// Lets callers that hold no SVID — a CI job with its platform's OIDC
    /// token — connect, and authenticates each of their requests with
    /// `layer`.
    ///
    /// The server still presents its SVID, asks every client for a
    /// certificate, and verifies one that is presented in full (a bad
    /// certificate is refused at the handshake, as without this option).
    /// A client that presents none is let in, but every request on its
    /// connection passes through `layer` before the service sees it: it
    /// must carry a valid token (whatever the layer's
    /// [`require_token`](crate::OidcAuthBuilder::require_token)), or it is
    /// refused with `401` / `UNAUTHENTICATED` and the reason goes to the
    /// audit log. Such a request has no [`VerifiedPeer`](crate::VerifiedPeer):
    /// its caller is the token's identity
    /// ([`VerifiedOidcToken`](crate::VerifiedOidcToken)), which
    /// [`AuthorizeLayer`](crate::AuthorizeLayer) decides on like any other
    /// caller, and handlers that extract a `VerifiedPeer` refuse it.
    ///
    /// Requests over mutual TLS are served as without this option; put the
    /// layer on routes too (`route_layer`) to have mTLS callers present
    /// tokens there.
    #[cfg(feature = "oidc")]
    #[must_use]
    pub fn token_callers(mut self, layer: crate::OidcAuthLayer) -> Self {
        self.options = self.options.client_certificate_optional(true);
        self.token_callers = TokenCallers { layer: Some(layer) };
        self
    }

    /// Refuse, at the handshake, callers whose SPIFFE ID or leaf serial is
    /// on `revocations`, and end the open connections of a caller as soon
    /// as it is revoked (see [`ZtServer::serve`]). Give the same list to
    /// the [`Authorizer`](zt_authz::Authorizer) of an
    /// [`AuthorizeLayer`](crate::AuthorizeLayer) so that requests served
    /// by other means are refused too.
    #[must_use]
    pub fn revocations(mut self, revocations: Revocations) -> Self {
        self.options = self.options.revocations(revocations);
        self
    }

    /// Refuse, at the handshake, callers whose SPIFFE ID does not match
    /// `matcher` (for example a trust-domain allow-list). Without it, any
    /// caller with a valid SVID from a trusted trust domain connects, and
    /// per-request policy decides.
    #[must_use]
    pub fn accept_callers(mut self, matcher: IdMatcher) -> Self {
        self.options = self.options.pin(matcher);
        self
    }

    /// The rustls crypto provider. Default: [`zt_tls::default_provider`]
    /// (aws-lc-rs, hybrid post-quantum key exchange X25519MLKEM768 offered
    /// first, X25519 and P-256 as fallbacks).
    #[must_use]
    pub fn crypto_provider(mut self, provider: Arc<CryptoProvider>) -> Self {
        self.options = self.options.crypto_provider(provider);
        self
    }

    /// Refuse clients that cannot do post-quantum key exchange (default
    /// `false`). The build fails with [`Error::Tls`] if the crypto provider
    /// has no post-quantum group.
    #[must_use]
    pub fn require_post_quantum(mut self, required: bool) -> Self {
        self.options = self.options.require_post_quantum(required);
        self
    }

    /// The clock certificate validity is checked with. Default: system.
    #[must_use]
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.options = self.options.clock(clock);
        self
    }

    /// How many verified peer chains to remember (see
    /// [`PeerVerifier`](zt_core::peer::PeerVerifier)); 0 verifies every
    /// chain in full at every handshake. Default:
    /// [`DEFAULT_CHAIN_CACHE_CAPACITY`](zt_tls::DEFAULT_CHAIN_CACHE_CAPACITY).
    #[must_use]
    pub fn verified_chain_cache(mut self, capacity: usize) -> Self {
        self.options = self.options.verified_chain_cache(capacity);
        self
    }

    /// Bound on one handshake; a client that takes longer is disconnected.
    #[must_use]
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// Bound on handshakes in progress at once; further connections wait
    /// in the listen backlog.
    #[must_use]
    pub fn max_concurrent_handshakes(mut self, max: usize) -> Self {
        self.max_handshakes = max.max(1);
        self
    }

    /// How long a connection whose peer is no longer trusted may finish
    /// its in-flight requests after GOAWAY before it is closed (default
    /// [`DEFAULT_TRUST_END_GRACE`]). Streaming responses on it end at once
    /// regardless.
    #[must_use]
    pub fn trust_end_grace(mut self, grace: Duration) -> Self {
        self.trust_end_grace = grace;
        self
    }

    /// Builds the server.
    ///
    /// # Errors
    ///
    /// [`Error::Tls`] if the crypto provider supports no TLS version.
    pub fn build(self) -> Result<ZtServer, Error> {
        let (config, monitor) = self.options.monitored_server_config()?;
        Ok(ZtServer {
            base: Arc::new(config),
            monitor,
            handshake_timeout: self.handshake_timeout,
            max_handshakes: self.max_handshakes,
            trust_end_grace: self.trust_end_grace,
            token_callers: self.token_callers,
        })
    }
}

/// How requests on a connection without a client certificate are
/// authenticated: by the OIDC layer given to
/// [`ServerBuilder::token_callers`], or not at all (such connections are
/// then refused at the handshake, and a request that reached the service
/// without a peer would be refused).
#[derive(Clone, Default)]
pub(crate) struct TokenCallers {
    #[cfg(feature = "oidc")]
    layer: Option<crate::OidcAuthLayer>,
}

impl TokenCallers {
    /// Whether connections without a client certificate are let in.
    pub(crate) fn enabled(&self) -> bool {
        #[cfg(feature = "oidc")]
        {
            self.layer.is_some()
        }
        #[cfg(not(feature = "oidc"))]
        {
            false
        }
    }

    /// Authenticates a request that came without an mTLS peer: `Err` holds
    /// the refusal to send.
    #[cfg_attr(not(feature = "oidc"), allow(clippy::unused_async))]
    pub(crate) async fn admit<B>(
        &self,
        req: &mut http::Request<B>,
    ) -> Result<(), http::Response<bytes::Bytes>> {
        #[cfg(feature = "oidc")]
        if let Some(layer) = &self.layer {
            return match layer.admit(req).await {
                // A token, whatever the layer's setting for mTLS callers:
                // a request without a peer has no other caller.
                Ok(()) if crate::VerifiedOidcToken::from_extensions(req.extensions()).is_some() => {
                    Ok(())
                }
                Ok(()) => Err(crate::jwt::unauthenticated(crate::authorize::is_grpc(
                    req.headers(),
                ))),
                Err(denied) => Err(denied),
            };
        }
        Err(crate::jwt::unauthenticated(crate::authorize::is_grpc(
            req.headers(),
        )))
    }
}

/// A configured mutual-TLS server. Cheap to clone.
#[derive(Clone)]
pub struct ZtServer {
    base: Arc<ServerConfig>,
    pub(crate) monitor: TrustMonitor,
    pub(crate) handshake_timeout: Duration,
    pub(crate) max_handshakes: usize,
    pub(crate) trust_end_grace: Duration,
    pub(crate) token_callers: TokenCallers,
}

impl fmt::Debug for ZtServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ZtServer")
            .field(
                "pin",
                &self.monitor.verifier().pin().map(|pin| pin.to_string()),
            )
            .field("handshake_timeout", &self.handshake_timeout)
            .field("token_callers", &self.token_callers.enabled())
            .finish_non_exhaustive()
    }
}

impl ZtServer {
    /// Starts a builder presenting identities from `source`.
    pub fn builder<S: SvidSource>(source: Arc<S>) -> ServerBuilder {
        ServerBuilder::new(source)
    }

    /// The monitor of this server's open connections (those served by
    /// [`serve`](Self::serve)): how many are open, and a way to re-judge
    /// them all after changing trust through a path it does not watch.
    pub fn trust_monitor(&self) -> &TrustMonitor {
        &self.monitor
    }

    /// Replaces the callers accepted at the handshake
    /// ([`ServerBuilder::accept_callers`]; `None` accepts any caller with a
    /// valid SVID). New handshakes are judged by the new matcher at once,
    /// and open connections of callers it refuses are ended.
    pub fn replace_accepted_callers(&self, matcher: Option<IdMatcher>) {
        self.monitor.verifier().replace_pin(matcher);
    }

    /// A rustls config offering ALPN `h2` and `http/1.1`.
    pub fn rustls_config(&self) -> Arc<ServerConfig> {
        self.rustls_config_with_alpn(vec![b"h2".to_vec(), b"http/1.1".to_vec()])
    }

    /// A rustls config offering the given ALPN protocols (none if empty).
    pub fn rustls_config_with_alpn(&self, alpn: Vec<Vec<u8>>) -> Arc<ServerConfig> {
        let mut config = (*self.base).clone();
        config.alpn_protocols = alpn;
        Arc::new(config)
    }

    /// A tokio-rustls acceptor (ALPN `h2`, `http/1.1`).
    pub fn tls_acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.rustls_config())
    }
}
