//! The two HTTP stacks the request and load benches compare, on loopback:
//!
//! - **zt**: `ZtServer` (mutual TLS, `VerifiedPeer` on every request) in
//!   front of an axum router wrapped in `AuthorizeLayer` (policy decision
//!   and an audit record written by the JSON-lines writer), optionally
//!   `JwtAuthLayer`, or with `AuthorizeLayer` as the router's route layer;
//!   the client is a `ZtClient` connection.
//! - **plain**: the same axum router with no zt layer, behind a tokio-rustls
//!   acceptor with rustls's webpki client verifier; the client is a plain
//!   tokio-rustls connection with the same certificate.
//!
//! Both use zt's default crypto provider, HTTP/2 over one kept-alive
//! connection per client, and the same handler.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::Path;
use axum::routing::get;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::ServerName;
use tokio::net::{TcpListener, TcpStream};
use tower::Layer as _;
use zt_authz::Authorizer;
use zt_authz::audit::JsonLinesAuditWriter;
use zt_authz::policy::Policy;
use zt_client::ZtClient;
use zt_core::live::{ConnectionGuard, TrustMonitor};
use zt_core::matcher::IdMatcher;
use zt_core::peer::PeerVerifier;
use zt_core::revocation::Revocations;
use zt_core::source::SvidSource;
use zt_core::x509::Usage;
use zt_core::{SpiffeId, TrustDomain};
use zt_dev::{FakeCa, FakeCaSource};
use zt_server::{AuthorizeLayer, JwtAuthLayer, VerifiedPeer, ZtServer};

const TTL: Duration = Duration::from_secs(3600);
pub(crate) const BILLING: &str = "spiffe://example.org/billing";
pub(crate) const POLICY: &str = r#"
version = "bench-1"

[[rule]]
id = "orders-reads-invoices"
effect = "allow"
callers = ["spiffe://example.org/orders"]
http = [{ method = "GET", path = "/invoices/{id}" }]
"#;

async fn invoice(Path(id): Path<u32>) -> String {
    format!("invoice {id}")
}

pub(crate) fn router() -> Router {
    Router::new().route("/invoices/{id}", get(invoice))
}

/// Which server stack to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stack {
    /// zt with `AuthorizeLayer` around the router, and audit.
    Zt,
    /// zt with `JwtAuthLayer` in front of `AuthorizeLayer`, both around the
    /// router.
    ZtJwt,
    /// zt with `AuthorizeLayer` around the router and no audit sink (the
    /// decision is still emitted as a `tracing` event, with no subscriber).
    ZtNoAudit,
    /// zt with `AuthorizeLayer` as axum's route layer (route templates in
    /// rules and audit records), and audit.
    ZtRouteLayer,
    /// `ZtServer` alone: mutual TLS and `VerifiedPeer`, no layer.
    ZtBare,
    /// Plain tokio-rustls and axum.
    Plain,
}

/// Identities and servers for one bench run.
pub(crate) struct Env {
    ca: FakeCa,
    orders: Arc<FakeCaSource>,
    billing: Arc<FakeCaSource>,
    /// The JWT-SVID `orders` sends to the `ZtJwt` stack.
    pub(crate) token: String,
}

impl Env {
    pub(crate) fn new() -> Self {
        let ca = FakeCa::new(TrustDomain::new("example.org").unwrap()).unwrap();
        let orders = FakeCaSource::new(
            ca.clone(),
            SpiffeId::new("spiffe://example.org/orders").unwrap(),
            TTL,
        )
        .unwrap();
        let billing = FakeCaSource::with_dns_names(
            ca.clone(),
            SpiffeId::new(BILLING).unwrap(),
            TTL,
            vec!["billing.test".into()],
        )
        .unwrap();
        let token = ca
            .issue_jwt_svid(orders.id(), &[BILLING], TTL)
            .unwrap()
            .token()
            .to_owned();
        Self {
            ca,
            orders,
            billing,
            token,
        }
    }

    /// Starts a server of `stack` on 127.0.0.1 and returns its address.
    pub(crate) async fn serve(&self, stack: Stack) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        match stack {
            Stack::ZtBare => self.spawn_zt(listener, router()),
            Stack::Zt | Stack::ZtNoAudit => self.spawn_zt(
                listener,
                AuthorizeLayer::new(Self::authorizer(stack == Stack::Zt)).layer(router()),
            ),
            Stack::ZtJwt => self.spawn_zt(
                listener,
                self.jwt_layer()
                    .layer(AuthorizeLayer::new(Self::authorizer(true)).layer(router())),
            ),
            Stack::ZtRouteLayer => self.spawn_zt(
                listener,
                router().route_layer(AuthorizeLayer::new(Self::authorizer(true))),
            ),
            Stack::Plain => {
                let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(self.plain_server()));
                let app = router();
                tokio::spawn(async move {
                    loop {
                        let (tcp, _) = listener.accept().await.unwrap();
                        tcp.set_nodelay(true).unwrap();
                        let acceptor = acceptor.clone();
                        let app = app.clone();
                        tokio::spawn(async move {
                            let Ok(tls) = acceptor.accept(tcp).await else {
                                return;
                            };
                            let service = hyper_util::service::TowerToHyperService::new(app);
                            let _ =
                                hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                                    .serve_connection(TokioIo::new(tls), service)
                                    .await;
                        });
                    }
                });
            }
        }
        addr
    }

    /// Billing's `JwtAuthLayer`, accepting JWT-SVIDs for billing (with
    /// its default verified-token cache).
    pub(crate) fn jwt_layer(&self) -> JwtAuthLayer {
        JwtAuthLayer::builder(self.billing.clone(), BILLING).build()
    }

    /// Serves `service` behind a `ZtServer` of billing's on `listener`.
    fn spawn_zt<S, B>(&self, listener: TcpListener, service: S)
    where
        S: tower::Service<http::Request<hyper::body::Incoming>, Response = http::Response<B>>
            + Clone
            + Send
            + 'static,
        S::Future: Send + 'static,
        S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let server = ZtServer::builder(self.billing.clone()).build().unwrap();
        tokio::spawn(async move {
            server
                .serve(listener, service, std::future::pending())
                .await
                .unwrap();
        });
    }

    /// The extensions a `ZtServer` gives the requests of `orders` (its
    /// `VerifiedPeer`, in the map `ZtServer` makes for the connection),
    /// copied from a real request over a real handshake as the server hands
    /// it to the service, for benches that drive the router in process.
    pub(crate) async fn orders_extensions(&self) -> http::Extensions {
        use tower::ServiceExt as _;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let router = router();
        let app = tower::service_fn(move |req: http::Request<hyper::body::Incoming>| {
            tx.send(req.extensions().clone()).unwrap();
            router.clone().oneshot(req)
        });
        let server = ZtServer::builder(self.billing.clone()).build().unwrap();
        let serving = tokio::spawn(async move {
            server
                .serve(listener, app, std::future::pending())
                .await
                .unwrap();
        });
        self.connect(Stack::ZtBare, addr).await.request().await;
        let extensions = rx.recv().await.unwrap();
        serving.abort();
        assert!(VerifiedPeer::from_extensions(&extensions).is_some());
        extensions
    }

    /// A connection of `orders` admitted to a `TrustMonitor` of billing's
    /// (the monitor `ZtServer` keeps), whose guard binds response bodies to
    /// the connection's trust. Enters `runtime` for the monitor's task.
    pub(crate) fn orders_guard(
        &self,
        runtime: &tokio::runtime::Runtime,
    ) -> (TrustMonitor, ConnectionGuard) {
        let _entered = runtime.enter();
        let verifier = Arc::new(
            PeerVerifier::new(
                self.billing.clone(),
                zt_core::time::system_clock(),
                Usage::ClientAuth,
                None,
            )
            .with_revocations(Revocations::new()),
        );
        let monitor = TrustMonitor::new(verifier);
        let chain: Arc<[CertificateDer<'static>]> =
            self.orders.current().unwrap().svid().chain().into();
        let guard = monitor.admit(chain).unwrap();
        (monitor, guard)
    }

    /// An `Authorizer` on [`POLICY`], auditing to a JSON-lines writer (to
    /// `io::sink()`) when `audit` is set.
    pub(crate) fn authorizer(audit: bool) -> Authorizer {
        let mut authorizer =
            Authorizer::builder(Policy::from_toml_str(POLICY, "policy.toml").unwrap())
                .target("billing");
        if audit {
            let writer = JsonLinesAuditWriter::new(std::io::sink(), 1 << 16).unwrap();
            authorizer = authorizer.audit_sink(Arc::new(writer));
        }
        authorizer.build()
    }

    fn roots(&self) -> Arc<RootCertStore> {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca.root_certificate()).unwrap();
        Arc::new(roots)
    }

    fn plain_server(&self) -> ServerConfig {
        let provider = Arc::new(zt_tls::default_provider());
        let s = self.billing.current().unwrap();
        let verifier = WebPkiClientVerifier::builder_with_provider(self.roots(), provider.clone())
            .build()
            .unwrap();
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(
                s.svid().chain().to_vec(),
                s.svid().private_key().clone_key(),
            )
            .unwrap();
        config.alpn_protocols = vec![b"h2".to_vec()];
        config
    }

    fn plain_client(&self) -> ClientConfig {
        let c = self.orders.current().unwrap();
        let mut config = ClientConfig::builder_with_provider(Arc::new(zt_tls::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(self.roots())
            .with_client_auth_cert(
                c.svid().chain().to_vec(),
                c.svid().private_key().clone_key(),
            )
            .unwrap();
        config.alpn_protocols = vec![b"h2".to_vec()];
        config
    }

    /// Opens one HTTP/2 connection to a server of `stack` at `addr`.
    pub(crate) async fn connect(&self, stack: Stack, addr: SocketAddr) -> Conn {
        let tcp = TcpStream::connect(addr).await.unwrap();
        tcp.set_nodelay(true).unwrap();
        let io = match stack {
            Stack::Zt | Stack::ZtJwt | Stack::ZtNoAudit | Stack::ZtBare | Stack::ZtRouteLayer => {
                let client = ZtClient::builder(self.orders.clone())
                    .pin_server(BILLING.parse::<IdMatcher>().unwrap())
                    .build()
                    .unwrap();
                let config = client.rustls_config_with_alpn(vec![b"h2".to_vec()]);
                tokio_rustls::TlsConnector::from(config)
                    .connect(ServerName::try_from("billing.test").unwrap(), tcp)
                    .await
                    .unwrap()
            }
            Stack::Plain => tokio_rustls::TlsConnector::from(Arc::new(self.plain_client()))
                .connect(ServerName::try_from("billing.test").unwrap(), tcp)
                .await
                .unwrap(),
        };
        let (sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(io))
                .await
                .unwrap();
        tokio::spawn(conn);
        Conn {
            sender,
            bearer: (stack == Stack::ZtJwt).then(|| format!("Bearer {}", self.token)),
        }
    }
}

/// One client connection.
pub(crate) struct Conn {
    sender: SendRequest<Empty<Bytes>>,
    bearer: Option<String>,
}

impl Conn {
    /// The same connection, sending `token` as a bearer token with every
    /// request (for a plain server, which ignores it: the cost of carrying
    /// the token, without its check).
    pub(crate) fn carrying(mut self, token: &str) -> Self {
        self.bearer = Some(format!("Bearer {token}"));
        self
    }

    /// Sends `GET /invoices/7` and reads the whole answer; panics unless
    /// it is `200 invoice 7` (a bench of refusals would measure nothing).
    pub(crate) async fn request(&mut self) {
        let mut req = http::Request::get("https://billing.test/invoices/7");
        if let Some(bearer) = &self.bearer {
            req = req.header(http::header::AUTHORIZATION, bearer);
        }
        self.sender.ready().await.unwrap();
        let response = self
            .sender
            .send_request(req.body(Empty::new()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"invoice 7");
    }
}
