//! End-to-end tests of `zt audit suggest|replay|drift|graph` and `zt policy
//! check --declared`: outputs, exit codes, and bad lines reported with
//! their line numbers (exit 2 with --strict).
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

fn line(
    caller: &str,
    method: &str,
    path: &str,
    route: &str,
    decision: &str,
    version: &str,
) -> String {
    format!(
        r#"{{"format":1,"time":"2026-11-23T10:00:0{}.000Z","caller":"{caller}","target":"ledger","method":"{method}","path":"{path}","route":"{route}","decision":"{decision}","reason":"{}","rule":null,"policy_version":"{version}"}}"#,
        path.len() % 10,
        if decision == "allow" {
            "matched-allow"
        } else {
            "no-matching-rule"
        }
    )
}

const ORDERS: &str = "spiffe://example.org/orders";
const BILLING: &str = "spiffe://example.org/billing";

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// A dry-run log: orders reads entries, billing posts one (would-deny),
/// an intruder is refused; one garbage line (line 4).
fn dry_run_log(dir: &Path) -> PathBuf {
    let text = [
        line(ORDERS, "GET", "/entries/1", "/entries/{id}", "allow", "v1"),
        line(ORDERS, "GET", "/entries/22", "/entries/{id}", "allow", "v1"),
        line(BILLING, "POST", "/entries", "/entries", "would-deny", "v1"),
        "{ this is not json".to_owned(),
        line(
            "spiffe://example.org/intruder",
            "GET",
            "/entries/1",
            "/entries/{id}",
            "deny",
            "v1",
        ),
    ]
    .join("\n");
    write(dir, "audit.jsonl", &text)
}

#[test]
fn suggest_writes_a_policy_that_lints_clean_and_replays_safe() {
    let dir = TempDir::new().unwrap();
    let log = dry_run_log(dir.path());
    let policy = dir.path().join("suggested.toml");
    zt().args(["audit", "suggest"])
        .arg(&log)
        .arg("--out")
        .arg(&policy)
        .assert()
        .success()
        .stderr(contains("audit.jsonl:4: not an audit record"))
        .stderr(contains(
            "suggested 2 rules for target ledger from 3 served requests",
        ));
    let text = std::fs::read_to_string(&policy).unwrap();
    assert!(
        text.contains(r#"callers = ["spiffe://example.org/billing"]"#),
        "{text}"
    );
    assert!(!text.contains("intruder"), "{text}");
    zt().args(["policy", "lint"])
        .arg(&policy)
        .assert()
        .success()
        .stdout(contains("no warnings"));
    zt().args(["audit", "replay", "--policy"])
        .arg(&policy)
        .arg(&log)
        .assert()
        .success()
        .stdout(contains("newly denied: 0"))
        .stdout(contains("result: safe to enforce"));
    // A caller never seen is refused by the suggestion.
    zt().args(["policy", "check", "--policy"])
        .arg(&policy)
        .args([
            "--caller",
            "spiffe://example.org/intruder",
            "--path",
            "/entries/1",
        ])
        .args(["--route", "/entries/{id}"])
        .assert()
        .code(1)
        .stdout(contains("decision: deny"));
}

#[test]
fn strict_turns_bad_lines_into_exit_2_for_every_verb() {
    let dir = TempDir::new().unwrap();
    let log = dry_run_log(dir.path());
    let policy = write(
        dir.path(),
        "p.toml",
        "[[rule]]\nid = \"a\"\neffect = \"allow\"\n",
    );
    let verbs: [Vec<std::ffi::OsString>; 4] = [
        vec!["suggest".into(), log.clone().into()],
        vec![
            "replay".into(),
            "--policy".into(),
            policy.into(),
            log.clone().into(),
        ],
        vec![
            "drift".into(),
            "--baseline".into(),
            log.clone().into(),
            log.clone().into(),
        ],
        vec!["graph".into(), log.clone().into()],
    ];
    for args in verbs {
        zt().arg("audit")
            .args(&args)
            .arg("--strict")
            .assert()
            .code(2)
            .stderr(contains("audit.jsonl:4:"))
            .stderr(contains("bad line").and(contains("--strict")));
    }
}

#[test]
fn replay_exits_1_and_lists_what_a_narrower_policy_would_refuse() {
    let dir = TempDir::new().unwrap();
    let log = dry_run_log(dir.path());
    let narrow = write(
        dir.path(),
        "narrow.toml",
        r#"
[[rule]]
id = "orders"
effect = "allow"
callers = ["spiffe://example.org/orders"]
http = [{ method = "GET", path = "/entries/1" }]
"#,
    );
    zt().args(["audit", "replay", "--policy"])
        .arg(&narrow)
        .arg(&log)
        .assert()
        .code(1)
        .stdout(contains(
            "newly denied: 2 (of which 1 were would-deny in dry run)",
        ))
        .stdout(contains(
            "spiffe://example.org/billing -> ledger POST /entries",
        ))
        .stdout(contains(
            "spiffe://example.org/orders -> ledger GET /entries/{id}",
        ))
        .stdout(contains("NOT safe to enforce"));
    let missing = dir.path().join("missing.jsonl");
    zt().args(["audit", "replay", "--policy"])
        .arg(&narrow)
        .arg(&missing)
        .assert()
        .code(2)
        .stderr(contains("missing.jsonl"));
}

#[test]
fn drift_exits_1_for_a_new_caller_and_0_for_the_same_traffic() {
    let dir = TempDir::new().unwrap();
    let base = write(
        dir.path(),
        "base.jsonl",
        &line(ORDERS, "GET", "/entries/1", "/entries/{id}", "allow", "v1"),
    );
    let same = write(
        dir.path(),
        "same.jsonl",
        &line(ORDERS, "GET", "/entries/9", "/entries/{id}", "allow", "v1"),
    );
    let bot = write(
        dir.path(),
        "bot.jsonl",
        &[
            line(ORDERS, "GET", "/entries/9", "/entries/{id}", "allow", "v1"),
            line(
                "spiffe://example.org/bot",
                "GET",
                "/entries/1",
                "/entries/{id}",
                "deny",
                "v1",
            ),
            line(
                ORDERS,
                "DELETE",
                "/entries/1",
                "/entries/{id}",
                "deny",
                "v1",
            ),
        ]
        .join("\n"),
    );
    zt().args(["audit", "drift", "--baseline"])
        .arg(&base)
        .arg(&same)
        .assert()
        .success()
        .stdout(contains("0 findings"));
    zt().args(["audit", "drift", "--baseline"])
        .arg(&base)
        .arg(&bot)
        .assert()
        .code(1)
        .stdout(contains("new-caller"))
        .stdout(contains("spiffe://example.org/bot -> ledger"))
        .stdout(contains("new-action"))
        .stdout(contains("DELETE /entries/{id}"))
        .stdout(contains("2 findings"));
}

#[test]
fn graph_writes_svg_dot_and_mermaid() {
    let dir = TempDir::new().unwrap();
    let log = dry_run_log(dir.path());
    let svg = dir.path().join("calls.svg");
    zt().args(["audit", "graph", "--format", "svg", "--out"])
        .arg(&svg)
        .arg(&log)
        .assert()
        .success()
        .stderr(contains("4 services, 3 edges"));
    let text = std::fs::read_to_string(&svg).unwrap();
    let doc = roxmltree::Document::parse(&text).unwrap();
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    zt().args(["audit", "graph", "--format", "dot"])
        .arg(&log)
        .assert()
        .success()
        .stdout(contains("digraph calls {"))
        .stdout(contains("label=\"1 denied\""));
    zt().args(["audit", "graph", "--format", "mermaid"])
        .arg(&log)
        .assert()
        .success()
        .stdout(contains("flowchart LR"));
}

const EXPORT: &str = r#"# Effective policy.
version = "v1+code-abc"

[[declared]]
id = "code:post_entry"
source = "src/main.rs:12"
callers = ["spiffe://example.org/billing"]
http = [{ method = "POST", path = "/entries" }]

[[declared]]
id = "code:get_entry"
source = "src/main.rs:20"
callers = ["spiffe://example.org/orders"]
http = [{ method = "GET", path = "/entries/{id}" }]

[[rule]]
id = "ignored-here"
effect = "allow"
"#;

#[test]
fn policy_check_declared_reports_rules_wider_than_the_code_and_endpoints_never_allowed() {
    let dir = TempDir::new().unwrap();
    let export = write(dir.path(), "export.toml", EXPORT);
    let wide = write(
        dir.path(),
        "wide.toml",
        r#"
[[rule]]
id = "mesh-posts"
effect = "allow"
callers = ["spiffe://example.org/**"]
http = [{ method = "POST", path = "/entries" }]
"#,
    );
    zt().args(["policy", "check", "--declared"])
        .arg(&export)
        .arg("--policy")
        .arg(&wide)
        .assert()
        .code(1)
        .stdout(contains(
            "admits-undeclared: ",
        ))
        .stdout(contains("rule `mesh-posts` admits spiffe://example.org/** to endpoint `code:post_entry` (src/main.rs:12)"))
        .stdout(contains("never-allowed: src/main.rs:20: endpoint `code:get_entry`"))
        .stdout(contains("2 findings"));
    let exact = write(
        dir.path(),
        "exact.toml",
        r#"
[[rule]]
id = "billing-posts"
effect = "allow"
callers = ["spiffe://example.org/billing"]
http = [{ method = "POST", path = "/entries" }]

[[rule]]
id = "orders-reads"
effect = "allow"
callers = ["spiffe://example.org/orders"]
http = [{ method = "GET", path = "/entries/{id}" }]
"#,
    );
    zt().args(["policy", "check", "--declared"])
        .arg(&export)
        .arg("--policy")
        .arg(&exact)
        .assert()
        .success()
        .stdout(contains("code and policy agree"));
    let bad = write(
        dir.path(),
        "bad.toml",
        "[[declared]]\nid = \"x\"\ncallers = [\"nope\"]\n",
    );
    zt().args(["policy", "check", "--declared"])
        .arg(&bad)
        .arg("--policy")
        .arg(&exact)
        .assert()
        .code(2)
        .stderr(contains("nope"));
}
