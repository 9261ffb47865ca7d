//! One fetch from a bundle endpoint: HTTPS GET over a fresh connection,
//! the answer parsed as a SPIFFE bundle and checked against what is
//! already known.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode, Uri, header};
use http_body_util::{BodyExt as _, Empty, Limited};
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls::crypto::CryptoProvider;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use zt_core::peer::PeerError;
use zt_core::time::SharedClock;
use zt_core::{BundleSet, TrustBundle};
use zt_tls::PeerRejected;

use crate::endpoint::{Endpoint, EndpointProfile};
use crate::error::FederationError;
use crate::verify::EndpointVerifier;

/// Limits of one fetch.
#[derive(Debug, Clone)]
pub(crate) struct FetchLimits {
    pub(crate) timeout: Duration,
    pub(crate) max_body: usize,
}

/// Where an endpoint URL points.
#[derive(Debug, Clone)]
struct Target {
    host: String,
    port: u16,
    path_and_query: String,
    authority: String,
}

fn parse_url(url: &str) -> Result<Target, FederationError> {
    let invalid = |reason: &str| FederationError::InvalidUrl {
        url: url.to_owned(),
        reason: reason.to_owned(),
    };
    let uri: Uri = url
        .parse()
        .map_err(|e: http::uri::InvalidUri| invalid(&e.to_string()))?;
    if uri.scheme_str() != Some("https") {
        return Err(invalid("bundle endpoints are served over https"));
    }
    let authority = uri.authority().ok_or_else(|| invalid("no host"))?;
    let host = authority.host();
    // An IPv6 literal comes bracketed in the authority.
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if host.is_empty() {
        return Err(invalid("no host"));
    }
    let path_and_query = uri
        .path_and_query()
        .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned());
    Ok(Target {
        host: host.to_owned(),
        port: authority.port_u16().unwrap_or(443),
        path_and_query: if path_and_query.is_empty() {
            "/".to_owned()
        } else {
            path_and_query
        },
        authority: authority.as_str().to_owned(),
    })
}

/// Checks that `url` is one [`fetch`] can use.
pub(crate) fn check_url(url: &str) -> Result<(), FederationError> {
    parse_url(url).map(|_| ())
}

/// Fetches `endpoint`'s bundle once and checks it.
///
/// `auth` holds the bundle of the endpoint ID's trust domain
/// (`https_spiffe`); `last_sequence` is the highest sequence accepted so
/// far for this trust domain.
pub(crate) async fn fetch(
    endpoint: &Endpoint,
    auth: &BundleSet,
    last_sequence: Option<u64>,
    clock: &SharedClock,
    provider: &Arc<CryptoProvider>,
    limits: &FetchLimits,
) -> Result<TrustBundle, FederationError> {
    let url = endpoint.url.as_str();
    let body =
        match tokio::time::timeout(limits.timeout, get(endpoint, auth, clock, provider, limits))
            .await
        {
            Ok(result) => result?,
            Err(_) => {
                return Err(FederationError::Timeout {
                    url: url.to_owned(),
                    after: limits.timeout,
                });
            }
        };
    let bundle = TrustBundle::from_spiffe_json(endpoint.trust_domain.clone(), &body)
        .map_err(|error| classify(endpoint, error))?;
    check(endpoint, &bundle, last_sequence)?;
    Ok(bundle)
}

/// The checks a fetched bundle must pass before it replaces the last good
/// one.
pub(crate) fn check(
    endpoint: &Endpoint,
    bundle: &TrustBundle,
    last_sequence: Option<u64>,
) -> Result<(), FederationError> {
    let url = endpoint.url.as_str();
    if let Err(error) = bundle.check_authorities_trust_domain() {
        return Err(match error {
            error @ zt_core::bundle::BundleError::ForeignAuthority { .. } => {
                classify(endpoint, error)
            }
            error => FederationError::Malformed {
                url: url.to_owned(),
                error,
            },
        });
    }
    if bundle.x509_authorities().is_empty() && bundle.jwt_authorities().next().is_none() {
        return Err(FederationError::Malformed {
            url: url.to_owned(),
            error: zt_core::bundle::BundleError::NoAuthorities {
                trust_domain: endpoint.trust_domain.to_string(),
            },
        });
    }
    if let (Some(received), Some(last)) = (bundle.sequence(), last_sequence)
        && received < last
    {
        return Err(FederationError::StaleSequence {
            url: url.to_owned(),
            trust_domain: endpoint.trust_domain.clone(),
            received,
            last,
        });
    }
    Ok(())
}

fn tls_config(
    endpoint: &Endpoint,
    auth: &BundleSet,
    clock: &SharedClock,
    provider: &Arc<CryptoProvider>,
) -> Result<ClientConfig, FederationError> {
    let url = endpoint.url.as_str();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| FederationError::Transport {
            url: url.to_owned(),
            reason: e.to_string(),
        })?;
    let mut config = match &endpoint.profile {
        EndpointProfile::HttpsWeb(roots) => builder
            .with_root_certificates(roots.store())
            .with_no_client_auth(),
        EndpointProfile::HttpsSpiffe { endpoint_id } => {
            let td = endpoint_id.trust_domain();
            let Some(bundle) = auth.get(td) else {
                return Err(FederationError::NoEndpointBundle {
                    url: url.to_owned(),
                    trust_domain: td.clone(),
                });
            };
            let bundles = BundleSet::new().with(TrustBundle::clone(bundle));
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(EndpointVerifier::new(
                    bundles,
                    endpoint_id.clone(),
                    clock.clone(),
                    provider.clone(),
                )))
                .with_no_client_auth()
        }
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Maps a failed TLS handshake to the error that names its reason.
fn handshake_error(endpoint: &Endpoint, error: &std::io::Error) -> FederationError {
    let url = endpoint.url.clone();
    if let Some(rejected) = PeerRejected::find(error) {
        return match (rejected.error(), &endpoint.profile) {
            (
                PeerError::NotAccepted { presented, .. },
                EndpointProfile::HttpsSpiffe { endpoint_id },
            ) => FederationError::WrongEndpointId {
                url,
                expected: endpoint_id.clone(),
                presented: presented.clone(),
            },
            (other, _) => FederationError::EndpointNotTrusted {
                url,
                reason: other.to_string(),
            },
        };
    }
    let is_cert_error = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .is_some_and(|e| matches!(e, rustls::Error::InvalidCertificate(_)));
    if is_cert_error {
        return FederationError::EndpointNotTrusted {
            url,
            reason: error.to_string(),
        };
    }
    FederationError::Transport {
        url,
        reason: format!("TLS handshake failed: {error}"),
    }
}

async fn get(
    endpoint: &Endpoint,
    auth: &BundleSet,
    clock: &SharedClock,
    provider: &Arc<CryptoProvider>,
    limits: &FetchLimits,
) -> Result<Bytes, FederationError> {
    let url = endpoint.url.as_str();
    let transport = |reason: String| FederationError::Transport {
        url: url.to_owned(),
        reason,
    };
    let target = parse_url(url)?;
    let config = tls_config(endpoint, auth, clock, provider)?;
    let server_name =
        ServerName::try_from(target.host.clone()).map_err(|e| FederationError::InvalidUrl {
            url: url.to_owned(),
            reason: format!("host `{}`: {e}", target.host),
        })?;
    let tcp = TcpStream::connect((target.host.as_str(), target.port))
        .await
        .map_err(|e| FederationError::Connect {
            url: url.to_owned(),
            reason: e.to_string(),
        })?;
    let tls = TlsConnector::from(Arc::new(config))
        .connect(server_name, tcp)
        .await
        .map_err(|e| handshake_error(endpoint, &e))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| transport(e.to_string()))?;
    let driver = tokio::spawn(connection);
    let request = Request::get(target.path_and_query.as_str())
        .header(header::HOST, target.authority.as_str())
        .header(header::ACCEPT, "application/json")
        .body(Empty::<Bytes>::new())
        .map_err(|e| transport(e.to_string()))?;
    let result = async {
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| transport(e.to_string()))?;
        if response.status() != StatusCode::OK {
            return Err(FederationError::HttpStatus {
                url: url.to_owned(),
                status: response.status().as_u16(),
            });
        }
        let body = Limited::new(response.into_body(), limits.max_body)
            .collect()
            .await
            .map_err(|e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    FederationError::TooLarge {
                        url: url.to_owned(),
                        limit: limits.max_body,
                    }
                } else {
                    transport(e.to_string())
                }
            })?;
        Ok(body.to_bytes())
    }
    .await;
    driver.abort();
    result
}

/// The error for a bundle document that did not load: another trust
/// domain's authority in it is a wrong trust domain, anything else a
/// malformed answer.
fn classify(endpoint: &Endpoint, error: zt_core::bundle::BundleError) -> FederationError {
    match error {
        zt_core::bundle::BundleError::ForeignAuthority { named, .. } => {
            let found = named.strip_prefix("spiffe://").unwrap_or(&named);
            FederationError::WrongTrustDomain {
                url: endpoint.url.clone(),
                expected: endpoint.trust_domain.clone(),
                found: found.split('/').next().unwrap_or(found).to_owned(),
            }
        }
        error => FederationError::Malformed {
            url: endpoint.url.clone(),
            error,
        },
    }
}

#[cfg(test)]
mod tests {

    use super::parse_url;

    #[test]
    fn urls_give_host_port_and_path() {
        let t = parse_url("https://127.0.0.1:8443/bundle?x=1").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.path_and_query.as_str()),
            ("127.0.0.1", 8443, "/bundle?x=1")
        );
        let t = parse_url("https://example.org").unwrap();
        assert_eq!((t.port, t.path_and_query.as_str()), (443, "/"));
        let t = parse_url("https://[::1]:9/").unwrap();
        assert_eq!(t.host, "::1");
    }

    #[test]
    fn non_https_or_hostless_urls_are_refused() {
        for url in [
            "http://example.org/",
            "example.org",
            "https:///x",
            "not a url",
        ] {
            assert!(parse_url(url).is_err(), "{url}");
        }
    }
}
