//! The go-spiffe peer programs of `interop/go/`: built with `go build` once
//! per source version into `<target>/interop-go/<hash>/`, and spawned as
//! [`JsonProcess`]es.
//!
//! The build directory is keyed by a SHA-256 of the Go sources (`go.mod`,
//! `go.sum`, every `.go` file) and `go version`, so an edit rebuilds and an
//! unchanged tree is reused across test runs. Within one test binary a
//! `OnceLock` makes parallel tests share one build; across processes the
//! build goes to a temporary directory that is renamed into place.
//!
//! A missing `go` is a failure, never a skip.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use sha2::{Digest as _, Sha256};

use crate::error::{Error, Result};
use crate::process::JsonProcess;
use crate::util;

/// One of the Go programs under `interop/go/cmd/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum GoProgram {
    /// `mtls-server`: go-spiffe HTTPS server with mutual TLS.
    MtlsServer,
    /// `mtls-client`: go-spiffe HTTPS client with mutual TLS.
    MtlsClient,
    /// `workload`: watches X.509 contexts and JWT bundles, fetches JWT-SVIDs.
    Workload,
    /// `jwt-fetch`: fetches JWT-SVIDs for an audience and exits.
    JwtFetch,
    /// `jwt-validate`: validates JWT-SVIDs with go-spiffe's `jwtsvid`.
    JwtValidate,
}

impl GoProgram {
    /// Every program, in build order.
    pub const ALL: [Self; 5] = [
        Self::MtlsServer,
        Self::MtlsClient,
        Self::Workload,
        Self::JwtFetch,
        Self::JwtValidate,
    ];

    /// The command's name (`interop/go/cmd/<name>`).
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::MtlsServer => "mtls-server",
            Self::MtlsClient => "mtls-client",
            Self::Workload => "workload",
            Self::JwtFetch => "jwt-fetch",
            Self::JwtValidate => "jwt-validate",
        }
    }

    /// The built binary's path, building every program first if needed.
    ///
    /// # Errors
    /// When `go` is missing or the build fails.
    pub fn path(self) -> Result<PathBuf> {
        Ok(build_dir()?.join(self.name()))
    }

    /// A `Command` for the built binary with `SPIFFE_ENDPOINT_SOCKET` set to
    /// `endpoint_socket` (a `unix:///...` address).
    ///
    /// # Errors
    /// As [`GoProgram::path`].
    pub fn command(self, endpoint_socket: &str) -> Result<Command> {
        let mut cmd = Command::new(self.path()?);
        cmd.env("SPIFFE_ENDPOINT_SOCKET", endpoint_socket);
        Ok(cmd)
    }

    /// Spawns the program with `args`, talking to the Workload API at
    /// `endpoint_socket`.
    ///
    /// # Errors
    /// As [`GoProgram::path`], or when the process cannot start.
    pub fn spawn(self, endpoint_socket: &str, args: &[&str]) -> Result<JsonProcess> {
        let mut cmd = self.command(endpoint_socket)?;
        cmd.args(args);
        JsonProcess::spawn(self.name(), cmd)
    }
}

/// The Go module's directory (`interop/go`).
#[must_use]
pub fn go_module_dir() -> PathBuf {
    util::crate_dir().join("go")
}

/// The directory holding every built Go program; builds them on first use
/// in this process.
///
/// # Errors
/// When `go` is missing or the build fails (the message holds go's output).
pub fn build_dir() -> Result<PathBuf> {
    static BUILT: OnceLock<Result<PathBuf>> = OnceLock::new();
    BUILT.get_or_init(build_all).clone()
}

fn build_all() -> Result<PathBuf> {
    let module = go_module_dir();
    let version = go_version()?;
    let key = source_hash(&module, &version)?;
    let dest = util::target_dir().join("interop-go").join(&key);
    if GoProgram::ALL.iter().all(|p| dest.join(p.name()).is_file()) {
        return Ok(dest);
    }
    let parent = dest
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    fs::create_dir_all(&parent)
        .map_err(|e| Error::io(format!("create {}", parent.display()), &e))?;
    let tmp = tempfile::Builder::new()
        .prefix(&format!(".{key}.tmp"))
        .tempdir_in(&parent)
        .map_err(|e| Error::io(format!("temp dir in {}", parent.display()), &e))?;
    let out = Command::new("go")
        .current_dir(&module)
        .args(["build", "-buildvcs=false", "-trimpath", "-o"])
        .arg(format!("{}/", tmp.path().display()))
        .arg("./cmd/...")
        .output()
        .map_err(|e| Error::Setup(format!("run `go build` in {}: {e}", module.display())))?;
    if !out.status.success() {
        return Err(Error::Setup(format!(
            "`go build ./cmd/...` in {} failed ({}):\n{}{}",
            module.display(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    let tmp_path = tmp.keep();
    match fs::rename(&tmp_path, &dest) {
        Ok(()) => Ok(dest),
        // Another process finished the same build first: use theirs.
        Err(_) if GoProgram::ALL.iter().all(|p| dest.join(p.name()).is_file()) => {
            let _ = fs::remove_dir_all(&tmp_path);
            Ok(dest)
        }
        Err(e) => Err(Error::io(
            format!("rename {} to {}", tmp_path.display(), dest.display()),
            &e,
        )),
    }
}

/// `go version`, proving `go` is installed.
///
/// # Errors
/// [`Error::Setup`] when `go` is not on `PATH`.
pub fn go_version() -> Result<String> {
    let out = Command::new("go").arg("version").output().map_err(|e| {
        Error::Setup(format!(
            "`go` not found ({e}); the interop tests need Go 1.25 or later on PATH to build interop/go \
             (go-spiffe v2.9.0 peers) and SPIRE"
        ))
    })?;
    if !out.status.success() {
        return Err(Error::Setup(format!(
            "`go version` failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn source_hash(module: &Path, go_version: &str) -> Result<String> {
    let mut files = Vec::new();
    collect_sources(module, module, &mut files)?;
    files.sort();
    let mut hasher = Sha256::new();
    hasher.update(go_version.as_bytes());
    for rel in files {
        let bytes = fs::read(module.join(&rel))
            .map_err(|e| Error::io(format!("read {}", rel.display()), &e))?;
        hasher.update(rel.to_string_lossy().as_bytes());
        hasher.update([0]);
        hasher.update((bytes.len() as u64).to_le_bytes());
        hasher.update(&bytes);
    }
    Ok(hex::encode(&hasher.finalize()[..8]))
}

fn collect_sources(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let entries =
        fs::read_dir(dir).map_err(|e| Error::io(format!("list {}", dir.display()), &e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(format!("list {}", dir.display()), &e))?;
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if path.is_dir() {
            if !name.starts_with('.') {
                collect_sources(root, &path, out)?;
            }
        } else if (name.ends_with(".go") || name == "go.mod" || name == "go.sum")
            && let Ok(rel) = path.strip_prefix(root)
        {
            out.push(rel.to_path_buf());
        }
    }
    Ok(())
}
