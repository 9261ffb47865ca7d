//! The client's error type.

/// Errors building or using a [`ZtClient`](crate::ZtClient).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No server pin was configured.
    #[error(
        "no server SPIFFE ID pin configured: call `pin_server`, or opt into any authenticated server through `dangerous()`"
    )]
    NoServerPin,
    /// The TLS config could not be built (the crypto provider supports no
    /// safe TLS version, or post-quantum key exchange is required and it has
    /// none).
    #[error("TLS configuration failed: {0}")]
    Tls(#[from] zt_tls::ConfigError),
    /// The reqwest client could not be built.
    #[cfg(feature = "reqwest")]
    #[error("building the HTTP client failed: {0}")]
    Http(#[from] reqwest::Error),
    /// A gRPC channel could not be created.
    #[cfg(feature = "tonic")]
    #[error("gRPC channel: {0}")]
    Grpc(#[from] tonic::transport::Error),
    /// The address or URI is not usable.
    #[error("invalid address `{address}`: {reason}")]
    InvalidAddress {
        /// The address given.
        address: String,
        /// What is wrong with it.
        reason: String,
    },
    /// zt refused the server during the handshake: its X.509-SVID broke a
    /// rule, its SPIFFE ID is not the pinned one, or it is revoked.
    #[error("connecting to `{address}` failed: {rejected}")]
    PeerRejected {
        /// The address dialled.
        address: String,
        /// Why the server was refused (the ID presented and the pin).
        #[source]
        rejected: zt_tls::PeerRejected,
    },
    /// Connecting failed (TCP or TLS handshake).
    #[error("connecting to `{address}` failed: {source}")]
    Connect {
        /// The address dialled.
        address: String,
        /// The I/O or TLS error.
        #[source]
        source: std::io::Error,
    },
}
