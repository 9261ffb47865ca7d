//! [`BundleEndpointServer`]: serves a trust domain's bundle to other trust
//! domains, in the `https_web` or `https_spiffe` profile.

use std::convert::Infallible;
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::server::NoServerSessionStorage;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use zt_core::source::SvidSource;
use zt_core::{TrustBundle, TrustDomain};
use zt_tls::{Side, SvidResolver};

use crate::error::ServerError;

/// Where the served bundle comes from.
#[derive(Clone)]
enum Supply {
    Watch(watch::Receiver<Arc<TrustBundle>>),
    Source {
        source: Arc<dyn SvidSource>,
        trust_domain: Option<TrustDomain>,
    },
}

impl Supply {
    fn current(&self) -> Result<Arc<TrustBundle>, String> {
        match self {
            Self::Watch(rx) => Ok(rx.borrow().clone()),
            Self::Source {
                source,
                trust_domain,
            } => {
                let snapshot = source.current().map_err(|e| e.to_string())?;
                let td = trust_domain
                    .clone()
                    .unwrap_or_else(|| snapshot.svid().id().trust_domain().clone());
                snapshot
                    .bundles()
                    .get(&td)
                    .cloned()
                    .ok_or_else(|| format!("the source holds no bundle for `{td}`"))
            }
        }
    }
}

/// How the endpoint authenticates itself.
#[derive(Clone)]
enum Identity {
    Web {
        chain: Vec<CertificateDer<'static>>,
        key: Arc<PrivateKeyDer<'static>>,
    },
    Spiffe(Arc<dyn SvidSource>),
}

/// The sequence numbers of a bundle served without its own: a counter
/// that starts at the server's start time in Unix seconds (so it keeps
/// increasing across restarts) and increases by one whenever the served
/// authorities change.
struct Sequencer {
    last: Option<Arc<TrustBundle>>,
    sequence: u64,
}

impl Sequencer {
    fn new(now: SystemTime) -> Self {
        Self {
            last: None,
            sequence: now
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(1, |d| d.as_secs()),
        }
    }

    fn sequence_for(&mut self, bundle: &Arc<TrustBundle>) -> u64 {
        match &self.last {
            Some(last) if last.same_authorities(bundle) => {}
            Some(_) => {
                self.sequence += 1;
                self.last = Some(bundle.clone());
            }
            None => self.last = Some(bundle.clone()),
        }
        self.sequence
    }
}

struct Shared {
    supply: Supply,
    refresh_hint: Duration,
    sequencer: Mutex<Sequencer>,
}

impl Shared {
    /// The document served now: the bundle with its own sequence and
    /// refresh hint, or the server's.
    fn document(&self) -> Result<String, String> {
        let bundle = self.supply.current()?;
        let mut doc = TrustBundle::clone(&bundle);
        if doc.sequence().is_none() {
            let sequence = self
                .sequencer
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .sequence_for(&bundle);
            doc.set_sequence(Some(sequence));
        }
        if doc.refresh_hint().is_none() {
            doc.set_refresh_hint(Some(self.refresh_hint.as_secs().max(1)));
        }
        doc.to_spiffe_json().map_err(|e| e.to_string())
    }

    fn respond(&self, request: &Request<Incoming>) -> Response<Full<Bytes>> {
        let plain = |status: StatusCode, text: &'static str| {
            let mut response = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
            *response.status_mut() = status;
            response
        };
        if request.method() != Method::GET {
            let mut response = plain(
                StatusCode::METHOD_NOT_ALLOWED,
                "a bundle endpoint answers GET only\n",
            );
            response
                .headers_mut()
                .insert(header::ALLOW, http::HeaderValue::from_static("GET"));
            return response;
        }
        match self.document() {
            Ok(json) => {
                let mut response = Response::new(Full::new(Bytes::from(json)));
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    http::HeaderValue::from_static("application/json"),
                );
                response
            }
            Err(reason) => {
                // The reason stays in the log; the caller learns only that
                // there is no bundle to serve.
                tracing::warn!(target: "zt::federation", %reason, "no bundle to serve");
                plain(StatusCode::SERVICE_UNAVAILABLE, "no bundle to serve\n")
            }
        }
    }
}

/// A SPIFFE bundle endpoint: answers `GET` on any path with a trust
/// domain's bundle as a SPIFFE bundle document (`spiffe_sequence` and
/// `spiffe_refresh_hint` set), over TLS in the `https_web` profile (a Web
/// PKI certificate) or the `https_spiffe` profile (the X.509-SVID of a
/// source, presented afresh at each handshake so rotation needs no
/// restart).
///
/// A bundle served without a sequence number of its own gets the server's:
/// the start time in Unix seconds, plus one at each change of its
/// authorities.
pub struct BundleEndpointServer {
    supply: Supply,
    identity: Identity,
    refresh_hint: Duration,
    provider: Option<Arc<CryptoProvider>>,
}

impl fmt::Debug for BundleEndpointServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BundleEndpointServer")
            .field("refresh_hint", &self.refresh_hint)
            .finish_non_exhaustive()
    }
}

impl BundleEndpointServer {
    fn new(supply: Supply, identity: Identity) -> Self {
        Self {
            supply,
            identity,
            refresh_hint: Duration::from_secs(300),
            provider: None,
        }
    }

    /// Serves the bundle of `source`'s own trust domain, taken from its
    /// current snapshot, in the `https_spiffe` profile with `source`'s
    /// X.509-SVID.
    pub fn https_spiffe(source: Arc<dyn SvidSource>) -> Self {
        Self::new(
            Supply::Source {
                source: source.clone(),
                trust_domain: None,
            },
            Identity::Spiffe(source),
        )
    }

    /// Serves `bundle` in the `https_web` profile with a Web PKI
    /// certificate chain and key (PEM).
    ///
    /// # Errors
    ///
    /// [`ServerError::Credentials`] for PEM that holds no certificate or no
    /// private key.
    pub fn https_web(
        bundle: watch::Receiver<Arc<TrustBundle>>,
        cert_chain_pem: &[u8],
        key_pem: &[u8],
    ) -> Result<Self, ServerError> {
        let chain: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(cert_chain_pem).collect();
        let chain = chain.map_err(|e| ServerError::Credentials {
            reason: format!("certificate chain PEM: {e}"),
        })?;
        if chain.is_empty() {
            return Err(ServerError::Credentials {
                reason: "no CERTIFICATE block in the certificate chain PEM".into(),
            });
        }
        let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| ServerError::Credentials {
            reason: format!("private key PEM: {e}"),
        })?;
        Ok(Self::new(
            Supply::Watch(bundle),
            Identity::Web {
                chain,
                key: Arc::new(key),
            },
        ))
    }

    /// Serves the bundles published on `bundle` instead (e.g. the fake
    /// CA's, or another source's), keeping the profile.
    #[must_use]
    pub fn serve(mut self, bundle: watch::Receiver<Arc<TrustBundle>>) -> Self {
        self.supply = Supply::Watch(bundle);
        self
    }

    /// Serves the bundle of `trust_domain` from `source`'s current snapshot
    /// instead, keeping the profile.
    #[must_use]
    pub fn serve_from_source(
        mut self,
        source: Arc<dyn SvidSource>,
        trust_domain: TrustDomain,
    ) -> Self {
        self.supply = Supply::Source {
            source,
            trust_domain: Some(trust_domain),
        };
        self
    }

    /// The `spiffe_refresh_hint` published with bundles that carry none.
    /// Default: 5 minutes.
    #[must_use]
    pub fn refresh_hint(mut self, hint: Duration) -> Self {
        self.refresh_hint = hint;
        self
    }

    /// The rustls crypto provider. Default: [`zt_tls::default_provider`].
    #[must_use]
    pub fn crypto_provider(mut self, provider: Arc<CryptoProvider>) -> Self {
        self.provider = Some(provider);
        self
    }

    fn tls_config(&self) -> Result<ServerConfig, ServerError> {
        let provider = self
            .provider
            .clone()
            .unwrap_or_else(|| Arc::new(zt_tls::default_provider()));
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth();
        let mut config =
            match &self.identity {
                Identity::Web { chain, key } => {
                    builder.with_single_cert(chain.clone(), key.clone_key())?
                }
                Identity::Spiffe(source) => builder.with_cert_resolver(Arc::new(
                    SvidResolver::new(source.clone(), provider, Side::Server),
                )),
            };
        config.session_storage = Arc::new(NoServerSessionStorage {});
        config.send_tls13_tickets = 0;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(config)
    }

    /// Listens on `addr` and serves until the returned handle is dropped
    /// or shut down. Must be called inside a Tokio runtime.
    ///
    /// # Errors
    ///
    /// [`ServerError::Bind`] when the address cannot be bound,
    /// [`ServerError::Tls`] when the TLS configuration is refused.
    pub async fn bind(self, addr: SocketAddr) -> Result<RunningBundleEndpoint, ServerError> {
        let config = self.tls_config()?;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| ServerError::Bind {
                addr: addr.to_string(),
                source,
            })?;
        let local_addr = listener.local_addr().map_err(|source| ServerError::Bind {
            addr: addr.to_string(),
            source,
        })?;
        let shared = Arc::new(Shared {
            supply: self.supply,
            refresh_hint: self.refresh_hint,
            sequencer: Mutex::new(Sequencer::new(SystemTime::now())),
        });
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let task = tokio::spawn(accept_loop(listener, acceptor, shared));
        Ok(RunningBundleEndpoint {
            local_addr,
            task: Some(task),
        })
    }
}

async fn accept_loop(listener: TcpListener, acceptor: TlsAcceptor, shared: Arc<Shared>) {
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(conn) => conn,
            Err(e) => {
                tracing::warn!(target: "zt::federation", error = %e, "bundle endpoint accept failed");
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let shared = shared.clone();
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp))
                .await
            {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::debug!(target: "zt::federation", %peer, error = %e, "bundle endpoint handshake failed");
                    return;
                }
                Err(_) => return,
            };
            let service = service_fn(move |request: Request<Incoming>| {
                let response = shared.respond(&request);
                async move { Ok::<_, Infallible>(response) }
            });
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(tls), service)
                .await
            {
                tracing::debug!(target: "zt::federation", %peer, error = %e, "bundle endpoint connection ended");
            }
        });
    }
}

/// A running bundle endpoint; it stops when dropped.
#[derive(Debug)]
pub struct RunningBundleEndpoint {
    local_addr: SocketAddr,
    task: Option<JoinHandle<()>>,
}

impl RunningBundleEndpoint {
    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The endpoint URL, `https://<address>/`.
    pub fn url(&self) -> String {
        format!("https://{}/", self.local_addr)
    }

    /// Stops accepting connections and returns once the listening socket
    /// is closed. Connections already accepted finish their exchange.
    pub async fn shutdown(mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            // The task ends by cancellation; its result says only that.
            let _ = task.await;
        }
    }
}

impl Drop for RunningBundleEndpoint {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
