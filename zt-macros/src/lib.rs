//! Procedural macros for declaring, next to each axum handler or tonic
//! method, which SPIFFE IDs may call it.
//!
//! This crate exports nothing yet: the macros build on the authorization
//! layer of `zt-server`, which they will generate policy for. Until then,
//! pin callers with `zt_server::ServerBuilder::accept_callers` or check
//! `zt_server::VerifiedPeer` in handlers.
#![forbid(unsafe_code)]
