//! The accept loop: handshakes off the accept path, a `VerifiedPeer` on
//! every request, graceful shutdown.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use http_body::{Body, Frame, SizeHint};

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rustls_pki_types::CertificateDer;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio_rustls::server::TlsStream;
use tower::{Service, ServiceExt as _};
use zt_core::live::{ConnectionGuard, EndSignal, TrustEnded, TrustMonitor};
use zt_core::x509::inspect_leaf;
use zt_tls::{PeerRejected, Posture, Side, record_handshake, record_handshake_timeout};

use crate::builder::ZtServer;
use crate::error::Error;
use crate::peer::VerifiedPeer;
use crate::trust::{TrustBoundBody, is_grpc};
use crate::watched::{First, Watched};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How long [`ZtServer::serve`] waits for open connections to finish after
/// shutdown is signalled.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Registers a completed handshake's peer with the server's trust monitor
/// and reads back its identity and the negotiated posture.
///
/// The handshake completed, so the verifier accepted the chain; admission
/// judges it again under the monitor's lock, so a change of trust between
/// the two is not missed.
fn admit(
    monitor: &TrustMonitor,
    tls: &TlsStream<TcpStream>,
) -> Result<(VerifiedPeer, ConnectionGuard), String> {
    let (_, conn) = tls.get_ref();
    let chain: Vec<CertificateDer<'static>> = conn
        .peer_certificates()
        .ok_or("no peer certificate after the handshake")?
        .iter()
        .map(|c| c.clone().into_owned())
        .collect();
    let leaf = chain
        .first()
        .ok_or("empty peer chain after the handshake")?;
    let info = inspect_leaf(leaf).map_err(|e| e.to_string())?;
    let posture = Posture::of(conn);
    let guard = monitor.admit(chain).map_err(|e| e.to_string())?;
    Ok((VerifiedPeer::from_verified_leaf(info, posture), guard))
}

impl ZtServer {
    /// Serves HTTP (HTTP/1.1 and HTTP/2, by ALPN) over mutual TLS on
    /// `listener` until `shutdown` completes, then waits up to
    /// [`SHUTDOWN_GRACE`] for open connections to finish.
    ///
    /// `service` is any tower HTTP service: an axum `Router`, tonic
    /// `Routes`, or a stack of layers over them. Every request it sees
    /// carries the connection's [`VerifiedPeer`] in its extensions — except,
    /// on a server with token callers (`ServerBuilder::token_callers`,
    /// feature `oidc`), a request on a connection without a client
    /// certificate: that one reaches the service only once its OIDC token
    /// is verified, and carries the token instead; without a valid token it
    /// is refused with `401` / `UNAUTHENTICATED`.
    ///
    /// No connection outlives the trust it was opened on. Each one is
    /// registered with the server's [`TrustMonitor`] and ends when
    ///
    /// - its peer's certificate chain is about to expire: GOAWAY
    ///   [`EXPIRY_MARGIN`] before, so requests in flight finish and the
    ///   client reconnects with its current SVID; what still runs when the
    ///   chain expires is ended then;
    /// - the peer's SPIFFE ID or leaf serial is revoked (the
    ///   [`ServerBuilder::revocations`](crate::ServerBuilder::revocations)
    ///   list);
    /// - the bundle of the peer's trust domain changes so that its chain no
    ///   longer verifies, or the trust domain is no longer trusted;
    /// - the accepted callers are replaced
    ///   ([`ZtServer::replace_accepted_callers`]) and no longer match it.
    ///
    /// Ending is graceful: HTTP/2 GOAWAY (HTTP/1 closes after the current
    /// response), in-flight streaming responses end at once (gRPC with
    /// `PERMISSION_DENIED` for a revoked or unpinned caller,
    /// `UNAUTHENTICATED` for an expired or untrusted chain), and the
    /// connection is closed once its requests finish or after
    /// [`ServerBuilder::trust_end_grace`](crate::ServerBuilder::trust_end_grace).
    /// The reason is recorded under the `zt::audit` target
    /// (`event = "connection-ended"`); nothing of it reaches the client.
    ///
    /// # Errors
    ///
    /// [`Error::Accept`] if the listener fails for good. Failed handshakes
    /// and connection errors are logged, not returned.
    pub async fn serve<S, B>(
        &self,
        listener: TcpListener,
        service: S,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), Error>
    where
        S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
        B: http_body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        let acceptor = self.tls_acceptor();
        let permits = Arc::new(Semaphore::new(self.max_handshakes));
        // Set when shutdown is signalled; every connection then ends
        // gracefully. Each connection task holds a sender of `open_tx`, so
        // `open_rx` closes once the last one has ended.
        let (stop_tx, stop_rx) = watch::channel(false);
        let (open_tx, mut open_rx) = mpsc::channel::<()>(1);
        let handshake_timeout = self.handshake_timeout;
        let trust_end_grace = self.trust_end_grace;
        let monitor = self.monitor.clone();
        let token_callers = self.token_callers.clone();
        tokio::pin!(shutdown);

        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                () = &mut shutdown => break,
            };
            let (tcp, remote) = match accepted {
                Ok(conn) => conn,
                Err(e) if is_transient(&e) => {
                    // Out of descriptors and the like: back off briefly.
                    tracing::warn!(target: "zt::server", error = %e, "accept failed; retrying");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
                Err(e) => return Err(Error::Accept(e)),
            };
            let permit = tokio::select! {
                permit = permits.clone().acquire_owned() => match permit {
                    Ok(p) => p,
                    Err(_) => break,
                },
                () = &mut shutdown => break,
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            let service = service.clone();
            let mut stop = stop_rx.clone();
            let open = open_tx.clone();
            let monitor = monitor.clone();
            let token_callers = token_callers.clone();
            tokio::spawn(async move {
                let _open = open;
                let started = std::time::Instant::now();
                let accepted = tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)).await;
                match &accepted {
                    Ok(result) => {
                        record_handshake(Side::Server, started, result.as_ref().map(|_| ()))
                    }
                    Err(_) => record_handshake_timeout(Side::Server, started),
                }
                let tls = match accepted {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(e)) => {
                        match PeerRejected::find(&e) {
                            // The verifier logged the reason as a warning.
                            Some(rejected) => {
                                tracing::info!(target: "zt::server", %remote, reason = %rejected.error(), "handshake refused");
                            }
                            None => {
                                tracing::info!(target: "zt::server", %remote, error = %e, "handshake failed");
                            }
                        }
                        return;
                    }
                    Err(_) => {
                        tracing::info!(target: "zt::server", %remote, "handshake timed out");
                        return;
                    }
                };
                drop(permit);
                // Without a client certificate (only possible with token
                // callers) the connection has no peer and no trust to
                // monitor; each request is authenticated by its token.
                let token_only =
                    token_callers.enabled() && tls.get_ref().1.peer_certificates().is_none();
                let (peer, guard) = if token_only {
                    tracing::debug!(target: "zt::server", %remote, "connection without a client certificate accepted for token callers");
                    (None, None)
                } else {
                    match admit(&monitor, &tls) {
                        Ok((peer, guard)) => {
                            tracing::debug!(target: "zt::server", %remote, peer = %peer.id(), serial = %peer.serial_hex(), "connection accepted");
                            (Some(peer), Some(guard))
                        }
                        Err(reason) => {
                            tracing::info!(target: "zt::server", %remote, %reason, "peer refused after the handshake; closing");
                            return;
                        }
                    }
                };
                let signal = guard
                    .as_ref()
                    .map_or_else(EndSignal::unmonitored, ConnectionGuard::signal);
                let token_callers = token_callers.clone();
                let extensions = peer.map(peer_extensions);
                let hyper_service =
                    hyper::service::service_fn(move |mut req: Request<Incoming>| {
                        let grpc = is_grpc(&req);
                        match &extensions {
                            Some(extensions) => {
                                req.extensions_mut().extend(extensions.clone());
                                Serving::Peer {
                                    call: service.clone().oneshot(req),
                                    signal: signal.clone(),
                                    grpc,
                                }
                            }
                            None => {
                                let service = service.clone();
                                let token_callers = token_callers.clone();
                                let signal = signal.clone();
                                Serving::Token {
                                    future: Box::pin(async move {
                                        let body = match token_callers.admit(&mut req).await {
                                            Ok(()) => {
                                                service.oneshot(req).await?.map(ServeBody::inner)
                                            }
                                            Err(refused) => refused.map(ServeBody::refused),
                                        };
                                        Ok(body.map(|body| TrustBoundBody::new(body, signal, grpc)))
                                    }),
                                }
                            }
                        }
                    });
                let builder = auto::Builder::new(TokioExecutor::new());
                let conn = builder
                    .serve_connection(TokioIo::new(tls), hyper_service)
                    .into_owned();
                tokio::pin!(conn);
                enum Event {
                    Ended(Result<(), BoxError>),
                    Shutdown,
                    Expiring,
                    Untrusted(TrustEnded),
                }
                // The watchers fire at most once; they are polled only when
                // one of them woke the task, not on every frame. When two
                // are ready together the stricter end wins: trust over
                // expiry over shutdown.
                let watch = async {
                    tokio::select! {
                        biased;
                        ended = trust_ended(guard.as_ref()) => Event::Untrusted(ended),
                        () = expiring(guard.as_ref()) => Event::Expiring,
                        _ = stop.wait_for(|stopped| *stopped) => Event::Shutdown,
                    }
                };
                let event = match Watched::new(conn.as_mut(), watch).await {
                    First::Conn(ended) => Event::Ended(ended),
                    First::Watch(event) => event,
                };
                let ended = match event {
                    Event::Ended(ended) => ended,
                    Event::Shutdown => {
                        conn.as_mut().graceful_shutdown();
                        conn.await
                    }
                    // The peer is still valid for a few seconds: GOAWAY, and
                    // requests in flight finish. Whatever still runs when its
                    // chain expires is ended then.
                    Event::Expiring => {
                        tracing::debug!(target: "zt::server", %remote, "peer certificate about to expire; ending the connection");
                        conn.as_mut().graceful_shutdown();
                        tokio::select! {
                            ended = conn.as_mut() => ended,
                            _ = trust_ended(guard.as_ref()) => {
                                match tokio::time::timeout(trust_end_grace, conn.as_mut()).await {
                                    Ok(ended) => ended,
                                    Err(_) => return,
                                }
                            }
                        }
                    }
                    Event::Untrusted(ended) => {
                        tracing::debug!(target: "zt::server", %remote, peer = %ended.peer(), reason = %ended.reason(), "peer no longer trusted; ending the connection");
                        conn.as_mut().graceful_shutdown();
                        match tokio::time::timeout(trust_end_grace, conn.as_mut()).await {
                            Ok(ended) => ended,
                            Err(_) => {
                                tracing::debug!(target: "zt::server", %remote, "grace period over; closing the connection");
                                return;
                            }
                        }
                    }
                };
                if let Err(e) = ended {
                    tracing::debug!(target: "zt::server", %remote, error = %e, "connection ended with error");
                }
            });
        }

        drop(listener);
        stop_tx.send_replace(true);
        drop(open_tx);
        tokio::select! {
            _ = open_rx.recv() => {}
            () = tokio::time::sleep(SHUTDOWN_GRACE) => {
                tracing::warn!(target: "zt::server", "connections still open after the shutdown grace period");
            }
        }
        Ok(())
    }
}

/// Completes when the peer's certificate is about to expire; never for a
/// connection without a peer.
async fn expiring(guard: Option<&ConnectionGuard>) {
    match guard {
        Some(guard) => guard.expiring().await,
        None => std::future::pending().await,
    }
}

/// Completes when the peer is no longer trusted; never for a connection
/// without a peer.
async fn trust_ended(guard: Option<&ConnectionGuard>) -> TrustEnded {
    match guard {
        Some(guard) => guard.ended().await,
        None => std::future::pending().await,
    }
}

/// The response to one request, bound to its connection's trust.
type Served<B, E> = Result<Response<TrustBoundBody<ServeBody<B>>>, E>;

/// A token caller's request: admitted, then served.
type TokenServing<B, E> = Pin<Box<dyn Future<Output = Served<B, E>> + Send>>;

pin_project_lite::pin_project! {
    /// The future of one request on a [`ZtServer::serve`] connection.
    /// A request of the connection's mTLS peer (the common case) is the
    /// service's call, held inline; a token caller's, rare, is boxed, so
    /// that it does not size the task of every other request.
    #[project = ServingProj]
    enum Serving<F, B, E> {
        Peer {
            #[pin]
            call: F,
            signal: EndSignal,
            grpc: bool,
        },
        Token {
            future: TokenServing<B, E>,
        },
    }
}

impl<F, B, E> Future for Serving<F, B, E>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Served<B, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            ServingProj::Peer { call, signal, grpc } => call.poll(cx).map_ok(|response| {
                response
                    .map(|body| TrustBoundBody::new(ServeBody::inner(body), signal.clone(), *grpc))
            }),
            ServingProj::Token { future } => future.as_mut().poll(cx),
        }
    }
}

pin_project_lite::pin_project! {
    /// The body of a response [`ZtServer::serve`] sends: the service's,
    /// or the refusal of a token caller's request.
    struct ServeBody<B> {
        #[pin]
        kind: ServeBodyKind<B>,
    }
}

pin_project_lite::pin_project! {
    #[project = ServeBodyProj]
    enum ServeBodyKind<B> {
        Inner {
            #[pin]
            body: B,
        },
        Refused {
            bytes: Option<Bytes>,
        },
    }
}

impl<B> ServeBody<B> {
    fn inner(body: B) -> Self {
        Self {
            kind: ServeBodyKind::Inner { body },
        }
    }

    fn refused(bytes: Bytes) -> Self {
        Self {
            kind: ServeBodyKind::Refused {
                bytes: Some(bytes).filter(|b| !b.is_empty()),
            },
        }
    }
}

/// A data chunk of a [`ServeBody`].
enum ServeData<D> {
    Inner(D),
    Refused(Bytes),
}

impl<D: Buf> Buf for ServeData<D> {
    fn remaining(&self) -> usize {
        match self {
            Self::Inner(d) => d.remaining(),
            Self::Refused(b) => b.remaining(),
        }
    }

    fn chunk(&self) -> &[u8] {
        match self {
            Self::Inner(d) => d.chunk(),
            Self::Refused(b) => b.chunk(),
        }
    }

    fn advance(&mut self, cnt: usize) {
        match self {
            Self::Inner(d) => d.advance(cnt),
            Self::Refused(b) => b.advance(cnt),
        }
    }
}

impl<B: Body> Body for ServeBody<B> {
    type Data = ServeData<B::Data>;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        match self.project().kind.project() {
            ServeBodyProj::Inner { body } => body
                .poll_frame(cx)
                .map(|frame| frame.map(|f| f.map(|f| f.map_data(ServeData::Inner)))),
            ServeBodyProj::Refused { bytes } => {
                Poll::Ready(bytes.take().map(|b| Ok(Frame::data(ServeData::Refused(b)))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            ServeBodyKind::Inner { body } => body.is_end_stream(),
            ServeBodyKind::Refused { bytes } => bytes.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            ServeBodyKind::Inner { body } => body.size_hint(),
            ServeBodyKind::Refused { bytes } => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
        }
    }
}

/// How long before its peer's certificate expires a connection is ended.
pub use zt_core::live::EXPIRY_MARGIN;

fn is_transient(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionAborted | ConnectionReset | Interrupted | WouldBlock | TimedOut
    ) || e
        .raw_os_error()
        .is_some_and(|code| code == 24 || code == 23)
}

/// The extensions every request of a connection with `peer` starts with:
/// the peer, in a map with room for six more entries.
///
/// An empty request's map takes the copy as it is, room included. The
/// layers after `ZtServer` add their own entries (`JwtAuthLayer` the
/// JWT-SVID and user context, axum the matched route and path parameters);
/// a map sized for one entry would grow on the fourth, which moves every
/// entry into a new allocation on each request.
fn peer_extensions(peer: VerifiedPeer) -> http::Extensions {
    /// Placeholders that size the map; removed before it is used.
    #[derive(Clone)]
    struct Room<const N: usize>;
    let mut extensions = http::Extensions::new();
    extensions.insert(Room::<1>);
    extensions.insert(Room::<2>);
    extensions.insert(Room::<3>);
    extensions.insert(peer);
    extensions.remove::<Room<1>>();
    extensions.remove::<Room<2>>();
    extensions.remove::<Room<3>>();
    extensions
}
