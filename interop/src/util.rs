//! Small helpers shared by the harness: polling with a deadline, free ports,
//! cache and target directories, log tails, the caller's uid, file digests.

use std::fs;
use std::io::Read as _;
use std::net::TcpListener;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};

use crate::error::{Error, Result};

/// One attempt of a [`poll`] loop.
#[derive(Debug)]
pub enum Attempt<T> {
    /// The condition holds; `poll` returns this value.
    Done(T),
    /// Not yet; the text says what was seen, for the timeout message.
    NotYet(String),
}

/// Calls `attempt` every `interval` until it returns [`Attempt::Done`], or
/// fails with [`Error::Timeout`] naming `what` and the last
/// [`Attempt::NotYet`] reason once `timeout` has passed. An `Err` from
/// `attempt` ends the loop at once.
///
/// # Errors
/// The first error of `attempt`, or a timeout.
pub fn poll<T>(
    what: &str,
    timeout: Duration,
    interval: Duration,
    mut attempt: impl FnMut() -> Result<Attempt<T>>,
) -> Result<T> {
    let start = Instant::now();
    loop {
        match attempt()? {
            Attempt::Done(value) => return Ok(value),
            Attempt::NotYet(reason) => {
                if start.elapsed() >= timeout {
                    return Err(Error::Timeout(format!(
                        "{what}: not done after {:.1} s; last seen: {reason}",
                        timeout.as_secs_f64()
                    )));
                }
            }
        }
        thread::sleep(interval);
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago (bound to port 0, then
/// released). Another process may take it in between; the harness then
/// fails with the server's log saying so.
///
/// # Errors
/// When no port can be bound.
pub fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .map_err(|e| Error::io("bind 127.0.0.1:0 to pick a free port", &e))?;
    let port = listener
        .local_addr()
        .map_err(|e| Error::io("local address of the port probe", &e))?
        .port();
    Ok(port)
}

/// The effective uid of this process (the owner of `/proc/self`), for
/// `unix:uid:N` selectors.
///
/// # Errors
/// When `/proc/self` cannot be read (not Linux).
pub fn current_uid() -> Result<u32> {
    fs::metadata("/proc/self")
        .map(|m| m.uid())
        .map_err(|e| Error::io("stat /proc/self for the current uid", &e))
}

/// The hex SHA-256 of a file, as SPIRE's `unix:sha256:` selector has it.
///
/// # Errors
/// When the file cannot be read.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut file =
        fs::File::open(path).map_err(|e| Error::io(format!("open {}", path.display()), &e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file
            .read(&mut buf)
            .map_err(|e| Error::io(format!("read {}", path.display()), &e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// `${ZT_CACHE_DIR:-$HOME/.cache/zt}`: where SPIRE's binaries are cached
/// across clones.
///
/// # Errors
/// When neither `ZT_CACHE_DIR` nor `HOME` is set.
pub fn cache_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("ZT_CACHE_DIR").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|home| PathBuf::from(home).join(".cache").join("zt"))
        .ok_or_else(|| {
            Error::Setup(
                "neither ZT_CACHE_DIR nor HOME is set: cannot place the interop cache".into(),
            )
        })
}

/// The Cargo target directory of this build: `CARGO_TARGET_DIR` when set,
/// else the nearest ancestor of the running test binary holding Cargo's
/// `CACHEDIR.TAG`, else `<workspace>/target`.
#[must_use]
pub fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    if let Ok(exe) = std::env::current_exe()
        && let Some(dir) = exe
            .ancestors()
            .skip(1)
            .find(|d| d.join("CACHEDIR.TAG").is_file())
    {
        return dir.to_path_buf();
    }
    crate_dir().join("..").join("target")
}

/// This package's directory (`interop/` in the repository).
#[must_use]
pub fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The last `lines` lines of a file, or a note saying why there are none.
#[must_use]
pub fn tail(path: &Path, lines: usize) -> String {
    match fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            let start = all.len().saturating_sub(lines);
            if all.is_empty() {
                format!("({} is empty)", path.display())
            } else {
                all[start..].join("\n")
            }
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}

/// Runs `cmd` to completion with its stdout and stderr captured, killing it
/// after `timeout`.
///
/// # Errors
/// When it cannot start, or [`Error::Timeout`] when it runs too long.
pub fn output_with_timeout(
    cmd: &mut std::process::Command,
    timeout: Duration,
) -> Result<std::process::Output> {
    use std::process::Stdio;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::io(format!("spawn {cmd:?}"), &e))?;
    let read = |pipe: Option<Box<dyn std::io::Read + Send>>| {
        thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            buf
        })
    };
    let out = read(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
    );
    let err = read(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
    );
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if start.elapsed() < timeout => thread::sleep(Duration::from_millis(10)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(Error::Timeout(format!(
                    "{cmd:?} still running after {:.1} s; killed",
                    timeout.as_secs_f64()
                )));
            }
            Err(e) => return Err(Error::io(format!("wait for {cmd:?}"), &e)),
        }
    };
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    Ok(std::process::Output {
        status,
        stdout,
        stderr,
    })
}
