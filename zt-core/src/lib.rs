//! The identity plane of zt: SPIFFE identities, X.509-SVID and JWT-SVID
//! verification, trust bundles, rotating SVID sources, revocation.
//!
//! `zt-core` knows nothing of HTTP or TLS configs. The TLS layer (`zt-tls`,
//! used by `zt-client` and `zt-server`) calls into it to verify peers and to
//! read the current SVID at each handshake; the authorization layer
//! (`zt-authz`) consumes the identities it verified.
//!
//! # Quick start
//!
//! Issue an SVID from the development CA (crate `zt-dev`), then verify it
//! as a peer would:
//!
//! ```
//! use std::time::{Duration, SystemTime};
//! use zt_core::matcher::IdMatcher;
//! use zt_core::x509::{verify_x509_svid, Usage};
//! use zt_core::{BundleSet, SpiffeId, TrustDomain};
//! use zt_dev::FakeCa;
//!
//! let ca = FakeCa::new(TrustDomain::new("example.org")?)?;
//! let billing = SpiffeId::new("spiffe://example.org/ns/prod/sa/billing")?;
//! let svid = ca.issue_x509_svid(&billing, Duration::from_secs(300))?;
//!
//! // The peer holds the bundle of our trust domain…
//! let bundles = BundleSet::new().with(ca.bundle());
//! let verified = verify_x509_svid(svid.chain(), &bundles, SystemTime::now(), Usage::ClientAuth)?;
//!
//! // …and decides whether this caller is one it accepts.
//! let accepted: IdMatcher = "spiffe://example.org/ns/prod/**".parse()?;
//! assert!(accepted.matches(verified.id()));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # What is here
//!
//! | module | holds |
//! |---|---|
//! | [`id`] | canonical-form parsing of the `spiffe` crate's [`SpiffeId`] / [`TrustDomain`] |
//! | [`matcher`] | [`IdMatcher`](matcher::IdMatcher): exact, one-of, trust domain, path prefix, segment glob, closure |
//! | [`bundle`] | [`TrustBundle`] / [`BundleSet`]: X.509 and JWT authorities per trust domain; PEM, DER and SPIFFE bundle (JWKS) formats |
//! | [`svid`] | the workload's own [`X509Svid`](svid::X509Svid) |
//! | [`x509`] | [`verify_x509_svid`](x509::verify_x509_svid): every X.509-SVID rule, one error variant each |
//! | [`jwt`] | [`validate_jwt_svid`](jwt::validate_jwt_svid) and [`JwtSvid`](jwt::JwtSvid) |
//! | [`jose`] | JWK public keys and JWS signature checks with the crypto library under zt's TLS provider |
//! | [`peer`] | [`verify_peer`](peer::verify_peer): SVID rules plus a pin, for TLS verifiers |
//! | [`source`] | [`SvidSource`](source::SvidSource): rotating snapshots from the Workload API, files, static material |
//! | [`revocation`] | hot-updatable deny-list of SPIFFE IDs and leaf serials, plus the CRLs in force |
//! | [`crl`] | X.509 CRLs verified against the trust bundle, scoped by issuer |
//! | [`serial`] | certificate serials in decimal, `0x` hex and colon-hex, as operators paste them |
//! | [`user`] | delegated user context: [`UserContextValidator`](user::UserContextValidator), scopes, the `act` chain |
//! | [`metrics`] | the names, labels and recording helpers of every metric zt records (through the `metrics` facade) |
//! | [`time`] | injectable [`Clock`](time::Clock) |
//! | [`reload`], [`origin`] | what file-backed holders share: change detection, reload outcomes, `file:line:column` positions |
//!
//! # The crates of zt
//!
//! | crate | plane | holds |
//! |---|---|---|
//! | `zt-core` | identity | this crate |
//! | `zt-authz` | authorization | policy language and engine, hot-reloaded policy files, declarations in code, the `Authorizer`, audit events |
//! | `zt-tls` | TLS | the rustls glue of both sides: SPIFFE verifiers, rotation-safe resolvers, client and server configs |
//! | `zt-client`, `zt-server` | TLS + HTTP | reqwest / tonic / tokio-rustls clients; the accept loop, `AuthorizeLayer` and extractors for axum and tonic |
//! | `zt-federation` | TLS + HTTP | SPIFFE federation: bundle endpoint client and server |
//! | `zt-macros` | authorization | `#[callers]` and `#[derive(Declared)]`, checked at compile time |
//! | `zt-dev` | development | the fake CA and its Workload API server (`zt agent`) |
//!
//! # Features
//!
//! | feature | default | enables |
//! |---|---|---|
//! | `workload-api` | yes | [`WorkloadApiSource`](source::WorkloadApiSource), built on the `spiffe` crate's `X509Source` and `JwtSource` |
#![forbid(unsafe_code)]

pub mod bundle;
pub mod crl;
pub mod id;
pub mod jose;
pub mod jwt;
pub mod live;
pub mod matcher;
pub mod metrics;
pub mod origin;
pub mod peer;
pub mod reload;
pub mod revocation;
pub mod serial;
pub mod source;
pub mod svid;
pub mod task;
pub mod time;
pub mod txn;
pub mod user;
pub mod x509;

pub use bundle::{BundleSet, TrustBundle};
pub use spiffe::{SpiffeId, TrustDomain};
