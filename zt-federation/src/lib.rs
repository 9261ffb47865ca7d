//! SPIFFE federation for zt: trust between trust domains through their
//! bundle endpoints (SPIFFE Federation specification).
//!
//! - **Client**: a [`Federation`] holds one relationship ([`Endpoint`]) per
//!   foreign trust domain, fetches each bundle from its endpoint in the
//!   `https_web` profile (Web PKI, [`WebRoots`]) or the `https_spiffe`
//!   profile (the endpoint's X.509-SVID, its SPIFFE ID pinned), and
//!   refreshes it in the background at the bundle's `spiffe_refresh_hint`.
//!   A fetched bundle replaces the one in force only if it passes every
//!   check; otherwise a typed [`FederationError`] says why (another trust
//!   domain's bundle, an older `spiffe_sequence`, the wrong endpoint ID, an
//!   untrusted endpoint, garbage) and the last good bundle stays in force
//!   until its authorities expire.
//! - **Into TLS**: [`FederatedSource`] wraps any
//!   [`SvidSource`](zt_core::source::SvidSource) and adds the federation's
//!   bundles to its snapshots, so `zt_tls::TlsOptions`, `zt-client` and
//!   `zt-server` accept peers of the federated trust domains (each chain
//!   checked against the bundle of the peer's own trust domain only).
//! - **Server**: [`BundleEndpointServer`] serves a trust domain's bundle
//!   (a source's own, or any [`TrustBundle`](zt_core::TrustBundle)) in both
//!   profiles, for SPIRE or any other federation client.
//!
//! The SPIFFE bundle document itself (keys with `use` `x509-svid` and
//! `jwt-svid`, `spiffe_sequence`, `spiffe_refresh_hint`) is parsed and
//! written by `zt_core::bundle`.
//!
//! # Example
//!
//! ```no_run
//! use std::sync::Arc;
//! use zt_core::source::SvidSource;
//! use zt_federation::{Endpoint, FederatedSource, Federation};
//!
//! # async fn run(local: Arc<dyn SvidSource>, partner_bundle: zt_core::TrustBundle) -> Result<(), Box<dyn std::error::Error>> {
//! let federation = Federation::builder()
//!     .endpoint(
//!         Endpoint::https_spiffe(
//!             "partner.example".parse()?,
//!             "https://bundles.partner.example:8443/",
//!             "spiffe://partner.example/spire/server".parse()?,
//!         )
//!         .initial_bundle(partner_bundle)?,
//!     )
//!     .build()?;
//! federation.start()?;
//! let source = FederatedSource::new(local, federation)?;
//! let tls = zt_tls::TlsOptions::new(source)
//!     .pin("spiffe://partner.example/payments".parse()?)
//!     .client_config()?;
//! # let _ = tls;
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]

mod endpoint;
mod error;
mod federation;
mod fetch;
mod server;
mod source;
mod verify;

pub use endpoint::{Endpoint, EndpointProfile, WebRoots};
pub use error::{FederationError, ServerError};
pub use federation::{DEFAULT_REFRESH_HINT, Federation, FederationBuilder, RelationshipStatus};
pub use server::{BundleEndpointServer, RunningBundleEndpoint};
pub use source::FederatedSource;
