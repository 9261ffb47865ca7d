//! The rustls server-certificate verifier.
//!
//! rustls 0.23's verifier traits are renamed in 0.24; their impls stay in
//! this file.

use std::fmt;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::{CertificateError, DigitallySignedStruct, Error, OtherError, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use zt_core::peer::{PeerError, PeerVerifier};

/// The reason a handshake refused the server, carried inside the rustls
/// error (`CertificateError::Other`) that the caller's request returns.
///
/// Its `Debug` output is the readable message, because rustls renders the
/// inner error with `Debug` in its own messages.
#[derive(thiserror::Error)]
#[error("zt refused the server: {0}")]
pub struct PeerRejected(#[source] pub PeerError);

impl fmt::Debug for PeerRejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

pub(crate) struct ServerVerifier {
    pub(crate) peers: PeerVerifier,
    pub(crate) provider: Arc<CryptoProvider>,
}

impl fmt::Debug for ServerVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerVerifier")
            .field("peers", &self.peers)
            .finish_non_exhaustive()
    }
}

pub(crate) fn rejected(e: PeerError) -> Error {
    Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(PeerRejected(
        e,
    )))))
}

impl ServerCertVerifier for ServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        match self.peers.verify(end_entity, intermediates) {
            Ok(peer) => {
                tracing::debug!(target: "zt::client", server = %peer.id(), "server identity verified");
                Ok(ServerCertVerified::assertion())
            }
            Err(e) => {
                tracing::warn!(target: "zt::client", error = %e, "server refused");
                Err(rejected(e))
            }
        }
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
