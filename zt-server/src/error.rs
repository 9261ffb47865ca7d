//! The server's error type.

/// Errors building or running a [`ZtServer`](crate::ZtServer).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The TLS config could not be built (the crypto provider supports no
    /// safe TLS version, or post-quantum key exchange is required and it has
    /// none).
    #[error("TLS configuration failed: {0}")]
    Tls(#[from] zt_tls::ConfigError),
    /// Accepting connections failed.
    #[error("accepting connections failed: {0}")]
    Accept(#[source] std::io::Error),
}
