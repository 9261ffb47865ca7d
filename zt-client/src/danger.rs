//! Options that weaken verification.
//!
//! Everything here reads as dangerous at the call site, as rustls's
//! `client::danger` does.

use crate::builder::ClientBuilder;

/// A [`ClientBuilder`] with access to options that weaken verification.
#[derive(Debug)]
pub struct DangerousClientBuilder {
    pub(crate) inner: ClientBuilder,
}

impl DangerousClientBuilder {
    /// Accepts any server holding a valid X.509-SVID from a trusted trust
    /// domain, whatever its SPIFFE ID. Any workload in those trust domains
    /// can then impersonate the server you meant to call.
    pub fn accept_any_authenticated_server(self) -> ClientBuilder {
        self.inner.allow_any_server()
    }
}
