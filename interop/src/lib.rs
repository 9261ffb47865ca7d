//! Interop test support for zt: a real SPIRE 1.13.3 server and agent on
//! loopback ([`spire`]), and go-spiffe v2.9.0 peer programs ([`go`]), so
//! tests can run against the reference implementations instead of zt's own
//! fake CA.
//!
//! This library uses no zt crate; the package's `zt-peer` binary (a zt server
//! or client in a process of its own) and its zt-facing tests do.
//!
//! ```no_run
//! use std::time::Duration;
//! use zt_interop::go::GoProgram;
//! use zt_interop::spire::{EntrySpec, Spire};
//!
//! # fn main() -> zt_interop::Result<()> {
//! let spire = Spire::start("example.org")?;
//! let workload = GoProgram::Workload.path()?;
//! spire.register(&EntrySpec::for_executable("spiffe://example.org/go", &workload)?)?;
//! let mut peer = spire.spawn_go(GoProgram::Workload, &["-updates", "1"])?;
//! let update = peer.wait_for_event("x509_update", Duration::from_secs(30))?;
//! assert_eq!(update["spiffe_id"], "spiffe://example.org/go");
//! # Ok(())
//! # }
//! ```
//!
//! The tests of this package (`interop/tests/`) are `#[ignore]`d, so
//! `cargo test --workspace` needs neither SPIRE nor Go; `interop/run.sh`
//! builds what is missing and runs them with `--ignored`.

#![forbid(unsafe_code)]

pub mod error;
pub mod go;
pub mod process;
pub mod spire;
pub mod util;

pub use error::{Error, Result};
