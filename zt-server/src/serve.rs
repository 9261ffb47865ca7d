//! The accept loop: handshakes off the accept path, a `VerifiedPeer` on
//! every request, graceful shutdown.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio_rustls::server::TlsStream;
use tower::{Service, ServiceExt as _};
use zt_core::x509::inspect_leaf;
use zt_tls::{PeerRejected, Posture, Side, record_handshake, record_handshake_timeout};

use crate::builder::ZtServer;
use crate::error::Error;
use crate::peer::VerifiedPeer;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How long [`ZtServer::serve`] waits for open connections to finish after
/// shutdown is signalled.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Recovers the verified identity of a completed handshake.
///
/// The handshake completed, so the verifier accepted the chain; only the
/// identity fields are read back here.
fn peer_of(tls: &TlsStream<TcpStream>) -> Option<VerifiedPeer> {
    let (_, conn) = tls.get_ref();
    let leaf = conn.peer_certificates()?.first()?;
    let posture = Posture::of(conn);
    inspect_leaf(leaf)
        .ok()
        .map(|info| VerifiedPeer::from_verified_leaf(info, posture))
}

impl ZtServer {
    /// Serves HTTP (HTTP/1.1 and HTTP/2, by ALPN) over mutual TLS on
    /// `listener` until `shutdown` completes, then waits up to
    /// [`SHUTDOWN_GRACE`] for open connections to finish.
    ///
    /// `service` is any tower HTTP service: an axum `Router`, tonic
    /// `Routes`, or a stack of layers over them. Every request it sees
    /// carries the connection's [`VerifiedPeer`] in its extensions. Each
    /// connection ends gracefully shortly before its peer's certificate
    /// expires ([`EXPIRY_MARGIN`]), so the client reconnects with its
    /// current SVID.
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
        let clock = self.clock.clone();
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
            let clock = clock.clone();
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
                let Some(peer) = peer_of(&tls) else {
                    tracing::warn!(target: "zt::server", %remote, "no verified peer after handshake; closing");
                    return;
                };
                tracing::debug!(target: "zt::server", %remote, peer = %peer.id(), serial = %peer.serial_hex(), "connection accepted");
                // The connection ends, gracefully, before the peer's
                // certificate expires: the client then reconnects with its
                // current SVID instead of having requests refused as
                // expired (which `AuthorizeLayer` checks per request).
                let expires_in = connection_lifetime(
                    peer.not_after()
                        .duration_since(clock.now())
                        .unwrap_or(Duration::ZERO),
                );
                let peer_id = peer.id().clone();
                let hyper_service =
                    hyper::service::service_fn(move |mut req: Request<Incoming>| {
                        req.extensions_mut().insert(peer.clone());
                        service.clone().oneshot(req)
                    });
                let builder = auto::Builder::new(TokioExecutor::new());
                let conn = builder
                    .serve_connection(TokioIo::new(tls), hyper_service)
                    .into_owned();
                tokio::pin!(conn);
                let expiry = tokio::time::sleep(expires_in);
                tokio::pin!(expiry);
                let ended = tokio::select! {
                    ended = conn.as_mut() => Some(ended),
                    _ = stop.wait_for(|stopped| *stopped) => None,
                    () = &mut expiry => {
                        tracing::debug!(target: "zt::server", %remote, peer = %peer_id, "peer certificate expired; ending the connection");
                        None
                    }
                };
                let ended = match ended {
                    Some(ended) => ended,
                    None => {
                        conn.as_mut().graceful_shutdown();
                        conn.await
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

/// The most the server keeps a connection open when its peer's certificate
/// expires in `remaining`: [`EXPIRY_MARGIN`] less, or half of it when it is
/// shorter than twice the margin, so the connection ends while a request
/// sent on it is still judged valid.
fn connection_lifetime(remaining: Duration) -> Duration {
    remaining.saturating_sub(EXPIRY_MARGIN.min(remaining / 2))
}

/// How long before its peer's certificate expires a connection is ended.
pub const EXPIRY_MARGIN: Duration = Duration::from_secs(5);

fn is_transient(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionAborted | ConnectionReset | Interrupted | WouldBlock | TimedOut
    ) || e
        .raw_os_error()
        .is_some_and(|code| code == 24 || code == 23)
}
