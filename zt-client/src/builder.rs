//! Building a [`ZtClient`].

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use rustls::ClientConfig;
use rustls::crypto::CryptoProvider;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use zt_core::live::TrustMonitor;
use zt_core::matcher::IdMatcher;
use zt_core::peer::PeerError;
use zt_core::revocation::Revocations;
use zt_core::source::SvidSource;
use zt_core::time::SharedClock;
use zt_tls::{PeerRejected, Side, TlsOptions};

use crate::stream::ZtStream;

use crate::error::Error;

/// Configures a [`ZtClient`].
pub struct ClientBuilder {
    options: TlsOptions,
    any_server: bool,
}

impl fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("options", &self.options)
            .field("any_server", &self.any_server)
            .finish_non_exhaustive()
    }
}

impl ClientBuilder {
    /// Starts a builder presenting identities from `source`.
    pub fn new(source: Arc<dyn SvidSource>) -> Self {
        Self {
            options: TlsOptions::new(source),
            any_server: false,
        }
    }

    /// Refuse, at every handshake, servers whose SPIFFE ID or leaf serial
    /// is on `revocations`, and end the open [`ZtStream`]s (from
    /// [`ZtClient::connect`] and gRPC channels) to a server once it is
    /// revoked. Connections inside a `reqwest::Client`'s pool are judged
    /// again only at their next handshake.
    #[must_use]
    pub fn revocations(mut self, revocations: Revocations) -> Self {
        self.options = self.options.revocations(revocations);
        self
    }

    /// Accept only servers whose SPIFFE ID matches `matcher` (an exact ID,
    /// a set of IDs, a trust domain, a path pattern or a closure).
    #[must_use]
    pub fn pin_server(mut self, matcher: IdMatcher) -> Self {
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

    /// Refuse servers that cannot do post-quantum key exchange (default
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

    /// Options that weaken verification.
    pub fn dangerous(self) -> crate::danger::DangerousClientBuilder {
        crate::danger::DangerousClientBuilder { inner: self }
    }

    pub(crate) fn allow_any_server(mut self) -> Self {
        self.any_server = true;
        self
    }

    /// Builds the client.
    ///
    /// # Errors
    ///
    /// [`Error::NoServerPin`] if no pin was configured and
    /// [`danger`](crate::danger) was not used; [`Error::Tls`] if the crypto
    /// provider supports no TLS version.
    pub fn build(self) -> Result<ZtClient, Error> {
        if self.options.pin_matcher().is_none() && !self.any_server {
            return Err(Error::NoServerPin);
        }
        let (base, monitor) = self.options.monitored_client_config()?;
        Ok(ZtClient {
            source: self.options.source().clone(),
            monitor,
            base: Arc::new(base),
        })
    }
}

/// A configured mutual-TLS client. Cheap to clone.
#[derive(Clone)]
pub struct ZtClient {
    source: Arc<dyn SvidSource>,
    monitor: TrustMonitor,
    base: Arc<ClientConfig>,
}

impl fmt::Debug for ZtClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ZtClient")
            .field(
                "pin",
                &self.monitor.verifier().pin().map(|pin| pin.to_string()),
            )
            .finish_non_exhaustive()
    }
}

impl ZtClient {
    /// Starts a builder presenting identities from `source`.
    pub fn builder<S: SvidSource>(source: Arc<S>) -> ClientBuilder {
        ClientBuilder::new(source)
    }

    /// The source whose SVID this client presents.
    pub fn source(&self) -> &Arc<dyn SvidSource> {
        &self.source
    }

    /// JWT-SVIDs from this client's source, cached per audience, for
    /// requests that carry one ([`JwtSvids::send`](crate::JwtSvids::send),
    /// [`JwtSvidLayer`](crate::JwtSvidLayer)). Each call starts a new cache:
    /// keep the result and clone it.
    pub fn jwt_svids(&self) -> crate::JwtSvids {
        crate::JwtSvids::new(Arc::clone(&self.source))
    }

    /// The server pin in force, if any.
    pub fn server_pin(&self) -> Option<Arc<IdMatcher>> {
        self.monitor.verifier().pin()
    }

    /// Replaces the server pin. New handshakes are judged by `matcher` at
    /// once, and open [`ZtStream`]s to servers it refuses are ended.
    pub fn replace_server_pin(&self, matcher: IdMatcher) {
        self.monitor.verifier().replace_pin(Some(matcher));
    }

    /// The monitor of this client's open [`ZtStream`]s.
    pub fn trust_monitor(&self) -> &TrustMonitor {
        &self.monitor
    }

    /// Registers a completed handshake with the trust monitor.
    pub(crate) fn admit(&self, tls: TlsStream<TcpStream>) -> Result<ZtStream, PeerError> {
        let chain: Vec<CertificateDer<'static>> = tls
            .get_ref()
            .1
            .peer_certificates()
            .unwrap_or_default()
            .iter()
            .map(|c| c.clone().into_owned())
            .collect();
        let guard = self.monitor.admit(chain)?;
        Ok(ZtStream::new(tls, guard))
    }

    /// A rustls config offering ALPN `h2` and `http/1.1`.
    pub fn rustls_config(&self) -> Arc<ClientConfig> {
        self.rustls_config_with_alpn(vec![b"h2".to_vec(), b"http/1.1".to_vec()])
    }

    /// A rustls config offering the given ALPN protocols (none if empty).
    pub fn rustls_config_with_alpn(&self, alpn: Vec<Vec<u8>>) -> Arc<ClientConfig> {
        Arc::new(self.config_with_alpn(alpn))
    }

    fn config_with_alpn(&self, alpn: Vec<Vec<u8>>) -> ClientConfig {
        let mut config = (*self.base).clone();
        config.alpn_protocols = alpn;
        config
    }

    /// A tokio-rustls connector without ALPN, for raw TLS over TCP.
    pub fn tls_connector(&self) -> TlsConnector {
        TlsConnector::from(self.rustls_config_with_alpn(Vec::new()))
    }

    /// Opens a TCP connection to `addr` and completes a mutual-TLS
    /// handshake. The stream ends when the server is no longer trusted (see
    /// [`ZtStream`]).
    ///
    /// # Errors
    ///
    /// [`Error::PeerRejected`] when zt refused the server's identity
    /// (the ID presented and the pin), [`Error::Connect`] for any other
    /// TCP or TLS failure.
    pub async fn connect(&self, addr: SocketAddr) -> Result<ZtStream, Error> {
        let connect_err = |source| Error::Connect {
            address: addr.to_string(),
            source,
        };
        let tcp = TcpStream::connect(addr).await.map_err(connect_err)?;
        tcp.set_nodelay(true).map_err(connect_err)?;
        let started = std::time::Instant::now();
        let tls = self
            .tls_connector()
            .connect(ServerName::IpAddress(addr.ip().into()), tcp)
            .await
            .inspect(|_| zt_tls::record_handshake(zt_tls::Side::Client, started, Ok(())))
            .inspect_err(|e| zt_tls::record_handshake(zt_tls::Side::Client, started, Err(e)))
            .map_err(|e| match PeerRejected::find(&e) {
                Some(rejected) => Error::PeerRejected {
                    address: addr.to_string(),
                    rejected: rejected.clone(),
                },
                None => connect_err(e),
            })?;
        self.admit(tls).map_err(|e| Error::PeerRejected {
            address: addr.to_string(),
            rejected: PeerRejected::new(Side::Client, e),
        })
    }

    /// A `reqwest::Client` that speaks mutual TLS with this client's
    /// identity and pin (HTTP/1.1 and HTTP/2 by ALPN).
    ///
    /// # Errors
    ///
    /// [`Error::Http`] if reqwest rejects the configuration.
    #[cfg(feature = "reqwest")]
    pub fn reqwest_client(&self) -> Result<reqwest::Client, Error> {
        Ok(self.reqwest_builder().build()?)
    }

    /// A `reqwest::ClientBuilder` preconfigured with this client's TLS, for
    /// adding timeouts and other options.
    #[cfg(feature = "reqwest")]
    pub fn reqwest_builder(&self) -> reqwest::ClientBuilder {
        let config = self.config_with_alpn(vec![b"h2".to_vec(), b"http/1.1".to_vec()]);
        reqwest::Client::builder()
            .tls_backend_preconfigured(config)
            .no_proxy()
    }
}
