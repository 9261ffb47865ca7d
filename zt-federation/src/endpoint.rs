//! A federation relationship: whose bundle, where from, and how the
//! endpoint is authenticated.

use std::fmt;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls_pki_types::CertificateDer;
use zt_core::{SpiffeId, TrustBundle, TrustDomain};

use crate::error::FederationError;

/// Roots that authenticate `https_web` bundle endpoints (Web PKI).
#[derive(Clone)]
pub struct WebRoots {
    store: Arc<RootCertStore>,
}

impl fmt::Debug for WebRoots {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebRoots")
            .field("roots", &self.store.len())
            .finish()
    }
}

impl WebRoots {
    /// The operating system's trusted roots (as `rustls-native-certs`
    /// finds them; `SSL_CERT_FILE` is honoured).
    ///
    /// # Errors
    ///
    /// [`FederationError::Roots`] when no root could be loaded.
    pub fn system() -> Result<Self, FederationError> {
        let found = rustls_native_certs::load_native_certs();
        let mut store = RootCertStore::empty();
        let (added, _ignored) = store.add_parsable_certificates(found.certs);
        if added == 0 {
            return Err(FederationError::Roots {
                reason: format!(
                    "no system root certificate could be loaded ({} errors)",
                    found.errors.len()
                ),
            });
        }
        Ok(Self {
            store: Arc::new(store),
        })
    }

    /// Roots from DER certificates, e.g. a private CA's.
    ///
    /// # Errors
    ///
    /// [`FederationError::Roots`] when a certificate is not a usable trust
    /// anchor.
    pub fn from_certs(
        certs: impl IntoIterator<Item = CertificateDer<'static>>,
    ) -> Result<Self, FederationError> {
        let mut store = RootCertStore::empty();
        for cert in certs {
            store.add(cert).map_err(|e| FederationError::Roots {
                reason: format!("root certificate refused: {e}"),
            })?;
        }
        Ok(Self {
            store: Arc::new(store),
        })
    }

    /// Roots from PEM text (`CERTIFICATE` blocks).
    ///
    /// # Errors
    ///
    /// [`FederationError::Roots`] for undecodable PEM, no certificate, or a
    /// certificate that is not a usable trust anchor.
    pub fn from_pem(pem_text: &[u8]) -> Result<Self, FederationError> {
        use rustls_pki_types::pem::PemObject as _;
        let certs: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(pem_text).collect();
        let certs = certs.map_err(|e| FederationError::Roots {
            reason: format!("root certificates PEM: {e}"),
        })?;
        if certs.is_empty() {
            return Err(FederationError::Roots {
                reason: "no CERTIFICATE block in the roots PEM".into(),
            });
        }
        Self::from_certs(certs)
    }

    pub(crate) fn store(&self) -> Arc<RootCertStore> {
        self.store.clone()
    }
}

/// How a bundle endpoint authenticates itself (SPIFFE Federation,
/// "Endpoint Profiles").
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum EndpointProfile {
    /// `https_web`: a Web PKI server certificate for the URL's host,
    /// chained to these roots.
    HttpsWeb(WebRoots),
    /// `https_spiffe`: an X.509-SVID with exactly this SPIFFE ID, chained
    /// to the bundle of the endpoint ID's trust domain.
    HttpsSpiffe {
        /// The SPIFFE ID the endpoint must present (for SPIRE,
        /// `spiffe://<trust domain>/spire/server`).
        endpoint_id: SpiffeId,
    },
}

/// One federation relationship: the trust domain whose bundle is fetched,
/// the endpoint URL and its profile, and optionally the bundle to start
/// from.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub(crate) trust_domain: TrustDomain,
    pub(crate) url: String,
    pub(crate) profile: EndpointProfile,
    pub(crate) initial_bundle: Option<TrustBundle>,
}

impl Endpoint {
    /// `trust_domain`'s bundle from an `https_web` endpoint at `url`.
    pub fn https_web(trust_domain: TrustDomain, url: impl Into<String>, roots: WebRoots) -> Self {
        Self {
            trust_domain,
            url: url.into(),
            profile: EndpointProfile::HttpsWeb(roots),
            initial_bundle: None,
        }
    }

    /// `trust_domain`'s bundle from an `https_spiffe` endpoint at `url`
    /// that must present `endpoint_id`.
    ///
    /// When the endpoint ID is in `trust_domain` itself (SPIRE's endpoints
    /// are), the first fetch needs that trust domain's current bundle,
    /// obtained out of band: give it with [`Endpoint::initial_bundle`].
    /// Later fetches authenticate the endpoint with the last bundle
    /// fetched.
    pub fn https_spiffe(
        trust_domain: TrustDomain,
        url: impl Into<String>,
        endpoint_id: SpiffeId,
    ) -> Self {
        Self {
            trust_domain,
            url: url.into(),
            profile: EndpointProfile::HttpsSpiffe { endpoint_id },
            initial_bundle: None,
        }
    }

    /// The bundle to start from: in force from the start, and the one
    /// that authenticates an `https_spiffe` endpoint of the same trust
    /// domain at the first fetch.
    ///
    /// # Errors
    ///
    /// [`FederationError::WrongTrustDomain`] when the bundle is for another
    /// trust domain.
    pub fn initial_bundle(mut self, bundle: TrustBundle) -> Result<Self, FederationError> {
        if bundle.trust_domain() != &self.trust_domain {
            return Err(FederationError::WrongTrustDomain {
                url: self.url.clone(),
                expected: self.trust_domain.clone(),
                found: bundle.trust_domain().to_string(),
            });
        }
        self.initial_bundle = Some(bundle);
        Ok(self)
    }

    /// The trust domain whose bundle this endpoint serves.
    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }

    /// The endpoint URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The endpoint profile.
    pub fn profile(&self) -> &EndpointProfile {
        &self.profile
    }
}
