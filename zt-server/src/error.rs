//! The server's error type.

/// Errors building or running a [`ZtServer`](crate::ZtServer).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The crypto provider cannot build a TLS config.
    #[error("TLS configuration failed: {0}")]
    Tls(#[from] rustls::Error),
    /// Accepting connections failed.
    #[error("accepting connections failed: {0}")]
    Accept(#[source] std::io::Error),
}
