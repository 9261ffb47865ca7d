//! A connector for `tonic::transport::Channel`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper_util::rt::TokioIo;
use rustls::ClientConfig;

use crate::builder::ZtClient;
use crate::error::Error;
use crate::stream::ZtStream;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Dials a gRPC server over mutual TLS (ALPN `h2`); pass it to
/// `tonic::transport::Endpoint::connect_with_connector`.
///
/// Use an `http://` URI for the endpoint: TLS is done by this connector,
/// not by tonic.
///
/// Each connection is a [`ZtStream`]: it ends when the server is no longer
/// trusted, and the channel reconnects (verifying the server again).
#[derive(Clone, Debug)]
pub struct GrpcConnector {
    config: Arc<ClientConfig>,
    client: ZtClient,
}

impl ZtClient {
    /// A connector for tonic channels.
    pub fn grpc_connector(&self) -> GrpcConnector {
        GrpcConnector {
            config: self.rustls_config_with_alpn(vec![b"h2".to_vec()]),
            client: self.clone(),
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
    type Response = TokioIo<ZtStream>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let config = self.config.clone();
        let client = self.client.clone();
        Box::pin(async move {
            let stream = crate::connector::dial(&client, config, &uri).await?;
            Ok(TokioIo::new(stream))
        })
    }
}
