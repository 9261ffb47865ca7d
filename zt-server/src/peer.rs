//! The verified identity of the caller on a connection.

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use zt_core::time::Timestamp;
use zt_core::x509::LeafInfo;
use zt_core::{SpiffeId, TrustDomain};
use zt_tls::Posture;

/// The caller's identity, as verified by the TLS handshake.
///
/// Present in the request extensions of every request on a connection a
/// [`ZtServer`](crate::ZtServer) accepted. It has no public constructor, so
/// a handler or policy that holds one knows the TLS layer verified it.
/// Cheap to clone.
#[derive(Clone, PartialEq, Eq)]
pub struct VerifiedPeer {
    // One allocation, so a clone per request is one reference count.
    inner: Arc<Peer>,
}

#[derive(PartialEq, Eq)]
struct Peer {
    leaf: LeafInfo,
    posture: Option<Posture>,
}

impl VerifiedPeer {
    /// Built by the accept loop from a leaf its verifier accepted and the
    /// posture of the handshake that verified it.
    pub(crate) fn from_verified_leaf(info: LeafInfo, posture: Option<Posture>) -> Self {
        Self {
            inner: Arc::new(Peer {
                leaf: info,
                posture,
            }),
        }
    }

    /// How the connection is protected: TLS version, cipher suite and key
    /// exchange group (e.g. `TLSv1.3 TLS13_AES_256_GCM_SHA384
    /// X25519MLKEM768`).
    pub fn posture(&self) -> Option<&Posture> {
        self.inner.posture.as_ref()
    }

    /// The caller's SPIFFE ID.
    pub fn id(&self) -> &SpiffeId {
        self.inner.leaf.id()
    }

    /// The caller's trust domain.
    pub fn trust_domain(&self) -> &TrustDomain {
        self.inner.leaf.id().trust_domain()
    }

    /// The serial number of the caller's leaf certificate.
    pub fn serial(&self) -> &[u8] {
        self.inner.leaf.serial()
    }

    /// The serial number as lowercase hex.
    pub fn serial_hex(&self) -> String {
        use fmt::Write as _;
        let mut out = String::with_capacity(self.inner.leaf.serial().len() * 2);
        for b in self.inner.leaf.serial() {
            // Writing to a String cannot fail.
            let _ = write!(out, "{b:02x}");
        }
        out
    }

    /// The name of the CA that issued the caller's leaf certificate: DER
    /// contents of the `Name`, what CRL entries are scoped by.
    pub fn issuer(&self) -> &[u8] {
        self.inner.leaf.issuer()
    }

    /// When the caller's leaf certificate expires.
    pub fn not_after(&self) -> SystemTime {
        self.inner.leaf.not_after()
    }

    /// Reads the peer from request extensions.
    pub fn from_extensions(extensions: &http::Extensions) -> Option<&Self> {
        extensions.get::<Self>()
    }
}

impl fmt::Debug for VerifiedPeer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifiedPeer")
            .field("id", &self.id().to_string())
            .field("serial", &self.serial_hex())
            .field("not_after", &Timestamp(self.not_after()))
            .field("posture", &self.inner.posture)
            .finish()
    }
}

impl fmt::Display for VerifiedPeer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self.id(), f)
    }
}

/// Access to the [`VerifiedPeer`] of a request.
pub trait PeerExt {
    /// The verified caller, or `None` if the request did not come through a
    /// [`ZtServer`](crate::ZtServer) connection.
    fn verified_peer(&self) -> Option<&VerifiedPeer>;
}

impl<B> PeerExt for http::Request<B> {
    fn verified_peer(&self) -> Option<&VerifiedPeer> {
        self.extensions().get()
    }
}

#[cfg(feature = "tonic")]
impl<T> PeerExt for tonic::Request<T> {
    fn verified_peer(&self) -> Option<&VerifiedPeer> {
        self.extensions().get()
    }
}

/// The rejection of the axum extractor when no verified peer is present:
/// `401 Unauthorized`, with no detail for the caller.
#[derive(Debug, Clone, Copy, Default)]
pub struct MissingPeer;

impl fmt::Display for MissingPeer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("no verified peer on this request")
    }
}

impl std::error::Error for MissingPeer {}

#[cfg(feature = "axum")]
mod axum_impl {
    use axum::extract::{FromRequestParts, OptionalFromRequestParts};
    use axum::http::StatusCode;
    use axum::http::request::Parts;
    use axum::response::{IntoResponse, Response};

    use super::{MissingPeer, VerifiedPeer};

    impl IntoResponse for MissingPeer {
        fn into_response(self) -> Response {
            tracing::warn!(target: "zt::server", "request without a verified peer refused");
            (StatusCode::UNAUTHORIZED, "unauthenticated").into_response()
        }
    }

    impl<S: Send + Sync> FromRequestParts<S> for VerifiedPeer {
        type Rejection = MissingPeer;

        async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
            parts.extensions.get::<Self>().cloned().ok_or(MissingPeer)
        }
    }

    impl<S: Send + Sync> OptionalFromRequestParts<S> for VerifiedPeer {
        type Rejection = std::convert::Infallible;

        async fn from_request_parts(
            parts: &mut Parts,
            _: &S,
        ) -> Result<Option<Self>, Self::Rejection> {
            Ok(parts.extensions.get::<Self>().cloned())
        }
    }
}
