//! Cross-checks of what `zt` issues and serves against real peers: openssl
//! verifying chains, and the `spiffe` crate's Workload API client fetching
//! from `zt agent`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use predicates::prelude::*;
use predicates::str::contains;
use tempfile::TempDir;

use common::{TD, WEB, init_ca, issued, start_agent, verify, zt};

// ---- openssl as a real peer ----

/// Where openssl is. Missing openssl fails the test: the cross-check is
/// the point of it.
fn openssl() -> PathBuf {
    let path = PathBuf::from("/usr/bin/openssl");
    let found = if path.is_file() {
        path
    } else {
        PathBuf::from("openssl")
    };
    match std::process::Command::new(&found).arg("version").output() {
        Ok(out) if out.status.success() => found,
        _ => panic!(
            "openssl is not installed: install it (e.g. `apt-get install openssl`); \
             these tests cross-check zt's SVIDs with a real X.509 implementation"
        ),
    }
}

/// Splits a PEM chain into the leaf and the rest.
fn split_chain(chain: &Path, dir: &Path) -> (PathBuf, Option<PathBuf>) {
    let pem = std::fs::read_to_string(chain).unwrap();
    let end = "-----END CERTIFICATE-----";
    let blocks: Vec<String> = pem
        .split_inclusive(end)
        .filter(|b| b.contains("BEGIN CERTIFICATE"))
        .map(|b| format!("{}\n", b.trim()))
        .collect();
    assert!(!blocks.is_empty());
    let leaf = dir.join("leaf.pem");
    std::fs::write(&leaf, &blocks[0]).unwrap();
    if blocks.len() == 1 {
        return (leaf, None);
    }
    let rest = dir.join("intermediates.pem");
    std::fs::write(&rest, blocks[1..].concat()).unwrap();
    (leaf, Some(rest))
}

fn openssl_verify(bundle: &Path, chain: &Path, dir: &Path) -> std::process::Output {
    let (leaf, intermediates) = split_chain(chain, dir);
    let mut cmd = std::process::Command::new(openssl());
    cmd.args(["verify", "-x509_strict", "-purpose", "sslclient", "-CAfile"])
        .arg(bundle);
    if let Some(rest) = &intermediates {
        cmd.arg("-untrusted").arg(rest);
    }
    cmd.arg(&leaf).output().unwrap()
}

#[test]
fn openssl_accepts_an_svid_from_a_root_only_ca() {
    let (tmp, _ca, chain, bundle) = issued(false);
    let out = openssl_verify(&bundle, &chain, tmp.path());
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(": OK"),
        "{out:?}"
    );
}

#[test]
fn openssl_accepts_an_svid_from_an_intermediate_ca() {
    let (tmp, _ca, chain, bundle) = issued(true);
    let (_, intermediates) = split_chain(&chain, tmp.path());
    assert!(
        intermediates.is_some(),
        "the chain should carry the intermediate"
    );
    let out = openssl_verify(&bundle, &chain, tmp.path());
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(": OK"),
        "{out:?}"
    );
}

#[test]
fn openssl_rejects_an_svid_against_another_cas_bundle() {
    for intermediate in [false, true] {
        let (tmp, _ca, chain, _bundle) = issued(intermediate);
        let other = init_ca(tmp.path(), "other", intermediate);
        let out = openssl_verify(&other.join("root.pem"), &chain, tmp.path());
        assert!(
            !out.status.success(),
            "intermediate={intermediate}: {out:?}"
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("unable to get"), "{stderr}");
    }
}

// ---- agent and the spiffe crate's Workload API client ----

#[tokio::test(flavor = "multi_thread")]
async fn agent_serves_rotating_svids_to_the_spiffe_crate_client() {
    let tmp = TempDir::new().unwrap();
    let ca = init_ca(tmp.path(), "ca", false);
    let socket = tmp.path().join("agent.sock");
    let mut agent = start_agent(&ca, &socket, WEB, "4s");
    assert_eq!(agent.endpoint, format!("unix://{}", socket.display()));

    let source = tokio::time::timeout(
        Duration::from_secs(10),
        spiffe::X509Source::builder()
            .endpoint(format!("unix:{}", socket.display()))
            .build(),
    )
    .await
    .expect("the X509Source did not sync within 10s")
    .unwrap();
    let svid = source.svid().unwrap();
    assert_eq!(svid.spiffe_id().to_string(), WEB);
    let td = spiffe::TrustDomain::new(TD).unwrap();
    let bundle = source.try_bundle_for_trust_domain(&td).unwrap();

    // What the client received verifies with zt, against both the bundle it
    // was served and the CA's root on disk.
    let leaf = tmp.path().join("fetched-leaf.der");
    std::fs::write(&leaf, svid.leaf().as_bytes()).unwrap();
    let served = tmp.path().join("served-bundle.der");
    std::fs::write(&served, bundle.authorities()[0].as_bytes()).unwrap();
    for trusted in [served.as_path(), ca.join("root.pem").as_path()] {
        verify(&leaf, trusted)
            .assert()
            .code(0)
            .stdout(format!("{WEB}\n"));
    }

    // Renewal at half the TTL is pushed to the client.
    let first = svid.leaf().as_bytes().to_vec();
    let mut updates = source.updated();
    tokio::time::timeout(Duration::from_secs(10), async {
        while source.svid().unwrap().leaf().as_bytes() == first.as_slice() {
            updates.changed().await.unwrap();
        }
    })
    .await
    .expect("no rotated SVID within 10s");
    source.shutdown().await;

    // SIGTERM stops the agent cleanly and removes the socket.
    let status = agent.terminate();
    assert!(status.success(), "{status}");
    assert!(
        !agent.socket.exists(),
        "the socket should be removed on shutdown"
    );
}

/// The serial `zt svid issue` printed.
fn printed_serial(issue_output: &str) -> String {
    issue_output
        .lines()
        .find_map(|l| l.trim().strip_prefix("serial:"))
        .unwrap()
        .trim()
        .to_owned()
}

fn hex_bytes(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn agent_serves_the_crl_of_zt_ca_revoke_and_pushes_a_new_one() {
    use zt_core::crl::WorkloadApiCrls;
    use zt_core::revocation::{Revocations, Revoked};

    let tmp = TempDir::new().unwrap();
    let ca = init_ca(tmp.path(), "ca", false);
    let web = printed_serial(&common::issue(&ca, WEB, &tmp.path().join("out/web"), "1h"));
    let db_id = "spiffe://example.org/db";
    let db = printed_serial(&common::issue(&ca, db_id, &tmp.path().join("out/db"), "1h"));
    zt().args(["ca", "revoke", "--ca"])
        .arg(&ca)
        .args(["--serial", &web])
        .assert()
        .code(0);
    let socket = tmp.path().join("agent.sock");
    let mut agent = start_agent(&ca, &socket, WEB, "1m");

    // The agent serves the CRL on disk from its first response on.
    let revocations = Revocations::new();
    let feed = WorkloadApiCrls::follow(&agent.endpoint, revocations.clone())
        .await
        .unwrap();
    assert_eq!(revocations.crls().iter().count(), 1);
    let web_id = zt_core::SpiffeId::new(WEB).unwrap();
    let db_spiffe = zt_core::SpiffeId::new(db_id).unwrap();
    assert_eq!(
        revocations.check(&web_id, &hex_bytes(&web)),
        Some(Revoked::Crl)
    );
    assert_eq!(revocations.check(&db_spiffe, &hex_bytes(&db)), None);

    // Revoking another serial while the agent runs reaches the follower.
    let seen = *revocations.changes().borrow();
    zt().args(["ca", "revoke", "--ca"])
        .arg(&ca)
        .args(["--serial", &db])
        .assert()
        .code(0);
    let mut changes = revocations.changes();
    tokio::time::timeout(Duration::from_secs(10), changes.wait_for(|v| *v > seen))
        .await
        .expect("the new CRL was pushed within 10s")
        .unwrap();
    assert_eq!(
        revocations.check(&db_spiffe, &hex_bytes(&db)),
        Some(Revoked::Crl)
    );
    drop(feed);
    assert!(agent.terminate().success());
}

#[test]
fn agent_for_an_id_outside_the_trust_domain_exits_2() {
    let tmp = TempDir::new().unwrap();
    let ca = init_ca(tmp.path(), "ca", false);
    zt().args(["agent", "--id", "spiffe://other.org/web", "--ca"])
        .arg(&ca)
        .arg("--socket")
        .arg(tmp.path().join("a.sock"))
        .timeout(Duration::from_secs(10))
        .assert()
        .code(2)
        .stderr(contains("error: ").and(contains("other.org")));
}
