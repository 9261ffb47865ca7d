//! CRLs from a SPIFFE Workload API: the `crl` field of `FetchX509Bundles`
//! responses, which the `spiffe` crate does not expose.
//!
//! A narrow gRPC client of that one call: the request carries the
//! `workload.spiffe.io: true` metadata the API requires, the response
//! message declares only the two fields read (`crl`, `bundles`). The
//! endpoint is parsed and dialled by the `spiffe` crate's transport
//! (`unix:///path`, `tcp:ip:port`).

use std::collections::HashMap;
use std::time::Duration;

use http::uri::PathAndQuery;
use spiffe::transport::{Endpoint, connect};
use tonic::Streaming;
use tonic::client::Grpc;
use tonic::transport::Channel;

use super::CrlError;
use crate::bundle::{BundleSet, TrustBundle};
use crate::id::parse_trust_domain;
use crate::revocation::{RevocationError, Revocations};

/// `X509BundlesRequest`: no fields.
#[derive(Clone, PartialEq, prost::Message)]
struct X509BundlesRequest {}

/// `X509BundlesResponse`, the two fields read.
#[derive(Clone, PartialEq, prost::Message)]
struct X509BundlesResponse {
    /// DER CRLs.
    #[prost(bytes = "vec", repeated, tag = "1")]
    crl: Vec<Vec<u8>>,
    /// Concatenated DER CA certificates by trust domain SPIFFE ID.
    #[prost(map = "string, bytes", tag = "2")]
    bundles: HashMap<String, Vec<u8>>,
}

const FETCH_X509_BUNDLES: &str = "/SpiffeWorkloadAPI/FetchX509Bundles";

/// How long to wait before reconnecting after the stream ends, at first and
/// at most.
const RETRY: (Duration, Duration) = (Duration::from_millis(200), Duration::from_secs(10));

/// Follows the CRLs a Workload API delivers and keeps them in a
/// [`Revocations`] list: every `FetchX509Bundles` response replaces the
/// CRLs of this source, each verified against the bundles of the same
/// response (rules in the [module docs](super)). A response whose CRL does
/// not verify changes nothing and is reported
/// ([`Revocations::last_error`]). When the stream breaks, the CRLs in force
/// stay (last known good) while it reconnects. Stops when dropped.
#[derive(Debug)]
pub struct WorkloadApiCrls {
    source: String,
    task: tokio::task::JoinHandle<()>,
}

impl WorkloadApiCrls {
    /// Connects to `endpoint` (`unix:///path`, as `SPIFFE_ENDPOINT_SOCKET`),
    /// applies the first response to `revocations` (so its CRLs are in
    /// force when this returns), then follows the stream in a background
    /// task. Must be called within a Tokio runtime.
    ///
    /// # Errors
    ///
    /// [`RevocationError::Crl`] with [`CrlError::WorkloadApi`] if the
    /// endpoint does not parse, cannot be reached or sends no response;
    /// with another [`CrlError`] if the first response's CRLs are refused.
    pub async fn follow(endpoint: &str, revocations: Revocations) -> Result<Self, RevocationError> {
        let source = format!("workload-api {endpoint}");
        let parsed = Endpoint::parse(endpoint).map_err(|e| api_error(endpoint, e))?;
        let mut stream = open(&parsed, endpoint).await?;
        let first = stream
            .message()
            .await
            .map_err(|e| api_error(endpoint, e))?
            .ok_or_else(|| api_error(endpoint, "the stream ended before its first response"))?;
        apply(&revocations, &source, first)?;
        let task = tokio::spawn(run(
            parsed,
            endpoint.to_owned(),
            source.clone(),
            revocations,
            stream,
        ));
        Ok(Self { source, task })
    }

    /// The source name its CRLs carry ([`Crl::source`](super::Crl::source)).
    pub fn source_name(&self) -> &str {
        &self.source
    }
}

impl Drop for WorkloadApiCrls {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn api_error(endpoint: &str, reason: impl std::fmt::Display) -> RevocationError {
    RevocationError::Crl(CrlError::WorkloadApi {
        endpoint: endpoint.to_owned(),
        reason: reason.to_string(),
    })
}

async fn open(
    endpoint: &Endpoint,
    name: &str,
) -> Result<Streaming<X509BundlesResponse>, RevocationError> {
    let channel: Channel = connect(endpoint).await.map_err(|e| api_error(name, e))?;
    let mut grpc = Grpc::new(channel);
    grpc.ready().await.map_err(|e| api_error(name, e))?;
    let mut request = tonic::Request::new(X509BundlesRequest {});
    request.metadata_mut().insert(
        "workload.spiffe.io",
        tonic::metadata::MetadataValue::from_static("true"),
    );
    let response = grpc
        .server_streaming(
            request,
            PathAndQuery::from_static(FETCH_X509_BUNDLES),
            tonic_prost::ProstCodec::default(),
        )
        .await
        .map_err(|e| api_error(name, e))?;
    Ok(response.into_inner())
}

/// Verifies a response's CRLs against its bundles and makes them the CRLs
/// of `source`.
fn apply(
    revocations: &Revocations,
    source: &str,
    response: X509BundlesResponse,
) -> Result<usize, RevocationError> {
    let mut bundles = BundleSet::new();
    for (key, der) in &response.bundles {
        let td = key
            .strip_prefix("spiffe://")
            .and_then(|td| parse_trust_domain(td).ok())
            .ok_or_else(|| {
                api_error(source, format!("bundle key `{key}` is not a trust domain"))
            })?;
        let bundle = TrustBundle::from_der_concat(td, der)
            .map_err(|e| api_error(source, format!("bundle of `{key}`: {e}")))?;
        bundles.insert(bundle);
    }
    revocations.load_crl_ders(source, &response.crl, &bundles)
}

async fn run(
    endpoint: Endpoint,
    name: String,
    source: String,
    revocations: Revocations,
    mut stream: Streaming<X509BundlesResponse>,
) {
    let mut retry = RETRY.0;
    loop {
        match stream.message().await {
            Ok(Some(response)) => {
                retry = RETRY.0;
                // Refusals are logged and kept for `last_error`.
                let _ = apply(&revocations, &source, response);
                continue;
            }
            Ok(None) => {
                tracing::warn!(target: "zt::revocation", endpoint = %name, "Workload API CRL stream ended; reconnecting, the CRLs in force stay");
            }
            Err(status) => {
                tracing::warn!(target: "zt::revocation", endpoint = %name, %status, "Workload API CRL stream failed; reconnecting, the CRLs in force stay");
            }
        }
        loop {
            tokio::time::sleep(retry).await;
            retry = (retry * 2).min(RETRY.1);
            match open(&endpoint, &name).await {
                Ok(next) => {
                    stream = next;
                    break;
                }
                Err(error) => {
                    tracing::debug!(target: "zt::revocation", endpoint = %name, %error, "Workload API unreachable");
                }
            }
        }
    }
}
