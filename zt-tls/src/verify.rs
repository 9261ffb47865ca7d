//! The rustls verifiers of both sides: a server-certificate verifier for
//! clients and a client-certificate verifier for servers, both running
//! [`PeerVerifier`] (SVID rules, bundle of the peer's trust domain, pin,
//! revocation list).
//!
//! rustls 0.23's verifier traits are renamed in 0.24; their impls stay in
//! this file.

use std::fmt;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, Error, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use zt_core::peer::PeerVerifier;

use crate::error::{PeerRejected, Side};

/// Verifies the peer of `side` and logs the outcome under that side's
/// target.
pub(crate) struct SpiffeVerifier {
    peers: Arc<PeerVerifier>,
    provider: Arc<CryptoProvider>,
    side: Side,
    /// On the server side: whether a client without a certificate is
    /// refused at the handshake. A certificate that is presented is always
    /// verified.
    client_auth_mandatory: bool,
}

impl fmt::Debug for SpiffeVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpiffeVerifier")
            .field("side", &self.side)
            .field("peers", &self.peers)
            .finish_non_exhaustive()
    }
}

impl SpiffeVerifier {
    pub(crate) fn new(peers: Arc<PeerVerifier>, provider: Arc<CryptoProvider>, side: Side) -> Self {
        Self {
            peers,
            provider,
            side,
            client_auth_mandatory: true,
        }
    }

    /// The verifier, accepting on the server side a client that presents
    /// no certificate (one that presents a certificate is still verified
    /// in full).
    pub(crate) fn client_certificate_optional(mut self) -> Self {
        self.client_auth_mandatory = false;
        self
    }

    fn verify(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
    ) -> Result<(), Error> {
        let verified = self.peers.verify(end_entity, intermediates);
        zt_core::metrics::peer_verification(
            self.side.metrics_side(),
            verified.as_ref().map(|_| ()),
        );
        match verified {
            Ok(peer) => {
                match self.side {
                    Side::Client => {
                        tracing::debug!(target: "zt::client", server = %peer.id(), "server identity verified");
                    }
                    Side::Server => {
                        tracing::debug!(target: "zt::server", client = %peer.id(), "client identity verified");
                    }
                }
                Ok(())
            }
            Err(e) => {
                let rejected = PeerRejected::new(self.side, e);
                match self.side {
                    Side::Client => {
                        tracing::warn!(target: "zt::client", reason = %rejected.error(), "server refused at handshake");
                    }
                    Side::Server => {
                        tracing::warn!(target: "zt::server", reason = %rejected.error(), "client refused at handshake");
                    }
                }
                Err(rejected.into_rustls())
            }
        }
    }

    fn tls12(
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

    fn tls13(
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

    fn schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

impl ServerCertVerifier for SpiffeVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        // In SPIFFE mode the SPIFFE ID is the server's name: DNS SANs are
        // not matched.
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        self.verify(end_entity, intermediates)
            .map(|()| ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.tls12(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.schemes()
    }
}

impl ClientCertVerifier for SpiffeVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        self.client_auth_mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        self.verify(end_entity, intermediates)
            .map(|()| ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.tls12(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.schemes()
    }
}
