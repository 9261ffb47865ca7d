//! Helpers shared by the integration tests of the `zt` binary.
#![allow(dead_code, reason = "each test crate uses a subset of the helpers")]

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use predicates::str::contains;
use tempfile::TempDir;

pub(crate) const TD: &str = "example.org";
pub(crate) const WEB: &str = "spiffe://example.org/web";

pub(crate) fn zt() -> Command {
    Command::cargo_bin("zt").unwrap()
}

/// Runs `zt ca init` in `dir/name` and returns the CA directory.
pub(crate) fn init_ca(dir: &Path, name: &str, intermediate: bool) -> PathBuf {
    let ca = dir.join(name);
    let mut cmd = zt();
    cmd.args(["ca", "init", "--trust-domain", TD, "--dir"])
        .arg(&ca);
    if intermediate {
        cmd.arg("--intermediate");
    }
    cmd.assert()
        .success()
        .stdout(contains("created a development CA"));
    ca
}

/// Runs `zt svid issue` with output prefix `out` and returns its stdout.
pub(crate) fn issue(ca: &Path, id: &str, out: &Path, ttl: &str) -> String {
    let output = zt()
        .args(["svid", "issue", "--ca"])
        .arg(ca)
        .args(["--id", id, "--ttl", ttl, "--out"])
        .arg(out)
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    String::from_utf8(output).unwrap()
}

pub(crate) fn bundle_arg(path: &Path) -> String {
    format!("{TD}={}", path.display())
}

/// A CA with one SVID for `WEB`: (tempdir, ca dir, chain, bundle).
pub(crate) fn issued(intermediate: bool) -> (TempDir, PathBuf, PathBuf, PathBuf) {
    let tmp = TempDir::new().unwrap();
    let ca = init_ca(tmp.path(), "ca", intermediate);
    issue(&ca, WEB, &tmp.path().join("out/web"), "1h");
    let chain = tmp.path().join("out/web.pem");
    let bundle = tmp.path().join("out/bundle.pem");
    (tmp, ca, chain, bundle)
}

pub(crate) fn verify(chain: &Path, bundle: &Path) -> Command {
    let mut cmd = zt();
    cmd.args(["svid", "verify", "--cert"])
        .arg(chain)
        .args(["--bundle", &bundle_arg(bundle)]);
    cmd
}

/// A running `zt agent`, terminated (SIGKILL) on drop if still running.
pub(crate) struct Agent {
    child: Option<std::process::Child>,
    pid: u32,
    /// The `SPIFFE_ENDPOINT_SOCKET` value the agent printed.
    pub(crate) endpoint: String,
    /// The socket path.
    pub(crate) socket: PathBuf,
}

/// Starts `zt agent` and returns once it has printed its endpoint, which it
/// does only after the socket is bound.
pub(crate) fn start_agent(ca: &Path, socket: &Path, id: &str, ttl: &str) -> Agent {
    use std::io::BufRead as _;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_zt"))
        .args(["agent", "--id", id, "--ttl", ttl, "--ca"])
        .arg(ca)
        .arg("--socket")
        .arg(socket)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let stdout = child.stdout.take().unwrap();
    let mut first = String::new();
    std::io::BufReader::new(stdout)
        .read_line(&mut first)
        .unwrap();
    let endpoint = first
        .trim_end()
        .strip_prefix("SPIFFE_ENDPOINT_SOCKET=")
        .unwrap_or_else(|| panic!("zt agent printed {first:?} instead of its endpoint"))
        .to_owned();
    Agent {
        child: Some(child),
        pid,
        endpoint,
        socket: socket.to_owned(),
    }
}

impl Agent {
    /// Sends SIGTERM and waits (at most 10 s) for the agent to exit.
    pub(crate) fn terminate(&mut self) -> std::process::ExitStatus {
        let kill = std::process::Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status()
            .unwrap();
        assert!(kill.success());
        let mut child = self.child.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait());
        });
        rx.recv_timeout(std::time::Duration::from_secs(10))
            .expect("zt agent ignored SIGTERM for 10s")
            .unwrap()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
