//! The refusal a verifier puts inside the rustls error, and how to get it
//! back out of whatever error a caller sees.

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;

use rustls::{CertificateError, OtherError};
use zt_core::peer::PeerError;

/// Which side of the connection refused the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// A client refused the server it connected to.
    Client,
    /// A server refused the client that connected.
    Server,
}

impl Side {
    /// The side as the `side` label of zt's metrics names it.
    pub fn metrics_side(self) -> zt_core::metrics::Side {
        match self {
            Self::Client => zt_core::metrics::Side::Client,
            Self::Server => zt_core::metrics::Side::Server,
        }
    }

    /// The role of the peer that was refused: `server` when the client
    /// refused, `client` when the server did.
    pub fn peer_role(self) -> &'static str {
        match self {
            Self::Client => "server",
            Self::Server => "client",
        }
    }
}

/// Why a handshake refused the peer: the typed [`PeerError`] (the ID
/// presented and what was expected, the SVID rule broken, a revocation, or
/// no local identity to verify with), and which side refused.
///
/// A verifier returns it inside `rustls::Error::InvalidCertificate`
/// (`CertificateError::Other`); [`PeerRejected::find`] gets it back out of
/// any error chain. Its `Debug` output is the readable sentence too,
/// because rustls renders the inner error with `Debug` in its messages.
#[derive(Clone, PartialEq)]
pub struct PeerRejected {
    side: Side,
    error: PeerError,
}

impl PeerRejected {
    /// A refusal of the peer by `side`.
    pub fn new(side: Side, error: PeerError) -> Self {
        Self { side, error }
    }

    /// The side that refused.
    pub fn side(&self) -> Side {
        self.side
    }

    /// Why the peer was refused.
    pub fn error(&self) -> &PeerError {
        &self.error
    }

    /// Wraps this refusal as the rustls error a verifier returns.
    pub fn into_rustls(self) -> rustls::Error {
        rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(self))))
    }

    /// Finds a zt refusal in `error` or anywhere in its source chain,
    /// looking inside `io::Error`s and rustls errors on the way (neither
    /// exposes the error it wraps through `source()`).
    ///
    /// Works on what reqwest, hyper, tonic and tokio-rustls return for a
    /// failed handshake.
    pub fn find<'a>(error: &'a (dyn StdError + 'static)) -> Option<&'a PeerRejected> {
        let mut next = Some(error);
        // Bounded, in case an error's source chain loops back on itself.
        for _ in 0..64 {
            let current = next?;
            if let Some(found) = Self::inside(current) {
                return Some(found);
            }
            next = current.source();
        }
        None
    }

    fn inside<'a>(error: &'a (dyn StdError + 'static)) -> Option<&'a PeerRejected> {
        if let Some(found) = error.downcast_ref::<PeerRejected>() {
            return Some(found);
        }
        if let Some(io) = error.downcast_ref::<std::io::Error>() {
            return io.get_ref().and_then(|inner| Self::find(inner));
        }
        if let Some(rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(inner))))
        | Some(rustls::Error::Other(OtherError(inner))) = error.downcast_ref::<rustls::Error>()
        {
            let inner: &(dyn StdError + 'static) = inner.as_ref();
            return Self::find(inner);
        }
        None
    }
}

impl fmt::Display for PeerRejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "zt refused the {}: {}",
            self.side.peer_role(),
            self.error
        )
    }
}

impl fmt::Debug for PeerRejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl StdError for PeerRejected {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(&self.error)
    }
}
