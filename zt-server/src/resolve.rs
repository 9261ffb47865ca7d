//! The server-certificate resolver: the current SVID at every handshake.

use std::fmt;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use zt_core::source::{DerivedCache, SvidSource};

pub(crate) struct ServerCertResolver {
    pub(crate) source: Arc<dyn SvidSource>,
    pub(crate) provider: Arc<CryptoProvider>,
    pub(crate) cache: DerivedCache<CertifiedKey>,
}

impl fmt::Debug for ServerCertResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerCertResolver").finish_non_exhaustive()
    }
}

impl ResolvesServerCert for ServerCertResolver {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let snapshot = match self.source.current() {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(target: "zt::server", error = %e, "no server SVID to present; refusing handshake");
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
            .map_err(|e| tracing::warn!(target: "zt::server", error = %e, "server SVID unusable"))
            .ok()
    }
}
