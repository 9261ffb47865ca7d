//! The certificate resolver of both sides: the source's current SVID at
//! every handshake.

use std::fmt;
use std::sync::Arc;

use rustls::SignatureScheme;
use rustls::client::ResolvesClientCert;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use zt_core::source::{DerivedCache, SvidSource};

use crate::error::Side;

/// Presents the current X.509-SVID of a source, as a client certificate
/// ([`ResolvesClientCert`]) or a server certificate
/// ([`ResolvesServerCert`]).
///
/// The signing key is derived once per snapshot and reused until the
/// source rotates. Without a usable SVID (none yet, or expired) it presents
/// nothing, so the handshake fails closed.
pub struct SvidResolver {
    source: Arc<dyn SvidSource>,
    provider: Arc<CryptoProvider>,
    side: Side,
    cache: DerivedCache<CertifiedKey>,
}

impl fmt::Debug for SvidResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SvidResolver")
            .field("side", &self.side)
            .finish_non_exhaustive()
    }
}

impl SvidResolver {
    /// A resolver presenting `source`'s SVID on `side` of connections,
    /// with keys loaded by `provider`.
    pub fn new(source: Arc<dyn SvidSource>, provider: Arc<CryptoProvider>, side: Side) -> Self {
        Self {
            source,
            provider,
            side,
            cache: DerivedCache::new(),
        }
    }

    /// The certified key of the current SVID, or `None` (logged) when the
    /// source has none usable.
    pub fn current(&self) -> Option<Arc<CertifiedKey>> {
        let snapshot = match self.source.current() {
            Ok(s) => s,
            Err(e) => {
                if self.side == Side::Client {
                    tracing::warn!(target: "zt::client", error = %e, "no client SVID to present");
                } else {
                    tracing::warn!(target: "zt::server", error = %e, "no server SVID to present; refusing handshake");
                }
                return None;
            }
        };
        self.cache
            .get_or_derive(&snapshot, |s| {
                CertifiedKey::from_der(
                    s.svid().chain().to_vec(),
                    s.svid().private_key().clone_key(),
                    &self.provider,
                )
            })
            .map_err(|e| {
                if self.side == Side::Client {
                    tracing::warn!(target: "zt::client", error = %e, "client SVID unusable");
                } else {
                    tracing::warn!(target: "zt::server", error = %e, "server SVID unusable");
                }
            })
            .ok()
    }
}

impl ResolvesClientCert for SvidResolver {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        self.current()
    }

    fn has_certs(&self) -> bool {
        true
    }
}

impl ResolvesServerCert for SvidResolver {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current()
    }
}
