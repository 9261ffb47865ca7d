//! The `https_spiffe` server-certificate verifier: the endpoint's
//! X.509-SVID chained to the bundle of its trust domain, and its SPIFFE ID
//! equal to the pinned one.
//!
//! rustls 0.23's verifier traits are renamed in 0.24; their impl stays in
//! this file.

use std::fmt;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::{DigitallySignedStruct, Error, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use zt_core::peer::PeerError;
use zt_core::time::SharedClock;
use zt_core::x509::{Usage, verify_x509_svid};
use zt_core::{BundleSet, SpiffeId};
use zt_tls::{PeerRejected, Side};

/// Checks a bundle endpoint's X.509-SVID against `bundles` and the pin.
pub(crate) struct EndpointVerifier {
    bundles: BundleSet,
    endpoint_id: SpiffeId,
    clock: SharedClock,
    provider: Arc<CryptoProvider>,
}

impl fmt::Debug for EndpointVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EndpointVerifier")
            .field("endpoint_id", &self.endpoint_id.to_string())
            .field("bundles", &self.bundles)
            .finish_non_exhaustive()
    }
}

impl EndpointVerifier {
    pub(crate) fn new(
        bundles: BundleSet,
        endpoint_id: SpiffeId,
        clock: SharedClock,
        provider: Arc<CryptoProvider>,
    ) -> Self {
        Self {
            bundles,
            endpoint_id,
            clock,
            provider,
        }
    }
}

impl ServerCertVerifier for EndpointVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        // The pinned SPIFFE ID names the endpoint; DNS names are not
        // matched in this profile.
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let mut chain = Vec::with_capacity(1 + intermediates.len());
        chain.push(end_entity.clone().into_owned());
        chain.extend(intermediates.iter().map(|c| c.clone().into_owned()));
        let refused = |e: PeerError| PeerRejected::new(Side::Client, e).into_rustls();
        let verified = verify_x509_svid(&chain, &self.bundles, self.clock.now(), Usage::ServerAuth)
            .map_err(|e| refused(PeerError::Svid(e)))?;
        if verified.id() != &self.endpoint_id {
            return Err(refused(PeerError::NotAccepted {
                presented: verified.id().clone(),
                expected: format!("`{}`", self.endpoint_id),
            }));
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
