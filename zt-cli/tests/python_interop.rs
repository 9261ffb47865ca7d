//! `zt agent` against Python's `spiffe` package (py-spiffe), a Workload API
//! client written by others. It is ignored by `cargo test --workspace`;
//! `interop/run.sh` (which `.ci/run` calls) installs the package and runs it
//! with `--ignored`. Without the package it fails with an install hint
//! instead of skipping.
//!
//! py-spiffe runs on gRPC C-core, which sends the absolute socket path as
//! the HTTP/2 `:authority`; this test is what shows the agent's authority
//! relay works for such clients.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code"
)]

mod common;

use std::process::Command;

use common::{TD, WEB, bundle_arg, init_ca, start_agent, zt};
use predicates::str::contains;
use tempfile::TempDir;

const SCRIPT: &str = r#"
import sys
from cryptography.hazmat.primitives.serialization import Encoding
from spiffe import WorkloadApiClient

endpoint, out_dir = sys.argv[1], sys.argv[2]
with WorkloadApiClient(socket_path=endpoint) as client:
    svid = client.fetch_x509_svid()
    print("x509", svid.spiffe_id)
    svid.save(f"{out_dir}/py-chain.pem", f"{out_dir}/py-key.pem", Encoding.PEM)
    bundles = client.fetch_x509_bundles()
    print("bundles", len(bundles.bundles))
    jwt = client.fetch_jwt_svid(audience={"billing"})
    print("jwt", jwt.spiffe_id, sorted(jwt.audience))
    checked = client.validate_jwt_svid(jwt.token, "billing")
    print("validated", checked.spiffe_id)
    with open(f"{out_dir}/py-token.jwt", "w") as f:
        f.write(jwt.token)
"#;

fn python() -> String {
    std::env::var("ZT_PYTHON").unwrap_or_else(|_| "python3".into())
}

#[test]
#[ignore = "interop: needs Python's spiffe package; run interop/run.sh"]
fn python_spiffe_client_fetches_svid_and_jwt_from_zt_agent() {
    let py = python();
    let probe = Command::new(&py).args(["-c", "import spiffe"]).output();
    assert!(
        probe.as_ref().is_ok_and(|o| o.status.success()),
        "Python's `spiffe` package is required: `{py} -m pip install spiffe==0.3.2` (.ci/run does this)"
    );

    let tmp = TempDir::new().unwrap();
    let ca = init_ca(tmp.path(), "ca", false);
    let mut agent = start_agent(&ca, &tmp.path().join("agent.sock"), WEB, "5m");

    assert!(
        agent.endpoint.ends_with("/agent.sock"),
        "{}",
        agent.endpoint
    );
    let out = Command::new("timeout")
        .args(["60", &py, "-c", SCRIPT, "unix:agent.sock"])
        .arg(tmp.path())
        .current_dir(tmp.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "py-spiffe failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout,
        format!("x509 {WEB}\nbundles 1\njwt {WEB} ['billing']\nvalidated {WEB}\n")
    );

    // What Python received verifies with zt against the CA on disk.
    zt().args(["svid", "verify", "--cert"])
        .arg(tmp.path().join("py-chain.pem"))
        .arg("--bundle")
        .arg(bundle_arg(&ca.join("root.pem")))
        .assert()
        .code(0)
        .stdout(format!("{WEB}\n"));
    let jwks = tmp.path().join("jwks.json");
    let bundle = zt()
        .args(["ca", "bundle", "--format", "jwks", "--ca"])
        .arg(&ca)
        .output()
        .unwrap();
    std::fs::write(&jwks, bundle.stdout).unwrap();
    let token = std::fs::read_to_string(tmp.path().join("py-token.jwt")).unwrap();
    zt().args(["jwt", "verify", "--aud", "billing", "--bundle"])
        .arg(format!("{TD}={}", jwks.display()))
        .arg(token.trim())
        .assert()
        .code(0)
        .stdout(contains(WEB));

    assert!(agent.terminate().success());
}
