//! [`TlsOptions`]: what both sides configure alike, and the rustls configs
//! built from it.

use std::fmt;
use std::sync::Arc;

use rustls::client::Resumption;
use rustls::crypto::CryptoProvider;
use rustls::server::NoServerSessionStorage;
use rustls::{ClientConfig, ServerConfig};
use zt_core::live::TrustMonitor;
use zt_core::matcher::IdMatcher;
use zt_core::peer::PeerVerifier;
use zt_core::revocation::Revocations;
use zt_core::source::SvidSource;
use zt_core::time::{SharedClock, system_clock};
use zt_core::x509::Usage;

use crate::error::Side;
use crate::provider::{ConfigError, post_quantum_only};
use crate::resolve::SvidResolver;
use crate::verify::SpiffeVerifier;

/// How many verified peer chains a verifier remembers by default.
pub use zt_core::peer::DEFAULT_CHAIN_CACHE_CAPACITY;

/// The identity, pin and verification settings of one side of mutual TLS,
/// from which [`client_config`](Self::client_config) and
/// [`server_config`](Self::server_config) build rustls configs.
///
/// Cheap to clone.
#[derive(Clone)]
pub struct TlsOptions {
    source: Arc<dyn SvidSource>,
    pin: Option<IdMatcher>,
    provider: Option<Arc<CryptoProvider>>,
    clock: SharedClock,
    chain_cache: usize,
    revocations: Option<Revocations>,
    require_post_quantum: bool,
    client_certificate_optional: bool,
}

impl fmt::Debug for TlsOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsOptions")
            .field("pin", &self.pin.as_ref().map(ToString::to_string))
            .field("chain_cache", &self.chain_cache)
            .field("revocations", &self.revocations.is_some())
            .field("require_post_quantum", &self.require_post_quantum)
            .field(
                "client_certificate_optional",
                &self.client_certificate_optional,
            )
            .finish_non_exhaustive()
    }
}

impl TlsOptions {
    /// Options presenting identities from `source`, with no pin, the
    /// [`default_provider`](crate::default_provider), the system clock and
    /// the default chain cache.
    pub fn new(source: Arc<dyn SvidSource>) -> Self {
        Self {
            source,
            pin: None,
            provider: None,
            clock: system_clock(),
            chain_cache: DEFAULT_CHAIN_CACHE_CAPACITY,
            revocations: None,
            require_post_quantum: false,
            client_certificate_optional: false,
        }
    }

    /// Accept only peers whose SPIFFE ID matches `matcher`. Without a pin,
    /// any peer holding a valid SVID of a trusted trust domain is accepted:
    /// right for a server that authorizes each request by policy, dangerous
    /// for a client (`zt-client` refuses to build without one unless asked
    /// through its `dangerous()` API).
    #[must_use]
    pub fn pin(mut self, matcher: IdMatcher) -> Self {
        self.pin = Some(matcher);
        self
    }

    /// Refuse peers whose SPIFFE ID or leaf serial is on `revocations`,
    /// checked at every handshake.
    #[must_use]
    pub fn revocations(mut self, revocations: Revocations) -> Self {
        self.revocations = Some(revocations);
        self
    }

    /// The rustls crypto provider. Default:
    /// [`default_provider`](crate::default_provider) (aws-lc-rs with
    /// X25519MLKEM768 first, unless zt-tls is built with only `ring`).
    #[must_use]
    pub fn crypto_provider(mut self, provider: Arc<CryptoProvider>) -> Self {
        self.provider = Some(provider);
        self
    }

    /// Whether to refuse peers that cannot do post-quantum key exchange
    /// (default `false`: X25519MLKEM768 is offered first, and a classical
    /// group is accepted from a peer without it). When `true`, only the
    /// provider's post-quantum groups are offered, and the configs fail to
    /// build if it has none.
    #[must_use]
    pub fn require_post_quantum(mut self, required: bool) -> Self {
        self.require_post_quantum = required;
        self
    }

    /// Whether a server built from these options lets a client connect
    /// without a certificate (default `false`: a client certificate is
    /// required). A client that presents a certificate is verified in full
    /// either way, and refused at the handshake if it fails.
    ///
    /// A connection without a client certificate has no verified peer:
    /// whatever serves it must authenticate every request by other means
    /// (zt-server's token callers do, and refuse a request that carries no
    /// valid token). No effect on client configs.
    #[must_use]
    pub fn client_certificate_optional(mut self, optional: bool) -> Self {
        self.client_certificate_optional = optional;
        self
    }

    /// Whether a client certificate is optional on the server side.
    pub fn is_client_certificate_optional(&self) -> bool {
        self.client_certificate_optional
    }

    /// Whether post-quantum key exchange is required.
    pub fn requires_post_quantum(&self) -> bool {
        self.require_post_quantum
    }

    /// The clock certificate validity is checked with. Default: system.
    #[must_use]
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// How many verified peer chains to remember (see
    /// [`PeerVerifier`]); 0 verifies every chain in full at every
    /// handshake. Default: [`DEFAULT_CHAIN_CACHE_CAPACITY`].
    #[must_use]
    pub fn verified_chain_cache(mut self, capacity: usize) -> Self {
        self.chain_cache = capacity;
        self
    }

    /// The source whose SVID is presented and whose bundles verify peers.
    pub fn source(&self) -> &Arc<dyn SvidSource> {
        &self.source
    }

    /// The pin, if any.
    pub fn pin_matcher(&self) -> Option<&IdMatcher> {
        self.pin.as_ref()
    }

    /// The crypto provider the configs use.
    pub fn provider(&self) -> Arc<CryptoProvider> {
        self.provider
            .clone()
            .unwrap_or_else(|| Arc::new(crate::default_provider()))
    }

    /// The provider with the key exchange groups this side offers.
    fn effective_provider(&self) -> Result<Arc<CryptoProvider>, ConfigError> {
        let provider = self.provider();
        if !self.require_post_quantum {
            return Ok(provider);
        }
        post_quantum_only((*provider).clone()).map(Arc::new)
    }

    fn peer_verifier(&self, usage: Usage) -> Arc<PeerVerifier> {
        let peers = PeerVerifier::new(
            self.source.clone(),
            self.clock.clone(),
            usage,
            self.pin.clone(),
        )
        .with_cache_capacity(self.chain_cache);
        Arc::new(match &self.revocations {
            Some(revocations) => peers.with_revocations(revocations.clone()),
            None => peers,
        })
    }

    /// A client config: presents the current SVID, verifies the server's
    /// X.509-SVID and pin, no resumption, no early data, no ALPN.
    ///
    /// # Errors
    ///
    /// [`ConfigError::NoPostQuantumKeyExchange`] if post-quantum key
    /// exchange is required and the provider has none;
    /// [`ConfigError::Rustls`] if the provider supports no safe TLS version.
    pub fn client_config(&self) -> Result<ClientConfig, ConfigError> {
        self.monitored_client_config().map(|(config, _)| config)
    }

    /// A [`client_config`](Self::client_config) and the [`TrustMonitor`]
    /// that re-judges its connections with the same verifier: register each
    /// connection with [`TrustMonitor::admit`] after its handshake, and
    /// close it when its [`EndSignal`](zt_core::live::EndSignal) fires.
    ///
    /// # Errors
    ///
    /// As [`client_config`](Self::client_config).
    pub fn monitored_client_config(&self) -> Result<(ClientConfig, TrustMonitor), ConfigError> {
        let provider = self.effective_provider()?;
        let peers = self.peer_verifier(Usage::ServerAuth);
        let monitor = TrustMonitor::new(peers.clone());
        let verifier = Arc::new(SpiffeVerifier::new(peers, provider.clone(), Side::Client));
        let resolver = Arc::new(SvidResolver::new(
            self.source.clone(),
            provider.clone(),
            Side::Client,
        ));
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_client_cert_resolver(resolver);
        config.resumption = Resumption::disabled();
        config.enable_early_data = false;
        Ok((config, monitor))
    }

    /// A server config: presents the current SVID, requires a client
    /// certificate (unless
    /// [`client_certificate_optional`](Self::client_certificate_optional))
    /// and verifies its X.509-SVID (and pin, if set), no
    /// session storage, no tickets, no early data, no ALPN.
    ///
    /// # Errors
    ///
    /// [`ConfigError::NoPostQuantumKeyExchange`] if post-quantum key
    /// exchange is required and the provider has none;
    /// [`ConfigError::Rustls`] if the provider supports no safe TLS version.
    pub fn server_config(&self) -> Result<ServerConfig, ConfigError> {
        self.monitored_server_config().map(|(config, _)| config)
    }

    /// A [`server_config`](Self::server_config) and the [`TrustMonitor`]
    /// that re-judges its connections with the same verifier: register each
    /// connection with [`TrustMonitor::admit`] after its handshake, and
    /// close it when its [`EndSignal`](zt_core::live::EndSignal) fires.
    ///
    /// # Errors
    ///
    /// As [`server_config`](Self::server_config).
    pub fn monitored_server_config(&self) -> Result<(ServerConfig, TrustMonitor), ConfigError> {
        let provider = self.effective_provider()?;
        let peers = self.peer_verifier(Usage::ClientAuth);
        let monitor = TrustMonitor::new(peers.clone());
        let verifier = SpiffeVerifier::new(peers, provider.clone(), Side::Server);
        let verifier = Arc::new(if self.client_certificate_optional {
            verifier.client_certificate_optional()
        } else {
            verifier
        });
        let resolver = Arc::new(SvidResolver::new(
            self.source.clone(),
            provider.clone(),
            Side::Server,
        ));
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(verifier)
            .with_cert_resolver(resolver);
        config.session_storage = Arc::new(NoServerSessionStorage {});
        config.send_tls13_tickets = 0;
        config.max_early_data_size = 0;
        Ok((config, monitor))
    }
}
