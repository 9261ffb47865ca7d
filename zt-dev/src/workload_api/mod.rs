//! SPIFFE Workload API wire types and gRPC stubs, generated from
//! `proto/workload.proto` by `tools/gen-proto` (no `protoc` needed).
//!
//! `pb::spiffe_workload_api_server` is implemented by
//! [`WorkloadApiServer`](crate::WorkloadApiServer).
//! `pb::spiffe_workload_api_client` is generic over any tonic `GrpcService`
//! (it has no `connect()` helper, so tonic's `channel` feature is not needed).

#[allow(
    missing_docs,
    unreachable_pub,
    clippy::all,
    clippy::pedantic,
    rust_2018_idioms,
    reason = "generated code"
)]
pub mod pb;
