//! The identity plane of zt: SPIFFE identities, X.509-SVID and JWT-SVID
//! verification, trust bundles, rotating SVID sources, and a development CA.
//!
//! `zt-core` knows nothing of HTTP or TLS configs. The TLS layers
//! (`zt-client`, `zt-server`) call into it to verify peers and to read the
//! current SVID at each handshake.
//!
//! # Quick start
//!
//! Issue an SVID from the built-in development CA, then verify it as a peer
//! would:
//!
//! ```
//! # #[cfg(feature = "fake-ca")] {
//! use std::time::{Duration, SystemTime};
//! use zt_core::fake_ca::FakeCa;
//! use zt_core::matcher::IdMatcher;
//! use zt_core::x509::{verify_x509_svid, Usage};
//! use zt_core::{BundleSet, SpiffeId, TrustDomain};
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
//! # }
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
//! | [`peer`] | [`verify_peer`](peer::verify_peer): SVID rules plus a pin, for TLS verifiers |
//! | [`source`] | [`SvidSource`](source::SvidSource): rotating snapshots from the Workload API, files, static material |
//! | [`time`] | injectable [`Clock`](time::Clock) |
//! | [`policy`] | authorization rules, TOML policy files, the compiled engine, [`PolicyStore`](policy::PolicyStore) for hot reload |
//! | [`revocation`] | hot-updatable deny-list of SPIFFE IDs and leaf serials |
//! | [`authz`] | [`Authorizer`](authz::Authorizer): revocation + policy + dry-run + audit, once per request |
//! | [`audit`] | audit events (`tracing` target `zt::audit`) and a non-blocking JSON-lines writer |
//! | [`user`] | delegated user context: [`UserContextValidator`](user::UserContextValidator), scopes, the `act` chain |
//! | `fake_ca` | development CA, broken material for tests, Workload API server, development user-context issuer (feature `fake-ca`) |
//!
//! # Features
//!
//! | feature | default | enables |
//! |---|---|---|
//! | `workload-api` | yes | [`WorkloadApiSource`](source::WorkloadApiSource), built on the `spiffe` crate's `X509Source` and `JwtSource` |
//! | `fake-ca` | no | `fake_ca`: [`FakeCa`], `FakeCaSource`, `WorkloadApiServer`, `DevUserIssuer` |
//!
//! [`FakeCa`]: https://docs.rs/zt-core/latest/zt_core/fake_ca/struct.FakeCa.html
#![forbid(unsafe_code)]

pub mod audit;
pub mod authz;
pub mod bundle;
#[cfg(feature = "fake-ca")]
pub mod fake_ca;
pub mod id;
pub mod jwt;
pub mod matcher;
pub mod peer;
pub mod policy;
mod reload;
pub mod revocation;
pub mod source;
pub mod svid;
pub mod time;
pub mod user;
#[cfg(feature = "fake-ca")]
pub mod workload_api;
pub mod x509;

pub use bundle::{BundleSet, TrustBundle};
pub use spiffe::{SpiffeId, TrustDomain};
