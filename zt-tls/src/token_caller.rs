//! TLS for callers that hold no SVID: the server is verified by the SPIFFE
//! rules, the caller presents no certificate and authenticates each request
//! with a token instead.

use std::fmt;
use std::sync::Arc;

use rustls::client::Resumption;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::{ClientConfig, DigitallySignedStruct, Error, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use zt_core::BundleSet;
use zt_core::matcher::IdMatcher;
use zt_core::peer::PeerError;
use zt_core::time::SharedClock;
use zt_core::x509::{Usage, verify_x509_svid};

use crate::error::{PeerRejected, Side};
use crate::provider::ConfigError;

/// A client config for a caller without an SVID — a CI job that
/// authenticates with its platform's OIDC token — calling a zt server that
/// accepts token callers.
///
/// The server's certificate chain must be a valid X.509-SVID (every SVID
/// rule) chaining to the bundle of its trust domain in `bundles`, and its
/// SPIFFE ID must match `server`; DNS names are not matched. The caller
/// presents no certificate; no resumption, no early data, no ALPN (set
/// `alpn_protocols` for HTTP). A refused server is reported as a
/// [`PeerRejected`] naming the ID presented and the IDs expected.
///
/// # Errors
///
/// [`ConfigError::Rustls`] if the provider supports no safe TLS version.
pub fn token_caller_client_config(
    bundles: BundleSet,
    server: IdMatcher,
    provider: Arc<CryptoProvider>,
    clock: SharedClock,
) -> Result<ClientConfig, ConfigError> {
    let verifier = Arc::new(BundleServerVerifier {
        bundles,
        server,
        provider: provider.clone(),
        clock,
    });
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.resumption = Resumption::disabled();
    config.enable_early_data = false;
    Ok(config)
}

/// Verifies a server's X.509-SVID against fixed bundles and a pin.
struct BundleServerVerifier {
    bundles: BundleSet,
    server: IdMatcher,
    provider: Arc<CryptoProvider>,
    clock: SharedClock,
}

impl fmt::Debug for BundleServerVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BundleServerVerifier")
            .field("server", &self.server.to_string())
            .finish_non_exhaustive()
    }
}

impl ServerCertVerifier for BundleServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let mut chain = Vec::with_capacity(1 + intermediates.len());
        chain.push(end_entity.clone());
        chain.extend(intermediates.iter().cloned());
        let refused = |error: PeerError| {
            let rejected = PeerRejected::new(Side::Client, error);
            tracing::warn!(target: "zt::client", reason = %rejected.error(), "server refused at handshake");
            rejected.into_rustls()
        };
        let verified = verify_x509_svid(&chain, &self.bundles, self.clock.now(), Usage::ServerAuth)
            .map_err(|e| refused(PeerError::Svid(e)))?;
        if !self.server.matches(verified.id()) {
            return Err(refused(PeerError::NotAccepted {
                presented: verified.id().clone(),
                expected: self.server.to_string(),
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
