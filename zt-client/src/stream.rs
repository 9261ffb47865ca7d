//! A mutual-TLS stream that ends when its server is no longer trusted.

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::ClientConnection;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use zt_core::live::{ConnectionGuard, EndSignal, TrustEnded};
use zt_core::x509::VerifiedSvid;

type Ended = Pin<Box<dyn Future<Output = TrustEnded> + Send>>;

/// A mutual-TLS connection to a verified server, registered with the
/// client's [`TrustMonitor`](zt_core::live::TrustMonitor).
///
/// Reads and writes pass through to the TLS stream while the server is
/// trusted. Once it is not — its chain is about to expire, it is revoked,
/// the bundle of its trust domain no longer verifies it, or the pin is
/// replaced ([`ZtClient::replace_server_pin`](crate::ZtClient::replace_server_pin))
/// — every read and write fails with an [`io::Error`] of kind
/// `ConnectionAborted` that wraps the [`TrustEnded`], and dropping the
/// stream closes the connection. [`TrustEnded::find`] gets the reason out
/// of the `io::Error`; HTTP/2 errors built on it keep only its message, so
/// take the stream's [`signal`](Self::signal) before handing the stream to
/// hyper to read the reason afterwards.
pub struct ZtStream {
    tls: TlsStream<TcpStream>,
    guard: Arc<ConnectionGuard>,
    ended: Ended,
    closed: Option<TrustEnded>,
}

impl fmt::Debug for ZtStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ZtStream")
            .field("server", self.guard.peer().id())
            .field("closed", &self.closed)
            .finish_non_exhaustive()
    }
}

impl ZtStream {
    pub(crate) fn new(tls: TlsStream<TcpStream>, guard: ConnectionGuard) -> Self {
        let guard = Arc::new(guard);
        let watched = guard.clone();
        Self {
            tls,
            guard,
            ended: Box::pin(async move { watched.ended().await }),
            closed: None,
        }
    }

    /// The TCP stream and the rustls connection, as
    /// [`TlsStream::get_ref`] gives them.
    pub fn get_ref(&self) -> (&TcpStream, &ClientConnection) {
        self.tls.get_ref()
    }

    /// The TLS stream.
    pub fn tls_stream(&self) -> &TlsStream<TcpStream> {
        &self.tls
    }

    /// The server, as verified when the connection was opened.
    pub fn server(&self) -> &VerifiedSvid {
        self.guard.peer()
    }

    /// The connection's end signal.
    pub fn signal(&self) -> EndSignal {
        self.guard.signal()
    }

    /// `Err` once the server is no longer trusted; registers the task to be
    /// woken when that happens.
    fn check(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        if self.closed.is_none()
            && let Poll::Ready(ended) = self.ended.as_mut().poll(cx)
        {
            tracing::debug!(target: "zt::client", server = %ended.peer(), reason = %ended.reason(), "server no longer trusted; ending the connection");
            self.closed = Some(ended);
        }
        match &self.closed {
            Some(ended) => Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                ended.clone(),
            )),
            None => Ok(()),
        }
    }
}

impl AsyncRead for ZtStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.check(cx)?;
        Pin::new(&mut self.tls).poll_read(cx, buf)
    }
}

impl AsyncWrite for ZtStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.check(cx)?;
        Pin::new(&mut self.tls).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.check(cx)?;
        Pin::new(&mut self.tls).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tls.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.check(cx)?;
        Pin::new(&mut self.tls).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tls).poll_shutdown(cx)
    }
}
