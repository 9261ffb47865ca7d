//! Finding `spire-server` and `spire-agent` 1.13.3, building them with
//! `interop/spire/build.sh` when they are not there yet.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Instant;

use crate::error::{Error, Result};
use crate::util;

/// The SPIRE version the harness runs.
pub const SPIRE_VERSION: &str = "1.13.3";

/// Paths of the two SPIRE programs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpireBinaries {
    /// `spire-server`.
    pub server: PathBuf,
    /// `spire-agent`.
    pub agent: PathBuf,
}

/// The build script, `interop/spire/build.sh`.
#[must_use]
pub fn build_script() -> PathBuf {
    util::crate_dir().join("spire").join("build.sh")
}

/// Where the binaries are looked for: `$ZT_SPIRE_BIN_DIR`, else
/// `${ZT_CACHE_DIR:-$HOME/.cache/zt}/spire-1.13.3/bin`.
///
/// # Errors
/// When no cache directory can be named.
pub fn bin_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("ZT_SPIRE_BIN_DIR").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    Ok(util::cache_dir()?
        .join(format!("spire-{SPIRE_VERSION}"))
        .join("bin"))
}

/// The SPIRE binaries, located once per process. When they are missing from
/// the cache directory, `interop/spire/build.sh` builds them (about 10
/// minutes on 2 cores; its progress goes to this process's stderr) unless
/// `ZT_SPIRE_NO_BUILD=1`, in which case this fails saying what to run.
///
/// # Errors
/// [`Error::Setup`] when they are missing and cannot be built, or are not
/// version 1.13.3.
pub fn spire_binaries() -> Result<SpireBinaries> {
    static FOUND: OnceLock<Result<SpireBinaries>> = OnceLock::new();
    FOUND.get_or_init(locate).clone()
}

fn locate() -> Result<SpireBinaries> {
    let dir = bin_dir()?;
    let bins = SpireBinaries {
        server: dir.join("spire-server"),
        agent: dir.join("spire-agent"),
    };
    let present = |b: &SpireBinaries| b.server.is_file() && b.agent.is_file();
    if !present(&bins) {
        if std::env::var_os("ZT_SPIRE_BIN_DIR").is_some() {
            return Err(Error::Setup(format!(
                "ZT_SPIRE_BIN_DIR={} holds no spire-server and spire-agent; unset it to use the cache, \
                 or run {} and point it at the result",
                dir.display(),
                build_script().display()
            )));
        }
        if std::env::var("ZT_SPIRE_NO_BUILD").is_ok_and(|v| v == "1") {
            return Err(Error::Setup(format!(
                "SPIRE {SPIRE_VERSION} is not built in {}; run {} (about 10 minutes), or interop/run.sh",
                dir.display(),
                build_script().display()
            )));
        }
        build()?;
        if !present(&bins) {
            return Err(Error::Setup(format!(
                "{} finished but {} still lacks spire-server/spire-agent",
                build_script().display(),
                dir.display()
            )));
        }
    }
    check_version(&bins.server)?;
    check_version(&bins.agent)?;
    Ok(bins)
}

fn build() -> Result<()> {
    let script = build_script();
    eprintln!(
        "zt-interop: SPIRE {SPIRE_VERSION} not cached; running {} (takes minutes)",
        script.display()
    );
    let start = Instant::now();
    let status = Command::new("bash")
        .arg(&script)
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .status()
        .map_err(|e| Error::Setup(format!("run {}: {e}", script.display())))?;
    if !status.success() {
        return Err(Error::Setup(format!(
            "{} failed ({status}); it needs Go 1.24+ on PATH, a C compiler, and access to the Go module proxy",
            script.display()
        )));
    }
    eprintln!(
        "zt-interop: SPIRE built in {:.0} s",
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

fn check_version(bin: &Path) -> Result<()> {
    let out = Command::new(bin)
        .arg("--version")
        .output()
        .map_err(|e| Error::Setup(format!("run {} --version: {e}", bin.display())))?;
    // SPIRE prints its version on stderr.
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if text.trim().starts_with(SPIRE_VERSION) {
        Ok(())
    } else {
        Err(Error::Setup(format!(
            "{} reports version {:?}, the harness needs {SPIRE_VERSION}",
            bin.display(),
            text.trim()
        )))
    }
}
