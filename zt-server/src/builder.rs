//! Building a [`ZtServer`].

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use tokio_rustls::TlsAcceptor;
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

/// Configures a [`ZtServer`].
pub struct ServerBuilder {
    options: TlsOptions,
    clock: SharedClock,
    handshake_timeout: Duration,
    max_handshakes: usize,
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
            clock: zt_core::time::system_clock(),
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            max_handshakes: DEFAULT_MAX_CONCURRENT_HANDSHAKES,
        }
    }

    /// Refuse, at the handshake, callers whose SPIFFE ID or leaf serial is
    /// on `revocations`. Connections already open are not cut; give the
    /// same list to the [`Authorizer`](zt_authz::Authorizer) of an
    /// [`AuthorizeLayer`](crate::AuthorizeLayer) so their next request is
    /// refused too.
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
        self.clock = clock.clone();
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

    /// Builds the server.
    ///
    /// # Errors
    ///
    /// [`Error::Tls`] if the crypto provider supports no TLS version.
    pub fn build(self) -> Result<ZtServer, Error> {
        let config = self.options.server_config()?;
        Ok(ZtServer {
            base: Arc::new(config),
            pin: self.options.pin_matcher().cloned(),
            clock: self.clock,
            handshake_timeout: self.handshake_timeout,
            max_handshakes: self.max_handshakes,
        })
    }
}

/// A configured mutual-TLS server. Cheap to clone.
#[derive(Clone)]
pub struct ZtServer {
    base: Arc<ServerConfig>,
    pin: Option<IdMatcher>,
    pub(crate) clock: SharedClock,
    pub(crate) handshake_timeout: Duration,
    pub(crate) max_handshakes: usize,
}

impl fmt::Debug for ZtServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ZtServer")
            .field("pin", &self.pin.as_ref().map(ToString::to_string))
            .field("handshake_timeout", &self.handshake_timeout)
            .finish_non_exhaustive()
    }
}

impl ZtServer {
    /// Starts a builder presenting identities from `source`.
    pub fn builder<S: SvidSource>(source: Arc<S>) -> ServerBuilder {
        ServerBuilder::new(source)
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
