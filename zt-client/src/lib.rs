//! Mutual-TLS clients for zero-trust service calls.
//!
//! A [`ZtClient`] presents the workload's X.509-SVID from any
//! [`SvidSource`](zt_core::source::SvidSource) and accepts a server only if
//! its X.509-SVID verifies against the bundle of the server's own trust
//! domain **and** its SPIFFE ID matches the pin you configured. From one
//! `ZtClient` you get:
//!
//! | output | method |
//! |---|---|
//! | `reqwest::Client` (HTTP/1.1 and HTTP/2) | [`ZtClient::reqwest_client`] (feature `reqwest`) |
//! | connector for a `tonic` `Channel` | [`ZtClient::grpc_connector`] (feature `tonic`) |
//! | `rustls::ClientConfig` | [`ZtClient::rustls_config`] |
//! | pooled hyper client whose connections end with their server's trust | [`ZtClient::http_client`] (feature `hyper`) |
//! | `tokio_rustls::TlsConnector` / raw TLS over TCP | [`ZtClient::tls_connector`], [`ZtClient::connect`] |
//!
//! JWT-SVIDs for a target's audience go on requests through [`JwtSvids`]
//! (cached per audience, refreshed at half life, never sent close to
//! expiry): [`JwtSvids::send`] for reqwest, [`JwtSvidLayer`] for a tonic
//! channel or any tower HTTP service.
//!
//! # Quick start
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! use std::sync::Arc;
//! use zt_client::ZtClient;
//! use zt_core::matcher::IdMatcher;
//! use zt_core::source::WorkloadApiSource;
//!
//! // Identity from SPIRE (or `zt agent`) via SPIFFE_ENDPOINT_SOCKET.
//! let source = WorkloadApiSource::builder().build().await?;
//! let client = ZtClient::builder(source)
//!     .pin_server("spiffe://example.org/billing".parse::<IdMatcher>()?)
//!     .build()?;
//! let http = client.reqwest_client()?;
//! let body = http.get("https://billing.internal:8443/invoices").send().await?.text().await?;
//! # let _ = body; Ok(()) }
//! ```
//!
//! # Verification
//!
//! The rustls glue is `zt-tls`'s ([`zt_tls::TlsOptions`]). The server's
//! certificate chain goes through
//! [`zt_core::peer::verify_peer`]: every X.509-SVID rule, the bundle of the
//! server's trust domain taken from the source's *current* snapshot
//! (federation works by adding bundles to the source), then the pin. The
//! TLS server name is not matched against DNS SANs: in SPIFFE mode the
//! SPIFFE ID is the server's name. A refused server produces an error that
//! names the ID presented and the IDs expected: [`ZtClient::connect`]
//! returns it as [`Error::PeerRejected`], and [`PeerRejected::find`] gets it
//! out of any error a reqwest client or tonic channel returns:
//!
//! ```no_run
//! # async fn run(client: zt_client::ZtClient) -> Result<(), Box<dyn std::error::Error>> {
//! use zt_client::PeerRejected;
//!
//! match client.reqwest_client()?.get("https://billing:8443/").send().await {
//!     Ok(response) => println!("{}", response.status()),
//!     Err(e) => match PeerRejected::find(&e) {
//!         // "zt refused the server: the peer presented `spiffe://…`, but only … is accepted"
//!         Some(refusal) => eprintln!("{refusal}"),
//!         None => eprintln!("request failed: {e}"),
//!     },
//! }
//! # Ok(()) }
//! ```
//!
//! The client certificate is resolved from the current snapshot at every
//! handshake, so SVID rotation needs no rebuild; connections already open
//! keep working. Connections opened by [`ZtClient::connect`], the gRPC
//! connector and [`ZtClient::http_client`] are [`ZtStream`]s, judged again
//! when trust changes: one to a server that expires, is revoked, no longer
//! verifies against its trust domain's bundle or no longer matches the pin
//! ([`ZtClient::replace_server_pin`]) fails with [`TrustEnded`].
//!
//! TLS session resumption is disabled: a resumed session would skip the
//! certificate checks, and with them any change of pin, bundle or
//! revocation since the original handshake.
//!
//! One crypto provider is used, chosen explicitly:
//! [`zt_tls::default_provider`] (aws-lc-rs, hybrid post-quantum key
//! exchange X25519MLKEM768 offered first) unless you pass another with
//! [`ClientBuilder::crypto_provider`]; [`ClientBuilder::require_post_quantum`]
//! refuses servers that cannot do post-quantum key exchange. The
//! process-wide default provider is never consulted.
#![forbid(unsafe_code)]

mod builder;
#[cfg(feature = "hyper")]
mod connector;
pub mod danger;
mod error;
#[cfg(feature = "tonic")]
mod grpc;
mod jwt;
mod stream;

pub use builder::{ClientBuilder, ZtClient};
#[cfg(feature = "hyper")]
pub use connector::{HttpClient, HttpConnection, HttpConnector};
pub use error::Error;
#[cfg(feature = "tonic")]
pub use grpc::GrpcConnector;
pub use jwt::{
    AttachJwtSvid, BoxError, DEFAULT_MIN_REMAINING, JwtAttachError, JwtSvidLayer, JwtSvids,
};
pub use stream::ZtStream;
pub use zt_core::live::{EndReason, TrustEnded, TrustMonitor};
pub use zt_tls::{ConfigError, PeerRejected, Posture, Side};
