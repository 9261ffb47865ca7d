//! Why a bundle endpoint fetch, or starting a bundle endpoint server, failed.

use std::time::Duration;

use zt_core::bundle::BundleError;
use zt_core::{SpiffeId, TrustDomain};

/// Why a bundle could not be fetched from a bundle endpoint, or was
/// refused once fetched. The last good bundle stays in force whatever the
/// error (see [`Federation`](crate::Federation)).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum FederationError {
    /// The endpoint URL is not an `https://host[:port]/path` URL.
    #[error("bundle endpoint URL `{url}` is invalid: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Background work was asked for outside a Tokio runtime.
    #[error("{what} needs a Tokio runtime; call it from within one")]
    NoRuntime {
        /// What was asked for.
        what: &'static str,
    },
    /// The `https_web` roots could not be loaded.
    #[error("bundle endpoint roots: {reason}")]
    Roots {
        /// What was wrong.
        reason: String,
    },
    /// No relationship is configured for this trust domain.
    #[error("no federation relationship with trust domain `{trust_domain}`")]
    UnknownTrustDomain {
        /// The trust domain asked for.
        trust_domain: TrustDomain,
    },
    /// The TCP connection failed.
    #[error("cannot connect to bundle endpoint {url}: {reason}")]
    Connect {
        /// The endpoint URL.
        url: String,
        /// The operating system's reason.
        reason: String,
    },
    /// The fetch did not finish in time.
    #[error("bundle endpoint {url} did not answer within {after:?}")]
    Timeout {
        /// The endpoint URL.
        url: String,
        /// The configured fetch timeout.
        after: Duration,
    },
    /// `https_spiffe`: there is no bundle for the endpoint's trust domain,
    /// so its X.509-SVID cannot be authenticated. Give the relationship an
    /// initial bundle, or a local source holding that trust domain.
    #[error(
        "no bundle for `{trust_domain}` to authenticate the bundle endpoint {url} with; give the relationship an initial bundle"
    )]
    NoEndpointBundle {
        /// The endpoint URL.
        url: String,
        /// The endpoint SPIFFE ID's trust domain.
        trust_domain: TrustDomain,
    },
    /// `https_spiffe`: the endpoint presented a valid X.509-SVID with
    /// another SPIFFE ID than the pinned one.
    #[error("bundle endpoint {url} presented `{presented}`, but `{expected}` is pinned")]
    WrongEndpointId {
        /// The endpoint URL.
        url: String,
        /// The pinned endpoint SPIFFE ID.
        expected: SpiffeId,
        /// The SPIFFE ID the endpoint presented.
        presented: SpiffeId,
    },
    /// The endpoint's certificate was not accepted: an X.509-SVID that does
    /// not chain to the endpoint trust domain's bundle (`https_spiffe`), or
    /// a Web PKI certificate that does not chain to the roots or does not
    /// name the host (`https_web`).
    #[error("bundle endpoint {url} is not trusted: {reason}")]
    EndpointNotTrusted {
        /// The endpoint URL.
        url: String,
        /// Why the certificate was refused.
        reason: String,
    },
    /// The TLS or HTTP exchange failed for another reason.
    #[error("bundle endpoint {url}: {reason}")]
    Transport {
        /// The endpoint URL.
        url: String,
        /// What failed.
        reason: String,
    },
    /// The endpoint answered with a status other than 200.
    #[error("bundle endpoint {url} answered HTTP {status}")]
    HttpStatus {
        /// The endpoint URL.
        url: String,
        /// The HTTP status code.
        status: u16,
    },
    /// The answer is larger than the configured limit.
    #[error("bundle endpoint {url} sent more than {limit} bytes")]
    TooLarge {
        /// The endpoint URL.
        url: String,
        /// The limit in bytes.
        limit: usize,
    },
    /// The answer is not a SPIFFE bundle document (garbage, wrong JSON,
    /// a key breaking the format's rules).
    #[error("bundle endpoint {url} sent an invalid SPIFFE bundle: {error}")]
    Malformed {
        /// The endpoint URL.
        url: String,
        /// What was wrong with the document.
        error: BundleError,
    },
    /// The answer is another trust domain's bundle: an X.509 authority
    /// names another trust domain.
    #[error(
        "bundle endpoint {url} sent a bundle of trust domain `{found}` where `{expected}` was expected"
    )]
    WrongTrustDomain {
        /// The endpoint URL.
        url: String,
        /// The trust domain whose bundle was fetched.
        expected: TrustDomain,
        /// The trust domain an authority of the answer names.
        found: String,
    },
    /// The answer's `spiffe_sequence` is lower than one already accepted:
    /// an old bundle replayed or served by a stale replica.
    #[error(
        "bundle endpoint {url} sent `{trust_domain}` bundle sequence {received}, older than the sequence {last} already accepted"
    )]
    StaleSequence {
        /// The endpoint URL.
        url: String,
        /// The trust domain.
        trust_domain: TrustDomain,
        /// The sequence number received.
        received: u64,
        /// The highest sequence number accepted so far.
        last: u64,
    },
}

/// Why a bundle endpoint server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The listening socket could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The TLS configuration could not be built (e.g. a certificate that
    /// does not match its key).
    #[error("bundle endpoint TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    /// The `https_web` certificate or key could not be read.
    #[error("bundle endpoint certificate or key: {reason}")]
    Credentials {
        /// What was wrong.
        reason: String,
    },
}
