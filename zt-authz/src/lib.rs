//! The authorization plane of zt: explicit policy decided in-process for
//! every request, declarations of allowed callers in code, and an audit
//! record for every decision.
//!
//! `zt-authz` decides on identities that the TLS layer already verified
//! (`zt-server` hands it the caller of each request); it knows nothing of
//! HTTP types or TLS.
//!
//! # Quick start
//!
//! ```
//! use zt_authz::Authorizer;
//! use zt_authz::audit::Verdict;
//! use zt_authz::policy::{Policy, Request};
//! use zt_core::SpiffeId;
//!
//! let policy = Policy::from_toml_str(
//!     r#"
//!     [[rule]]
//!     id = "orders-reads-invoices"
//!     effect = "allow"
//!     callers = ["spiffe://example.org/orders"]
//!     http = [{ method = "GET", path = "/invoices/{id}" }]
//!     "#,
//!     "policy.toml",
//! )?;
//! let authz = Authorizer::builder(policy).target("billing").build();
//!
//! let orders = SpiffeId::new("spiffe://example.org/orders")?;
//! let read = Request::new(Some(&orders), "GET", "/invoices/42");
//! assert_eq!(authz.authorize(&read, None).verdict, Verdict::Allow);
//! let write = Request::new(Some(&orders), "DELETE", "/invoices/42");
//! assert_eq!(authz.authorize(&write, None).verdict, Verdict::Deny);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # What is here
//!
//! | module | holds |
//! |---|---|
//! | [`policy`] | rules, the TOML file format, the compiled engine, [`PolicyStore`](policy::PolicyStore) for hot reload, lint, [`declare`](policy::declare) (callers declared in code) |
//! | [`Authorizer`] | revocation + policy + dry-run + audit, once per request |
//! | [`audit`] | audit events (`tracing` target `zt::audit`) and a non-blocking JSON-lines writer |
//! | [`evidence`] | audit logs read back: suggested policy, replay of a candidate, drift, the call graph |
//!
//! # Features
//!
//! | feature | default | enables |
//! |---|---|---|
//! | `cedar` | no | `policy::cedar`: a Cedar translation of a [`Policy`](policy::Policy), the comparison peer of the benchmarks (needs Rust 1.89) |
#![forbid(unsafe_code)]

pub mod audit;
mod authorizer;
mod decision_metrics;
pub mod evidence;
pub mod policy;

pub use authorizer::{
    Authorization, Authorizer, AuthorizerBuilder, Identity, IdentityRole, Outcome,
};
