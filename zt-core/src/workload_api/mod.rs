//! SPIFFE Workload API wire types and server stubs, generated from
//! `proto/workload.proto` by `tools/gen-proto` (no `protoc` needed).
//!
//! [`WorkloadApiServer`](crate::fake_ca::WorkloadApiServer) implements the
//! service; clients use the `spiffe` crate.

#[allow(
    missing_docs,
    unreachable_pub,
    clippy::all,
    clippy::pedantic,
    rust_2018_idioms,
    reason = "generated code"
)]
pub mod pb;
