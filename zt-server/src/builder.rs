//! Building a [`ZtServer`].

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::server::NoServerSessionStorage;
use tokio_rustls::TlsAcceptor;
use zt_core::matcher::IdMatcher;
use zt_core::peer::{DEFAULT_CHAIN_CACHE_CAPACITY, PeerVerifier};
use zt_core::revocation::Revocations;
use zt_core::source::{DerivedCache, SvidSource};
use zt_core::time::{SharedClock, system_clock};
use zt_core::x509::Usage;

use crate::error::Error;
use crate::resolve::ServerCertResolver;
use crate::verify::ClientVerifier;

/// Default bound on one TLS handshake.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Default bound on handshakes in progress at once.
pub const DEFAULT_MAX_CONCURRENT_HANDSHAKES: usize = 512;

/// Configures a [`ZtServer`].
pub struct ServerBuilder {
    source: Arc<dyn SvidSource>,
    pin: Option<IdMatcher>,
    provider: Option<Arc<CryptoProvider>>,
    clock: SharedClock,
    chain_cache: usize,
    handshake_timeout: Duration,
    max_handshakes: usize,
    revocations: Option<Revocations>,
}

impl fmt::Debug for ServerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerBuilder")
            .field("pin", &self.pin.as_ref().map(ToString::to_string))
            .field("handshake_timeout", &self.handshake_timeout)
            .field("max_handshakes", &self.max_handshakes)
            .finish_non_exhaustive()
    }
}

impl ServerBuilder {
    /// Starts a builder presenting identities from `source`.
    pub fn new(source: Arc<dyn SvidSource>) -> Self {
        Self {
            source,
            pin: None,
            provider: None,
            clock: system_clock(),
            chain_cache: DEFAULT_CHAIN_CACHE_CAPACITY,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            max_handshakes: DEFAULT_MAX_CONCURRENT_HANDSHAKES,
            revocations: None,
        }
    }

    /// Refuse, at the handshake, callers whose SPIFFE ID or leaf serial is
    /// on `revocations`. Connections already open are not cut; give the
    /// same list to the [`Authorizer`](zt_core::authz::Authorizer) of an
    /// [`AuthorizeLayer`](crate::AuthorizeLayer) so their next request is
    /// refused too.
    #[must_use]
    pub fn revocations(mut self, revocations: Revocations) -> Self {
        self.revocations = Some(revocations);
        self
    }

    /// Refuse, at the handshake, callers whose SPIFFE ID does not match
    /// `matcher` (for example a trust-domain allow-list). Without it, any
    /// caller with a valid SVID from a trusted trust domain connects, and
    /// per-request policy decides.
    #[must_use]
    pub fn accept_callers(mut self, matcher: IdMatcher) -> Self {
        self.pin = Some(matcher);
        self
    }

    /// The rustls crypto provider. Default: `ring`.
    #[must_use]
    pub fn crypto_provider(mut self, provider: Arc<CryptoProvider>) -> Self {
        self.provider = Some(provider);
        self
    }

    /// The clock certificate validity is checked with. Default: system.
    #[must_use]
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// How many verified peer chains to remember (see
    /// [`PeerVerifier`](zt_core::peer::PeerVerifier)); 0 verifies every
    /// chain in full at every handshake. Default:
    /// [`DEFAULT_CHAIN_CACHE_CAPACITY`](zt_core::peer::DEFAULT_CHAIN_CACHE_CAPACITY).
    #[must_use]
    pub fn verified_chain_cache(mut self, capacity: usize) -> Self {
        self.chain_cache = capacity;
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
        let provider = self
            .provider
            .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()));
        let mut peers = PeerVerifier::new(
            self.source.clone(),
            self.clock,
            Usage::ClientAuth,
            self.pin.clone(),
        )
        .with_cache_capacity(self.chain_cache);
        if let Some(revocations) = self.revocations {
            peers = peers.with_revocations(revocations);
        }
        let verifier = Arc::new(ClientVerifier {
            peers,
            provider: provider.clone(),
        });
        let resolver = Arc::new(ServerCertResolver {
            source: self.source.clone(),
            provider: provider.clone(),
            cache: DerivedCache::new(),
        });
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(verifier)
            .with_cert_resolver(resolver);
        config.session_storage = Arc::new(NoServerSessionStorage {});
        config.send_tls13_tickets = 0;
        config.max_early_data_size = 0;
        Ok(ZtServer {
            base: Arc::new(config),
            pin: self.pin,
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
