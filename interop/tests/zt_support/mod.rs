//! Shared by the zt-facing interop tests: the `zt-peer` binary, a tokio
//! runtime for the zt code running in the test process, and small helpers.

#![allow(dead_code, reason = "each test file uses a subset")]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use zt_core::source::{SvidSource, WorkloadApiSource};
use zt_interop::Error;
use zt_interop::spire::{EntrySpec, Spire, SpireConfig};

pub(crate) type TestResult = zt_interop::Result<()>;

/// How long to wait for one event of a peer.
pub(crate) const EVENT: Duration = Duration::from_secs(60);

/// The `zt-peer` binary of this package.
pub(crate) fn zt_peer() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_zt-peer"))
}

/// A SPIRE for `example.org` that does not hash the big Rust binaries on
/// every Workload API call (no entry here uses `unix:sha256`).
pub(crate) fn spire() -> zt_interop::Result<Spire> {
    SpireConfig::new("example.org")
        .workload_sha256(false)
        .start()
}

/// A multi-thread runtime for the zt code of the test process.
pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// A copy of `zt-peer` at a fresh path, registered as `id`; returns the
/// copy's path once the agent has its SVID.
pub(crate) fn register_zt_peer(spire: &Spire, name: &str, id: &str) -> zt_interop::Result<PathBuf> {
    let path = spire.copy_executable(&zt_peer(), name)?;
    spire.register(&EntrySpec::for_executable(id, &path)?)?;
    Ok(path)
}

/// Registers the test binary itself as `id`.
pub(crate) fn register_self(spire: &Spire, id: &str) -> zt_interop::Result<()> {
    spire.register(&EntrySpec::for_current_exe(id)?)?;
    Ok(())
}

/// A `WorkloadApiSource` on the harness agent, for the test process.
pub(crate) async fn source(spire: &Spire) -> zt_interop::Result<Arc<WorkloadApiSource>> {
    WorkloadApiSource::builder()
        .endpoint(spire.endpoint_socket())
        .initial_sync_timeout(Duration::from_secs(30))
        .reconnect_backoff(Duration::from_millis(100), Duration::from_secs(1))
        .build()
        .await
        .map_err(|e| Error::Command(format!("WorkloadApiSource on the SPIRE agent: {e}")))
}

/// The serial of the SVID `source` serves now.
pub(crate) fn serial(source: &dyn SvidSource) -> String {
    source
        .current()
        .map(|s| s.svid().serial_hex())
        .unwrap_or_else(|e| format!("<{e}>"))
}

pub(crate) fn str_field<'a>(event: &'a Value, key: &str) -> &'a str {
    event.get(key).and_then(Value::as_str).unwrap_or_default()
}

pub(crate) fn log(what: &str, start: Instant) {
    eprintln!("[{:6.1} s] {what}", start.elapsed().as_secs_f64());
}

/// Polls `check` every 50 ms until it returns `Some`, or fails after
/// `timeout` naming `what`.
pub(crate) fn wait_until<T>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Option<T>,
) -> zt_interop::Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            return Err(Error::Timeout(format!(
                "{what}: not within {:.1} s",
                timeout.as_secs_f64()
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Turns any error into the harness's, with what was being done.
pub(crate) trait Ctx<T> {
    /// `Err(e)` becomes [`Error::Command`] `"{what}: {e}"`.
    fn ctx(self, what: &str) -> zt_interop::Result<T>;
}

impl<T, E: std::fmt::Display> Ctx<T> for Result<T, E> {
    fn ctx(self, what: &str) -> zt_interop::Result<T> {
        self.map_err(|e| Error::Command(format!("{what}: {e}")))
    }
}

/// Fails the test with `message` unless `cond` holds.
pub(crate) fn ensure(cond: bool, message: impl FnOnce() -> String) -> TestResult {
    if cond {
        Ok(())
    } else {
        Err(Error::Command(message()))
    }
}
