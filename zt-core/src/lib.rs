//! SPIFFE identity plane for zt.
#![forbid(unsafe_code)]

pub mod bundle;
#[cfg(feature = "fake-ca")]
pub mod fake_ca;
pub mod id;
pub mod jwt;
pub mod matcher;
pub mod peer;
pub mod source;
pub mod svid;
pub mod time;
pub mod x509;

pub use bundle::{BundleSet, TrustBundle};
pub use spiffe::{SpiffeId, TrustDomain};
