//! SPIFFE identity plane for zt.
#![forbid(unsafe_code)]

pub mod matcher;

pub use spiffe::{SpiffeId, TrustDomain};
