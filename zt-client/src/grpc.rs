//! A connector for `tonic::transport::Channel`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::builder::ZtClient;
use crate::error::Error;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Dials a gRPC server over mutual TLS (ALPN `h2`); pass it to
/// `tonic::transport::Endpoint::connect_with_connector`.
///
/// Use an `http://` URI for the endpoint: TLS is done by this connector,
/// not by tonic.
#[derive(Clone, Debug)]
pub struct GrpcConnector {
    config: Arc<ClientConfig>,
}

impl ZtClient {
    /// A connector for tonic channels.
    pub fn grpc_connector(&self) -> GrpcConnector {
        GrpcConnector {
            config: self.rustls_config_with_alpn(vec![b"h2".to_vec()]),
        }
    }

    /// Connects a tonic channel to `uri` (`http://host:port`) over mutual TLS.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidAddress`] for a bad URI, [`Error::Grpc`] if the
    /// connection fails.
    pub async fn grpc_channel(&self, uri: &str) -> Result<tonic::transport::Channel, Error> {
        let endpoint = tonic::transport::Endpoint::from_shared(uri.to_owned()).map_err(|e| {
            Error::InvalidAddress {
                address: uri.to_owned(),
                reason: e.to_string(),
            }
        })?;
        Ok(endpoint
            .connect_with_connector(self.grpc_connector())
            .await?)
    }
}

impl tower::Service<http::Uri> for GrpcConnector {
    type Response = TokioIo<TlsStream<TcpStream>>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let config = self.config.clone();
        Box::pin(async move {
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
            zt_tls::record_handshake(zt_tls::Side::Client, started, tls.as_ref().map(|_| ()));
            let tls = tls?;
            Ok(TokioIo::new(tls))
        })
    }
}
