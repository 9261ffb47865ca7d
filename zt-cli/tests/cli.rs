//! End-to-end tests of the `zt` binary: exit codes, output and files on
//! disk. Cross-checks against real peers are in `peers.rs`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

mod common;

use std::path::Path;

use predicates::prelude::*;
use predicates::str::contains;
use tempfile::TempDir;

use common::{TD, WEB, bundle_arg, init_ca, issue, issued, verify, zt};

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

// ---- ca ----

#[test]
fn ca_init_svid_issue_svid_verify_accepts_and_prints_the_id() {
    let (_tmp, _ca, chain, bundle) = issued(false);
    verify(&chain, &bundle)
        .assert()
        .code(0)
        .stdout(format!("{WEB}\n"));
}

#[test]
fn svid_from_an_intermediate_ca_verifies_and_carries_the_intermediate() {
    let (_tmp, _ca, chain, bundle) = issued(true);
    let pem = std::fs::read_to_string(&chain).unwrap();
    assert_eq!(pem.matches("BEGIN CERTIFICATE").count(), 2);
    verify(&chain, &bundle)
        .args(["--usage", "server"])
        .assert()
        .code(0)
        .stdout(format!("{WEB}\n"));
}

#[test]
fn ca_init_refuses_to_overwrite_an_existing_ca_unless_forced() {
    let tmp = TempDir::new().unwrap();
    let ca = init_ca(tmp.path(), "ca", false);
    let root_before = std::fs::read(ca.join("root.pem")).unwrap();
    zt().args(["ca", "init", "--trust-domain", TD, "--dir"])
        .arg(&ca)
        .assert()
        .code(1)
        .stderr(contains("error: ").and(contains("--force")));
    assert_eq!(std::fs::read(ca.join("root.pem")).unwrap(), root_before);
    zt().args(["ca", "init", "--trust-domain", TD, "--force", "--dir"])
        .arg(&ca)
        .assert()
        .success();
    assert_ne!(std::fs::read(ca.join("root.pem")).unwrap(), root_before);
}

#[test]
fn ca_bundle_prints_pem_and_spiffe_jwks() {
    let tmp = TempDir::new().unwrap();
    let ca = init_ca(tmp.path(), "ca", true);
    let root = std::fs::read_to_string(ca.join("root.pem")).unwrap();
    zt().args(["ca", "bundle", "--ca"])
        .arg(&ca)
        .assert()
        .success()
        .stdout(contains(root.trim()));
    zt().args(["ca", "bundle", "--format", "jwks", "--ca"])
        .arg(&ca)
        .assert()
        .success()
        .stdout(
            contains("\"keys\"")
                .and(contains("\"use\": \"x509-svid\""))
                .and(contains("\"use\": \"jwt-svid\""))
                .and(contains("\"x5c\""))
                .and(contains("\"kid\"")),
        );
}

#[test]
fn ca_bundle_of_a_directory_without_a_ca_exits_2() {
    let tmp = TempDir::new().unwrap();
    zt().args(["ca", "bundle", "--ca"])
        .arg(tmp.path())
        .assert()
        .code(2)
        .stderr(contains("error: ").and(contains("zt ca init")));
}

#[cfg(unix)]
#[test]
fn key_files_are_mode_0600() {
    let (tmp, ca, _chain, _bundle) = issued(true);
    for key in ["root.key", "intermediate.key", "jwt.key"] {
        assert_eq!(mode(&ca.join(key)), 0o600, "{key}");
    }
    assert_eq!(mode(&tmp.path().join("out/web.key")), 0o600);
    assert_eq!(mode(&ca), 0o700);
}

#[cfg(unix)]
#[test]
fn reissuing_over_a_world_readable_key_file_makes_it_0600() {
    use std::os::unix::fs::PermissionsExt as _;
    let (tmp, ca, _chain, _bundle) = issued(false);
    let key = tmp.path().join("out/web.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    issue(&ca, WEB, &tmp.path().join("out/web"), "1h");
    assert_eq!(mode(&key), 0o600);
}

// ---- svid issue ----

#[test]
fn svid_issue_writes_chain_key_and_bundle_next_to_the_prefix() {
    let tmp = TempDir::new().unwrap();
    let ca = init_ca(tmp.path(), "ca", false);
    let out = issue(&ca, WEB, &tmp.path().join("deep/dir/web.v1"), "30s");
    assert!(out.contains(WEB), "{out}");
    for file in ["web.v1.pem", "web.v1.key", "bundle.pem"] {
        assert!(tmp.path().join("deep/dir").join(file).is_file(), "{file}");
    }
    let key = std::fs::read_to_string(tmp.path().join("deep/dir/web.v1.key")).unwrap();
    assert!(key.contains("PRIVATE KEY"));
}

#[test]
fn svid_issue_for_another_trust_domain_exits_2() {
    let tmp = TempDir::new().unwrap();
    let ca = init_ca(tmp.path(), "ca", false);
    zt().args(["svid", "issue", "--id", "spiffe://other.org/web", "--ca"])
        .arg(&ca)
        .arg("--out")
        .arg(tmp.path().join("web"))
        .assert()
        .code(2)
        .stderr(contains("error: ").and(contains("other.org")));
}

#[test]
fn bad_duration_exits_2_and_says_how_to_write_one() {
    let tmp = TempDir::new().unwrap();
    let ca = init_ca(tmp.path(), "ca", false);
    zt().args(["svid", "issue", "--id", WEB, "--ttl", "1w", "--ca"])
        .arg(&ca)
        .arg("--out")
        .arg(tmp.path().join("web"))
        .assert()
        .code(2)
        .stderr(contains("error: ").and(contains("30s, 5m, 1h, 2d")));
}

#[test]
fn non_canonical_id_exits_2() {
    let tmp = TempDir::new().unwrap();
    let ca = init_ca(tmp.path(), "ca", false);
    zt().args(["svid", "issue", "--id", "spiffe://Example.org/web", "--ca"])
        .arg(&ca)
        .arg("--out")
        .arg(tmp.path().join("web"))
        .assert()
        .code(2)
        .stderr(contains("error: "));
}

// ---- svid verify ----

#[test]
fn verify_with_matching_expect_pattern_exits_0() {
    let (_tmp, _ca, chain, bundle) = issued(false);
    verify(&chain, &bundle)
        .args(["--expect", "spiffe://example.org/**"])
        .assert()
        .code(0)
        .stdout(format!("{WEB}\n"));
}

#[test]
fn verify_with_non_matching_expect_exits_1_naming_both() {
    let (_tmp, _ca, chain, bundle) = issued(false);
    verify(&chain, &bundle)
        .args(["--expect", "spiffe://example.org/db"])
        .assert()
        .code(1)
        .stdout("")
        .stderr(
            contains("error: ")
                .and(contains(WEB))
                .and(contains("spiffe://example.org/db"))
                .and(contains("does not match")),
        );
}

#[test]
fn verify_with_malformed_expect_pattern_exits_2() {
    let (_tmp, _ca, chain, bundle) = issued(false);
    verify(&chain, &bundle)
        .args(["--expect", "spiffe://example.org/we*"])
        .assert()
        .code(2)
        .stderr(contains("error: "));
}

#[test]
fn verify_against_another_cas_bundle_exits_1_naming_the_rule() {
    let (tmp, _ca, chain, _bundle) = issued(false);
    let other = init_ca(tmp.path(), "other", false);
    verify(&chain, &other.join("root.pem"))
        .assert()
        .code(1)
        .stdout("")
        .stderr(contains("error: SVID rejected: ").and(contains(
            "not signed by an authority of trust domain `example.org`",
        )));
}

#[test]
fn verify_with_only_another_trust_domains_bundle_exits_1_naming_the_rule() {
    let (tmp, _ca, chain, _bundle) = issued(false);
    let other = tmp.path().join("other");
    zt().args(["ca", "init", "--trust-domain", "other.org", "--dir"])
        .arg(&other)
        .assert()
        .success();
    zt().args(["svid", "verify", "--cert"])
        .arg(&chain)
        .args([
            "--bundle",
            &format!("other.org={}", other.join("root.pem").display()),
        ])
        .assert()
        .code(1)
        .stderr(contains("no trust bundle for trust domain `example.org`"));
}

#[test]
fn a_bundle_whose_ca_names_another_trust_domain_is_refused_as_bad_input() {
    let (_tmp, _ca, chain, bundle) = issued(false);
    // example.org's CA offered as other.org's: it could mint other.org IDs.
    zt().args(["svid", "verify", "--cert"])
        .arg(&chain)
        .args(["--bundle", &format!("other.org={}", bundle.display())])
        .assert()
        .code(2)
        .stderr(contains("spiffe://example.org").and(contains("`other.org`")));
}

#[test]
fn verify_at_a_time_after_expiry_exits_1_saying_expired() {
    let (_tmp, _ca, chain, bundle) = issued(false);
    verify(&chain, &bundle)
        .args(["--at", "2099-01-01T00:00:00Z"])
        .assert()
        .code(1)
        .stderr(contains("error: SVID rejected: the SVID expired at").and(contains("2099-01-01")));
}

#[test]
fn verify_at_a_time_before_issuance_exits_1_saying_not_yet_valid() {
    let (_tmp, _ca, chain, bundle) = issued(false);
    verify(&chain, &bundle)
        .args(["--at", "2001-01-01T00:00:00Z"])
        .assert()
        .code(1)
        .stderr(contains("not valid until"));
}

#[test]
fn verify_of_an_unreadable_file_exits_2() {
    let (tmp, _ca, _chain, bundle) = issued(false);
    verify(&tmp.path().join("missing.pem"), &bundle)
        .assert()
        .code(2)
        .stderr(contains("error: ").and(contains("missing.pem")));
    let (_tmp2, _ca2, chain, _bundle) = issued(false);
    verify(&chain, &tmp.path().join("missing-bundle.pem"))
        .assert()
        .code(2)
        .stderr(contains("error: ").and(contains("missing-bundle.pem")));
}

#[test]
fn verify_with_bad_bundle_syntax_exits_2() {
    let (_tmp, _ca, chain, bundle) = issued(false);
    zt().args(["svid", "verify", "--cert"])
        .arg(&chain)
        .arg("--bundle")
        .arg(&bundle)
        .assert()
        .code(2)
        .stderr(contains("error: ").and(contains("TRUST_DOMAIN=FILE")));
    zt().args(["svid", "verify", "--cert"])
        .arg(&chain)
        .assert()
        .code(2)
        .stderr(contains("--bundle"));
}

#[test]
fn verify_with_a_bundle_file_that_is_not_a_bundle_exits_2() {
    let (tmp, _ca, chain, _bundle) = issued(false);
    let junk = tmp.path().join("junk.json");
    std::fs::write(&junk, "{\"not\": \"a bundle\"}").unwrap();
    verify(&chain, &junk)
        .assert()
        .code(2)
        .stderr(contains("error: ").and(contains("not a trust bundle")));
}

#[test]
fn verify_accepts_a_federated_bundle_set() {
    let (tmp, _ca, chain, bundle) = issued(false);
    let other = tmp.path().join("other");
    zt().args(["ca", "init", "--trust-domain", "other.org", "--dir"])
        .arg(&other)
        .assert()
        .success();
    verify(&chain, &bundle)
        .args([
            "--bundle",
            &format!("other.org={}", other.join("root.pem").display()),
        ])
        .assert()
        .code(0)
        .stdout(format!("{WEB}\n"));
}

// ---- svid inspect ----

#[test]
fn inspect_shows_id_serial_issuer_validity_and_key_type() {
    let tmp = TempDir::new().unwrap();
    let ca = init_ca(tmp.path(), "ca", true);
    let out = issue(&ca, WEB, &tmp.path().join("web"), "1h");
    let serial = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("serial:"))
        .unwrap()
        .trim()
        .to_owned();
    assert!(!serial.is_empty());
    zt().args(["svid", "inspect"])
        .arg(tmp.path().join("web.pem"))
        .assert()
        .code(0)
        .stdout(
            contains(format!("SPIFFE ID:   {WEB}"))
                .and(contains(format!("serial:      {serial}")))
                .and(contains(
                    "issuer:      O=zt fake CA, CN=example.org intermediate",
                ))
                .and(
                    predicates::str::is_match(r"not after:   \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
                        .unwrap(),
                )
                .and(contains("key type:    ECDSA P-256"))
                .and(contains("SVID rules:  ok"))
                .and(contains("chain:       2 certificates"))
                .and(contains("#1 CA")),
        );
}

#[test]
fn inspect_of_a_ca_certificate_shows_it_and_names_the_broken_rule() {
    let tmp = TempDir::new().unwrap();
    let ca = init_ca(tmp.path(), "ca", false);
    zt().args(["svid", "inspect"])
        .arg(ca.join("root.pem"))
        .assert()
        .code(1)
        .stdout(
            contains("serial:")
                .and(contains("URI SANs:    spiffe://example.org"))
                .and(contains("SVID rules:  BROKEN: "))
                .and(contains("has no path")),
        )
        .stderr(contains("error: ").and(contains("not a valid X.509-SVID")));
}

#[test]
fn inspect_of_a_file_without_certificates_exits_2() {
    let tmp = TempDir::new().unwrap();
    let ca = init_ca(tmp.path(), "ca", false);
    zt().args(["svid", "inspect"])
        .arg(ca.join("root.key"))
        .assert()
        .code(2)
        .stderr(contains("error: "));
    zt().args(["svid", "inspect"])
        .arg(tmp.path().join("nope.pem"))
        .assert()
        .code(2)
        .stderr(contains("error: "));
}

// ---- jwt ----

fn jwt_issue(ca: &Path, aud: &[&str]) -> String {
    let mut cmd = zt();
    cmd.args(["jwt", "issue", "--id", WEB, "--ca"]).arg(ca);
    for a in aud {
        cmd.args(["--aud", a]);
    }
    let out = cmd.assert().success().get_output().stdout.clone();
    String::from_utf8(out).unwrap().trim().to_owned()
}

fn jwks(ca: &Path, into: &Path) {
    let out = zt()
        .args(["ca", "bundle", "--format", "jwks", "--ca"])
        .arg(ca)
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    std::fs::write(into, out).unwrap();
}

#[test]
fn jwt_issue_then_verify_prints_subject_and_expiry() {
    let tmp = TempDir::new().unwrap();
    let ca = init_ca(tmp.path(), "ca", false);
    let token = jwt_issue(&ca, &["orders", "billing"]);
    assert_eq!(token.split('.').count(), 3, "{token}");
    let bundle = tmp.path().join("bundle.json");
    jwks(&ca, &bundle);
    zt().args([
        "jwt",
        "verify",
        "--aud",
        "billing",
        "--bundle",
        &bundle_arg(&bundle),
    ])
    .arg(&token)
    .assert()
    .code(0)
    .stdout(
        predicates::str::is_match(format!(
            r"^{WEB}\nexpires: \d{{4}}-\d\d-\d\dT\d\d:\d\d:\d\dZ\n$"
        ))
        .unwrap(),
    );
}

#[test]
fn jwt_verify_reads_the_token_from_stdin() {
    let tmp = TempDir::new().unwrap();
    let ca = init_ca(tmp.path(), "ca", false);
    let token = jwt_issue(&ca, &["orders"]);
    let bundle = tmp.path().join("bundle.json");
    jwks(&ca, &bundle);
    zt().args([
        "jwt",
        "verify",
        "--aud",
        "orders",
        "--bundle",
        &bundle_arg(&bundle),
        "-",
    ])
    .write_stdin(format!("{token}\n"))
    .assert()
    .code(0)
    .stdout(contains(WEB));
}

#[test]
fn jwt_verify_with_wrong_audience_exits_1() {
    let tmp = TempDir::new().unwrap();
    let ca = init_ca(tmp.path(), "ca", false);
    let token = jwt_issue(&ca, &["orders"]);
    let bundle = tmp.path().join("bundle.json");
    jwks(&ca, &bundle);
    zt().args([
        "jwt",
        "verify",
        "--aud",
        "payments",
        "--bundle",
        &bundle_arg(&bundle),
    ])
    .arg(&token)
    .assert()
    .code(1)
    .stdout("")
    .stderr(contains("error: JWT-SVID rejected: ").and(contains("does not include `payments`")));
}

#[test]
fn jwt_verify_after_expiry_or_against_another_ca_exits_1() {
    let tmp = TempDir::new().unwrap();
    let ca = init_ca(tmp.path(), "ca", false);
    let other = init_ca(tmp.path(), "other", false);
    let token = jwt_issue(&ca, &["orders"]);
    let bundle = tmp.path().join("bundle.json");
    jwks(&ca, &bundle);
    zt().args([
        "jwt",
        "verify",
        "--aud",
        "orders",
        "--at",
        "2099-01-01T00:00:00Z",
    ])
    .args(["--bundle", &bundle_arg(&bundle)])
    .arg(&token)
    .assert()
    .code(1)
    .stderr(contains("expired"));
    let other_bundle = tmp.path().join("other.json");
    jwks(&other, &other_bundle);
    zt().args([
        "jwt",
        "verify",
        "--aud",
        "orders",
        "--bundle",
        &bundle_arg(&other_bundle),
    ])
    .arg(&token)
    .assert()
    .code(1)
    .stderr(contains("no JWT authority"));
}

#[test]
fn jwt_verify_against_a_pem_bundle_says_to_use_jwks() {
    let tmp = TempDir::new().unwrap();
    let ca = init_ca(tmp.path(), "ca", false);
    let token = jwt_issue(&ca, &["orders"]);
    zt().args([
        "jwt",
        "verify",
        "--aud",
        "orders",
        "--bundle",
        &bundle_arg(&ca.join("root.pem")),
    ])
    .arg(&token)
    .assert()
    .code(1)
    .stderr(contains("--format jwks"));
}

#[test]
fn jwt_verify_of_garbage_exits_1_and_of_an_empty_token_exits_2() {
    let tmp = TempDir::new().unwrap();
    let ca = init_ca(tmp.path(), "ca", false);
    let bundle = tmp.path().join("bundle.json");
    jwks(&ca, &bundle);
    zt().args([
        "jwt",
        "verify",
        "--aud",
        "orders",
        "--bundle",
        &bundle_arg(&bundle),
        "not-a-jwt",
    ])
    .assert()
    .code(1)
    .stderr(contains("malformed"));
    zt().args([
        "jwt",
        "verify",
        "--aud",
        "orders",
        "--bundle",
        &bundle_arg(&bundle),
        "-",
    ])
    .write_stdin("")
    .assert()
    .code(2)
    .stderr(contains("error: the token is empty"));
}

// ---- help ----

const LEAF_COMMANDS: [&[&str]; 8] = [
    &["ca", "init"],
    &["ca", "bundle"],
    &["svid", "issue"],
    &["svid", "inspect"],
    &["svid", "verify"],
    &["jwt", "issue"],
    &["jwt", "verify"],
    &["agent"],
];

#[test]
fn help_lists_every_command() {
    let top = zt()
        .arg("--help")
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let top = String::from_utf8(top).unwrap();
    for path in LEAF_COMMANDS {
        let name = format!("zt {}", path.join(" "));
        assert!(
            top.contains(&name),
            "`zt --help` does not list `{name}`:\n{top}"
        );
        let help = zt()
            .args(path)
            .arg("--help")
            .assert()
            .success()
            .get_output()
            .stdout
            .clone();
        let help = String::from_utf8(help).unwrap();
        assert!(help.contains(&format!("Usage: {name}")), "{help}");
    }
    for group in ["ca", "svid", "jwt"] {
        let help = zt()
            .args([group, "--help"])
            .assert()
            .success()
            .get_output()
            .stdout
            .clone();
        let help = String::from_utf8(help).unwrap();
        for path in LEAF_COMMANDS
            .iter()
            .filter(|p| p.len() == 2 && p[0] == group)
        {
            assert!(
                help.contains(path[1]),
                "`zt {group} --help` misses {}",
                path[1]
            );
        }
    }
}

#[test]
fn no_arguments_is_a_usage_error() {
    zt().assert().code(2).stderr(contains("Usage: zt"));
}

// ---- ca revoke and svid verify --crl ----

/// The serial `zt svid issue` printed.
fn printed_serial(issue_output: &str) -> String {
    issue_output
        .lines()
        .find_map(|l| l.trim().strip_prefix("serial:"))
        .unwrap()
        .trim()
        .to_owned()
}

#[test]
fn a_revoked_svid_is_refused_by_verify_with_the_crl_naming_it() {
    for intermediate in [false, true] {
        let (tmp, ca, chain, bundle) = issued(intermediate);
        let other_out = issue(
            &ca,
            "spiffe://example.org/db",
            &tmp.path().join("out/db"),
            "1h",
        );
        let db_chain = tmp.path().join("out/db.pem");
        zt().args(["ca", "revoke", "--ca"])
            .arg(&ca)
            .arg("--svid")
            .arg(&chain)
            .assert()
            .code(0)
            .stdout(contains("revoked serial").and(contains("crl.pem")));
        let crl = ca.join("crl.pem");
        verify(&chain, &bundle)
            .arg("--crl")
            .arg(&crl)
            .assert()
            .code(1)
            .stdout("")
            .stderr(
                contains("SVID rejected: its leaf")
                    .and(contains("is revoked by CRL"))
                    .and(contains(crl.display().to_string())),
            );
        // Without the CRL, or for another SVID, it verifies.
        verify(&chain, &bundle).assert().code(0);
        verify(&db_chain, &bundle)
            .arg("--crl")
            .arg(&crl)
            .assert()
            .code(0)
            .stdout("spiffe://example.org/db\n");

        // By serial, as `zt svid issue` printed it; the CRL lists both.
        let serial = printed_serial(&other_out);
        zt().args(["ca", "revoke", "--ca"])
            .arg(&ca)
            .args(["--serial", &serial])
            .assert()
            .code(0)
            .stdout(contains(format!("revoked serial {serial}")).and(contains("2 serials")));
        verify(&db_chain, &bundle)
            .arg("--crl")
            .arg(&crl)
            .assert()
            .code(1)
            .stderr(contains(format!("(serial {serial}) is revoked by CRL")));
        assert_eq!(
            std::fs::read_to_string(ca.join("revoked.txt"))
                .unwrap()
                .lines()
                .count(),
            2,
            "intermediate={intermediate}"
        );
    }
}

#[test]
fn a_crl_from_another_ca_is_unusable_input() {
    let (tmp, _ca, chain, bundle) = issued(false);
    let other = init_ca(tmp.path(), "other", false);
    zt().args(["ca", "revoke", "--ca"])
        .arg(&other)
        .args(["--serial", "0x01"])
        .assert()
        .code(0);
    verify(&chain, &bundle)
        .arg("--crl")
        .arg(other.join("crl.pem"))
        .assert()
        .code(2)
        .stderr(contains("is not signed by a CA of any trust bundle"));
}

#[test]
fn ca_revoke_needs_a_serial_or_an_svid_and_a_hex_serial() {
    let tmp = TempDir::new().unwrap();
    let ca = init_ca(tmp.path(), "ca", false);
    zt().args(["ca", "revoke", "--ca"])
        .arg(&ca)
        .assert()
        .code(2);
    zt().args(["ca", "revoke", "--ca"])
        .arg(&ca)
        .args(["--serial", "xyz"])
        .assert()
        .code(2)
        .stderr(contains("--serial `xyz`"));
    assert!(!ca.join("crl.pem").exists());
}
