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
