//! The client-certificate resolver: the current SVID at every handshake.

use std::fmt;
use std::sync::Arc;

use rustls::SignatureScheme;
use rustls::client::ResolvesClientCert;
use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use zt_core::source::{DerivedCache, SvidSource};

pub(crate) struct ClientCertResolver {
    pub(crate) source: Arc<dyn SvidSource>,
    pub(crate) provider: Arc<CryptoProvider>,
    pub(crate) cache: DerivedCache<CertifiedKey>,
}

impl fmt::Debug for ClientCertResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCertResolver").finish_non_exhaustive()
    }
}

impl ResolvesClientCert for ClientCertResolver {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        let snapshot = match self.source.current() {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(target: "zt::client", error = %e, "no client SVID to present");
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
            .map_err(|e| tracing::warn!(target: "zt::client", error = %e, "client SVID unusable"))
            .ok()
    }

    fn has_certs(&self) -> bool {
        true
    }
}
