//! Dialing a server by URI over mutual TLS, and a pooled hyper client
//! whose connections end with their server's trust.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use zt_tls::{PeerRejected, Side};

use crate::builder::ZtClient;
use crate::stream::ZtStream;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Opens a TCP connection to `uri`'s host and port (443 by default),
/// completes the mutual-TLS handshake with `config` and registers the
/// connection with `client`'s trust monitor.
pub(crate) async fn dial(
    client: &ZtClient,
    config: Arc<ClientConfig>,
    uri: &http::Uri,
) -> Result<ZtStream, BoxError> {
    let host = uri
        .host()
        .ok_or_else(|| format!("URI `{uri}` has no host"))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = uri.port_u16().unwrap_or(443);
    let tcp = TcpStream::connect((host.as_str(), port)).await?;
    tcp.set_nodelay(true)?;
    let name = ServerName::try_from(host)?;
    let started = std::time::Instant::now();
    let tls = TlsConnector::from(config).connect(name, tcp).await;
    zt_tls::record_handshake(Side::Client, started, tls.as_ref().map(|_| ()));
    let tls = tls?;
    Ok(client
        .admit(tls)
        .map_err(|e| PeerRejected::new(Side::Client, e))?)
}

/// A connector for hyper-util's pooled client: each connection is a
/// [`ZtStream`] (ALPN `h2` or `http/1.1`), so a pooled connection to a
/// server that is no longer trusted fails and leaves the pool, and the
/// next request dials and verifies again.
#[derive(Clone, Debug)]
pub struct HttpConnector {
    config: Arc<ClientConfig>,
    client: ZtClient,
}

/// One connection made by [`HttpConnector`].
#[derive(Debug)]
pub struct HttpConnection {
    io: TokioIo<ZtStream>,
}

impl HttpConnection {
    /// The underlying stream.
    pub fn stream(&self) -> &ZtStream {
        self.io.inner()
    }
}

impl Connection for HttpConnection {
    fn connected(&self) -> Connected {
        let connected = Connected::new();
        if self.stream().get_ref().1.alpn_protocol() == Some(b"h2") {
            connected.negotiated_h2()
        } else {
            connected
        }
    }
}

impl hyper::rt::Read for HttpConnection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for HttpConnection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }
}

impl tower::Service<http::Uri> for HttpConnector {
    type Response = HttpConnection;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<HttpConnection, BoxError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let config = self.config.clone();
        let client = self.client.clone();
        Box::pin(async move {
            let stream = dial(&client, config, &uri).await?;
            Ok(HttpConnection {
                io: TokioIo::new(stream),
            })
        })
    }
}

/// A pooled HTTP client (HTTP/1.1 and HTTP/2 by ALPN) built by
/// [`ZtClient::http_client`].
pub type HttpClient<B> = hyper_util::client::legacy::Client<HttpConnector, B>;

impl ZtClient {
    /// A connector for hyper-util's pooled client (ALPN `h2` and
    /// `http/1.1`).
    pub fn http_connector(&self) -> HttpConnector {
        HttpConnector {
            config: self.rustls_config(),
            client: self.clone(),
        }
    }

    /// A pooled hyper client over this client's mutual TLS, for `https://`
    /// URIs. Unlike a `reqwest::Client`, whose pool zt cannot see into,
    /// its connections are [`ZtStream`]s: one to a server that is revoked,
    /// whose chain no longer verifies or expires, or that the pin no longer
    /// accepts fails and leaves the pool.
    pub fn http_client<B>(&self) -> HttpClient<B>
    where
        B: http_body::Body + Send + 'static,
        B::Data: Send,
    {
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build(self.http_connector())
    }
}
