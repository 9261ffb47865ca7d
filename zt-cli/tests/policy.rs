//! End-to-end tests of `zt policy check` and `zt policy lint`: decisions,
//! exit codes and the lines of policy-file errors and warnings.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code"
)]

mod common;

use std::path::{Path, PathBuf};

use predicates::prelude::*;
use predicates::str::contains;
use tempfile::TempDir;

use common::zt;

const BILLING: &str = "spiffe://example.org/ns/prod/sa/billing";

/// Line 4: `billing-reads-invoices`; line 10: `no-admin`; line 15:
/// `billing-grpc`; line 21: `audit-invoices`.
const POLICY: &str = r#"version = "2026-11-23.1"

[[rule]]
id = "billing-reads-invoices"
effect = "allow"
callers = ["spiffe://example.org/ns/prod/sa/billing"]
http = [{ method = "GET", path = "/invoices/{id}" }]

[[rule]]
id = "no-admin"
effect = "deny"
http = [{ method = "*", path = "/admin/**" }]

[[rule]]
id = "billing-grpc"
effect = "allow"
callers = ["spiffe://example.org/ns/prod/sa/billing"]
grpc = ["/billing.Billing/*"]

[[rule]]
id = "audit-invoices"
effect = "audit"
http = [{ path = "/invoices/**" }]
"#;

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn check(policy: &Path, caller: &str) -> assert_cmd::Command {
    let mut cmd = zt();
    cmd.args(["policy", "check", "--policy"])
        .arg(policy)
        .args(["--caller", caller]);
    cmd
}

#[test]
fn check_of_an_allowed_request_exits_0_naming_rule_version_and_audit_matches() {
    let tmp = TempDir::new().unwrap();
    let policy = write(tmp.path(), "policy.toml", POLICY);
    check(&policy, BILLING)
        .args(["--method", "GET", "--path", "/invoices/42"])
        .assert()
        .code(0)
        .stdout(
            contains("decision: allow")
                .and(contains("matched-allow"))
                .and(contains("billing-reads-invoices"))
                .and(contains("policy.toml:4:"))
                .and(contains("2026-11-23.1"))
                .and(contains("audit:    audit-invoices")),
        )
        .stderr("");
}

#[test]
fn check_of_a_request_a_deny_rule_matches_exits_1() {
    let tmp = TempDir::new().unwrap();
    let policy = write(tmp.path(), "policy.toml", POLICY);
    check(&policy, BILLING)
        .args(["--method", "DELETE", "--path", "/admin/users/7"])
        .assert()
        .code(1)
        .stdout(
            contains("decision: deny")
                .and(contains("matched-deny"))
                .and(contains("rule:     no-admin"))
                .and(contains("2026-11-23.1")),
        );
}

#[test]
fn check_of_a_request_no_rule_matches_is_denied_by_default() {
    let tmp = TempDir::new().unwrap();
    let policy = write(tmp.path(), "policy.toml", POLICY);
    check(&policy, "spiffe://example.org/ns/prod/sa/frontend")
        .args(["--path", "/invoices/42"])
        .assert()
        .code(1)
        .stdout(
            contains("decision: deny")
                .and(contains("no-matching-rule"))
                .and(contains("rule:     -"))
                .and(contains("audit:    audit-invoices")),
        );
}

#[test]
fn check_matches_route_templates() {
    let tmp = TempDir::new().unwrap();
    let policy = write(tmp.path(), "policy.toml", POLICY);
    check(&policy, BILLING)
        .args(["--path", "/x", "--route", "/invoices/{id}"])
        .assert()
        .code(0)
        .stdout(contains("billing-reads-invoices"));
}

#[test]
fn check_of_a_grpc_call_matches_grpc_rules_only() {
    let tmp = TempDir::new().unwrap();
    let policy = write(tmp.path(), "policy.toml", POLICY);
    check(&policy, BILLING)
        .args(["--grpc", "/billing.Billing/GetInvoice"])
        .assert()
        .code(0)
        .stdout(contains("decision: allow").and(contains("billing-grpc")));
    check(&policy, BILLING)
        .args(["--grpc", "/ledger.Ledger/Get"])
        .assert()
        .code(1)
        .stdout(contains("no-matching-rule"));
    // A gRPC call is a POST to its method's path: HTTP rules see it too.
    let http_only = write(
        tmp.path(),
        "http.toml",
        r#"
[[rule]]
id = "post-billing"
effect = "allow"
http = [{ method = "POST", path = "/billing.Billing/*" }]
"#,
    );
    check(&http_only, BILLING)
        .args(["--grpc", "/billing.Billing/GetInvoice"])
        .assert()
        .code(0)
        .stdout(contains("post-billing"));
}

#[test]
fn check_with_grpc_and_path_or_neither_or_a_bad_grpc_method_exits_2() {
    let tmp = TempDir::new().unwrap();
    let policy = write(tmp.path(), "policy.toml", POLICY);
    check(&policy, BILLING)
        .args(["--grpc", "/billing.Billing/Get", "--path", "/x"])
        .assert()
        .code(2);
    check(&policy, BILLING)
        .assert()
        .code(2)
        .stderr(contains("--path"));
    check(&policy, BILLING)
        .args(["--grpc", "billing.Billing/Get"])
        .assert()
        .code(2)
        .stderr(contains("/package.Service/Method"));
}

#[test]
fn check_of_a_policy_file_with_an_error_exits_2_showing_its_line() {
    let tmp = TempDir::new().unwrap();
    let policy = write(
        tmp.path(),
        "bad.toml",
        r#"
[[rule]]
id = "ok"
effect = "allow"

[[rule]]
id = "broken"
effect = "allow"
http = [{ method = "get", path = "/x" }]
"#,
    );
    check(&policy, BILLING)
        .args(["--path", "/x"])
        .assert()
        .code(2)
        .stdout("")
        .stderr(
            contains("error: ")
                .and(contains("bad.toml:9:"))
                .and(contains("broken")),
        );
}

#[test]
fn check_of_an_unreadable_file_exits_2() {
    let tmp = TempDir::new().unwrap();
    check(&tmp.path().join("missing.toml"), BILLING)
        .args(["--path", "/x"])
        .assert()
        .code(2)
        .stderr(contains("missing.toml"));
}

#[test]
fn check_with_a_malformed_caller_exits_2() {
    let tmp = TempDir::new().unwrap();
    let policy = write(tmp.path(), "policy.toml", POLICY);
    for caller in [
        "spiffe://Example.org/billing",
        "example.org/billing",
        "spiffe://example.org",
    ] {
        check(&policy, caller)
            .args(["--path", "/x"])
            .assert()
            .code(2)
            .stderr(contains("--caller"));
    }
}

#[test]
fn check_with_a_lowercase_method_or_a_relative_path_exits_2() {
    let tmp = TempDir::new().unwrap();
    let policy = write(tmp.path(), "policy.toml", POLICY);
    check(&policy, BILLING)
        .args(["--method", "get", "--path", "/invoices/42"])
        .assert()
        .code(2)
        .stderr(contains("`GET`"));
    check(&policy, BILLING)
        .args(["--path", "invoices/42"])
        .assert()
        .code(2);
}

#[test]
fn lint_of_a_clean_policy_exits_0_with_a_summary() {
    let tmp = TempDir::new().unwrap();
    let policy = write(tmp.path(), "policy.toml", POLICY);
    zt().args(["policy", "lint"])
        .arg(&policy)
        .assert()
        .code(0)
        .stdout(
            contains("4 rules, version 2026-11-23.1")
                .and(contains("no warnings"))
                .and(contains("warning:").not()),
        );
}

#[test]
fn lint_reports_shadowed_and_never_allowing_rules_and_exits_1() {
    let tmp = TempDir::new().unwrap();
    let policy = write(
        tmp.path(),
        "policy.toml",
        r#"
[[rule]]
id = "td-reads-invoices"
effect = "allow"
callers = ["spiffe://example.org/**"]
http = [{ method = "GET", path = "/invoices/**" }]

[[rule]]
id = "billing-reads-one-invoice"
effect = "allow"
callers = ["spiffe://example.org/ns/prod/sa/billing"]
http = [{ method = "GET", path = "/invoices/{id}" }]

[[rule]]
id = "billing-admin"
effect = "allow"
callers = ["spiffe://example.org/ns/prod/sa/billing"]
http = [{ method = "POST", path = "/admin/users" }]

[[rule]]
id = "no-admin"
effect = "deny"
http = [{ method = "*", path = "/admin/**" }]
"#,
    );
    // Relative to the working directory, as the file is named in messages.
    assert!(policy.is_file());
    let out = zt()
        .current_dir(tmp.path())
        .args(["policy", "lint", "policy.toml"])
        .assert()
        .code(1)
        .get_output()
        .stdout
        .clone();
    let out = String::from_utf8(out).unwrap();
    let warnings: Vec<&str> = out.lines().filter(|l| l.starts_with("warning: ")).collect();
    assert_eq!(warnings.len(), 2, "{out}");
    let shadowed = warnings[0];
    assert!(
        shadowed.contains("policy.toml:9:")
            && shadowed.contains("`billing-reads-one-invoice`")
            && shadowed.contains("shadowed")
            && shadowed.contains("`td-reads-invoices` (policy.toml:3:"),
        "{shadowed}"
    );
    let never = warnings[1];
    assert!(
        never.contains("policy.toml:15:")
            && never.contains("`billing-admin`")
            && never.contains("never allows")
            && never.contains("`no-admin` (policy.toml:21:"),
        "{never}"
    );
    assert!(
        out.lines()
            .last()
            .is_some_and(|l| l.contains("4 rules") && l.contains("2 warnings")),
        "{out}"
    );
}

#[test]
fn lint_of_a_policy_with_an_error_exits_2_with_line_and_rule() {
    let tmp = TempDir::new().unwrap();
    let policy = write(
        tmp.path(),
        "policy.toml",
        r#"
[[rule]]
id = "partners"
effect = "allow"
callers = ["spiffe://partner.example/pro*"]
"#,
    );
    zt().args(["policy", "lint"])
        .arg(&policy)
        .assert()
        .code(2)
        .stderr(
            contains("error: ")
                .and(contains("policy.toml:5:"))
                .and(contains("`partners`")),
        );
}

#[test]
fn lint_reads_standard_input() {
    zt().args(["policy", "lint", "-"])
        .write_stdin(POLICY)
        .assert()
        .code(0)
        .stdout(contains("<stdin>: 4 rules"));
}

#[test]
fn policy_help_documents_exit_codes() {
    zt().args(["policy", "lint", "--help"])
        .assert()
        .success()
        .stdout(contains("Usage: zt policy lint").and(contains("Exit 0 without warnings")));
    zt().args(["policy", "check", "--help"])
        .assert()
        .success()
        .stdout(contains("Usage: zt policy check").and(contains("exit 1 if denied")));
    zt().arg("--help")
        .assert()
        .success()
        .stdout(contains("zt policy check").and(contains("zt policy lint")));
}

/// A rule with context conditions and a caller capture; its id is on line 5.
const CONDITIONED: &str = r#"
version = "cond-1"

[[rule]]
id = "deploy-prod"
effect = "allow"
callers = ["spiffe://github.example/repo/{org}/app/**"]
http = [{ method = "POST", path = "/deploy/prod" }]
when = { org = "org", ref = { one_of = ["refs/heads/main", "refs/tags/v1"] }, environment = "prod", groups = "deployers", fork = false }
"#;

const CI: &str = "spiffe://github.example/repo/org/app/workflow/deploy";

fn deploy(policy: &Path) -> assert_cmd::Command {
    let mut cmd = check(policy, CI);
    cmd.args(["--method", "POST", "--path", "/deploy/prod"]);
    cmd
}

#[test]
fn check_with_claims_decides_conditioned_rules() {
    let tmp = TempDir::new().unwrap();
    let policy = write(tmp.path(), "policy.toml", CONDITIONED);
    let good = [
        "--claim",
        "ref=refs/heads/main",
        "--claim",
        "environment=prod",
        "--claim",
        "groups=readers",
        "--claim",
        "groups=deployers",
        "--claim",
        "fork:=false",
    ];
    deploy(&policy)
        .args(good)
        .assert()
        .code(0)
        .stdout(contains("decision: allow").and(contains("policy.toml:5:6)")));

    let mut branch = good;
    branch[1] = "ref=refs/heads/dev";
    deploy(&policy).args(branch).assert().code(1).stdout(
        contains("reason:   condition-not-met")
            .and(contains("rule:     deploy-prod"))
            .and(contains(
                r#"failed:   ref = { one_of = ["refs/heads/main", "refs/tags/v1"] } (differs)"#,
            )),
    );

    let mut string_fork = good;
    string_fork[9] = "fork=false";
    deploy(&policy)
        .args(string_fork)
        .assert()
        .code(1)
        .stdout(contains("failed:   fork = false (differs)"));

    // Without claims, the first context condition is absent.
    deploy(&policy).assert().code(1).stdout(contains(
        r#"failed:   ref = { one_of = ["refs/heads/main", "refs/tags/v1"] } (absent)"#,
    ));

    // The capture of the caller's ID.
    check(
        &policy,
        "spiffe://github.example/repo/fork/app/workflow/deploy",
    )
    .args(["--method", "POST", "--path", "/deploy/prod"])
    .args(good)
    .assert()
    .code(1)
    .stdout(contains(r#"failed:   org = "org" (differs)"#));
}

#[test]
fn check_with_a_malformed_claim_exits_2() {
    let tmp = TempDir::new().unwrap();
    let policy = write(tmp.path(), "policy.toml", CONDITIONED);
    for bad in ["noequals", "=value", "fork:=maybe", ":=true"] {
        deploy(&policy)
            .args(["--claim", bad])
            .assert()
            .code(2)
            .stderr(contains("--claim"));
    }
    deploy(&policy)
        .args(["--claim", "fork:=true", "--claim", "fork=x"])
        .assert()
        .code(2)
        .stderr(contains(
            "claim `fork` is given as both a boolean and another value",
        ));
}

#[test]
fn lint_reports_a_condition_that_never_holds_and_never_lets_a_conditioned_rule_cover() {
    let tmp = TempDir::new().unwrap();
    let policy = write(
        tmp.path(),
        "policy.toml",
        r#"
[[rule]]
id = "main-only"
effect = "allow"
when = { ref = "refs/heads/main" }

[[rule]]
id = "everyone"
effect = "allow"

[[rule]]
id = "two-segments"
effect = "allow"
callers = ["spiffe://example.org/ns/{ns}"]
when = { ns = "a/b" }
"#,
    );
    zt().args(["policy", "lint"])
        .arg(&policy)
        .assert()
        .code(1)
        .stdout(
            contains("policy.toml:12:6:")
                .and(contains("rule `two-segments` never matches"))
                .and(contains("shadowed").not())
                .and(contains("1 warning")),
        );
}
