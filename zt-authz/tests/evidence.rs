//! `zt_authz::evidence` on hand-written audit lines: bad input counted
//! with line numbers, suggestions, replay, drift, graph escaping, and
//! declarations in code against a policy.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code"
)]

use zt_authz::evidence::{
    AuditReader, CallGraph, DriftDetector, DriftKind, EvidenceError, IssueKind, Replayer,
    SuggestOptions, Suggester,
};
use zt_authz::policy::declare::{Declarations, EndpointSpec, parse_export};
use zt_authz::policy::{DeclaredKind, Policy};

/// One audit line.
fn line(
    caller: &str,
    target: &str,
    method: &str,
    path: &str,
    route: Option<&str>,
    decision: &str,
) -> String {
    let route = route.map_or("null".to_owned(), |r| format!("\"{r}\""));
    format!(
        r#"{{"format":1,"time":"2026-11-23T10:00:00.000Z","caller":"{caller}","caller_serial":"2a","target":"{target}","method":"{method}","path":"{path}","route":{route},"grpc_method":null,"user":null,"act_chain":[],"decision":"{decision}","reason":"{}","rule":null,"policy_version":"v1","audit_rules":[],"eval_ns":120}}"#,
        if decision == "allow" {
            "matched-allow"
        } else {
            "no-matching-rule"
        }
    )
}

const ORDERS: &str = "spiffe://example.org/orders";

#[test]
fn bad_lines_are_counted_with_their_line_numbers_and_never_stop_the_read() {
    let good = line(
        ORDERS,
        "ledger",
        "GET",
        "/entries/1",
        Some("/entries/{id}"),
        "allow",
    );
    let mut text = String::new();
    text.push_str(&good);
    text.push('\n');
    text.push_str("not json at all\n"); // 2
    text.push('\n'); // 3: blank, not an issue
    text.push_str(&good.replace("\"format\":1", "\"format\":7")); // 4
    text.push('\n');
    text.push_str(&good.replace("\"eval_ns\":120", "\"eval_ns\":120,\"posture\":\"pq\"")); // 5: read
    text.push('\n');
    text.push_str(&good.replace(ORDERS, "spiffe://example.org/a b")); // 6
    text.push('\n');
    text.push_str(&good.replace("\"decision\":\"allow\"", "\"decision\":\"maybe\"")); // 7
    text.push('\n');
    text.push_str(&format!("{{\"path\":\"{}\"}}\n", "a".repeat(5000))); // 8: too long
    text.push_str("{\"target\":\"ledger\"}\n"); // 9: missing fields
    text.push_str(&good.replace('\n', "")); // 10, no final newline, CRLF-free
    let mut reader = AuditReader::new().max_line(1024);
    let mut lines = Vec::new();
    reader
        .read("audit.jsonl", text.as_bytes(), |r| lines.push(r.line))
        .unwrap();
    assert_eq!(lines, [1, 5, 10]);
    let report = reader.report();
    assert_eq!(report.lines, 10);
    assert_eq!(report.records, 3);
    let issues: Vec<(u64, &str)> = report
        .issues
        .iter()
        .map(|i| (i.line, i.kind.as_str()))
        .collect();
    assert_eq!(
        issues,
        [
            (2, "malformed"),
            (4, "newer-format"),
            (5, "unknown-field"),
            (6, "bad-value"),
            (7, "bad-value"),
            (8, "too-long"),
            (9, "malformed"),
        ]
    );
    assert_eq!(report.skipped, 6);
    assert_eq!(report.issue_count, 7);
    assert!(matches!(&report.issues[2].kind, IssueKind::UnknownField(f) if f == "posture"));
    let shown = report.issues[6].to_string();
    assert!(shown.starts_with("audit.jsonl:9: "), "{shown}");
    assert!(shown.contains("missing field `method`"), "{shown}");
}

#[test]
fn a_line_longer_than_the_buffer_is_skipped_to_its_end() {
    let good = line(ORDERS, "ledger", "GET", "/entries/1", None, "allow");
    let text = format!(
        "{good}\n{{\"path\":\"{}\"}}\n{good}\n{}",
        "a".repeat(700_000),
        "b".repeat(300_000)
    );
    let mut reader = AuditReader::new().max_line(2048);
    let mut lines = Vec::new();
    reader
        .read("big.jsonl", text.as_bytes(), |r| lines.push(r.line))
        .unwrap();
    assert_eq!(lines, [1, 3]);
    let issues: Vec<(u64, &str)> = reader
        .report()
        .issues
        .iter()
        .map(|i| (i.line, i.kind.as_str()))
        .collect();
    assert_eq!(issues, [(2, "too-long"), (4, "too-long")]);
    assert_eq!(reader.report().lines, 4);
}

#[test]
fn lines_split_across_reads_and_escaped_strings_are_read_whole() {
    /// Hands out one byte per read.
    struct Trickle<'a>(&'a [u8]);
    impl std::io::Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            match (self.0.split_first(), buf.first_mut()) {
                (Some((b, rest)), Some(slot)) => {
                    *slot = *b;
                    self.0 = rest;
                    Ok(1)
                }
                _ => Ok(0),
            }
        }
    }
    let escaped = line(ORDERS, "led\\u0067er", "GET", "/a\\/b", None, "allow");
    let text = format!("{escaped}\r\n{escaped}\n");
    let mut reader = AuditReader::new();
    let mut seen = Vec::new();
    reader
        .read("t", Trickle(text.as_bytes()), |r| {
            seen.push((r.target.to_owned(), r.path.to_owned()))
        })
        .unwrap();
    assert_eq!(
        seen,
        [
            ("ledger".into(), "/a/b".into()),
            ("ledger".into(), "/a/b".into())
        ]
    );
    assert_eq!(reader.report().issue_count, 0);
}

#[test]
fn an_unreadable_input_is_a_typed_error_naming_it() {
    struct Broken;
    impl std::io::Read for Broken {
        fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
            Err(std::io::Error::other("disk on fire"))
        }
    }
    let err = AuditReader::new()
        .read("a.jsonl", Broken, |_| {})
        .unwrap_err();
    assert!(matches!(err, EvidenceError::Io { .. }));
    assert!(err.to_string().contains("`a.jsonl`"), "{err}");
}

fn suggest(
    text: &str,
    options: SuggestOptions,
) -> Result<zt_authz::evidence::Suggestion, EvidenceError> {
    let mut suggester = Suggester::new(options);
    AuditReader::new()
        .read("a.jsonl", text.as_bytes(), |r| suggester.observe(r))
        .unwrap();
    suggester.finish()
}

#[test]
fn suggestions_use_routes_exact_paths_and_catch_alls_and_leave_out_refusals() {
    let text = [
        line(
            ORDERS,
            "ledger",
            "GET",
            "/entries/1",
            Some("/entries/{id}"),
            "allow",
        ),
        line(
            ORDERS,
            "ledger",
            "GET",
            "/files/a/b",
            Some("/files/{*rest}"),
            "would-deny",
        ),
        line(ORDERS, "ledger", "GET", "/health", None, "allow"),
        line(
            ORDERS,
            "ledger",
            "DELETE",
            "/entries/1",
            Some("/entries/{id}"),
            "deny",
        ),
        line(
            "spiffe://example.org/x",
            "ledger",
            "GET",
            "/weird{",
            None,
            "would-deny",
        ),
    ]
    .join("\n");
    let s = suggest(&text, SuggestOptions::default()).unwrap();
    assert_eq!(s.refused, 1);
    assert_eq!(s.rules, 1, "{}", s.toml);
    assert_eq!(s.unexpressible.len(), 1, "{:?}", s.unexpressible);
    let policy = Policy::from_toml_str(&s.toml, "s.toml").unwrap();
    assert!(policy.lint().is_empty());
    assert!(s.toml.contains(r#"path = "/files/**""#), "{}", s.toml);
    assert!(s.toml.contains(r#"path = "/health""#));
    assert!(!s.toml.contains("DELETE"));
    assert!(
        s.toml
            .contains("# 1 request, first 2026-11-23T10:00:00.000Z")
    );
}

#[test]
fn several_targets_need_a_choice_and_siblings_merge_only_when_asked() {
    let text = [
        line(
            "spiffe://example.org/ns/prod/sa/a",
            "ledger",
            "GET",
            "/x",
            None,
            "allow",
        ),
        line(
            "spiffe://example.org/ns/prod/sa/b",
            "ledger",
            "GET",
            "/x",
            None,
            "allow",
        ),
        line(
            "spiffe://example.org/ns/prod/sa/c",
            "ledger",
            "GET",
            "/y",
            None,
            "allow",
        ),
        line(
            "spiffe://example.org/ns/prod/sa/a",
            "billing",
            "GET",
            "/z",
            None,
            "allow",
        ),
    ]
    .join("\n");
    let err = suggest(&text, SuggestOptions::default()).unwrap_err();
    assert!(
        matches!(&err, EvidenceError::SeveralTargets { targets } if targets == &["billing", "ledger"])
    );

    let exact = suggest(&text, SuggestOptions::default().target("ledger")).unwrap();
    assert_eq!(exact.rules, 3);
    assert_eq!(exact.other_target, 1);

    let merged = suggest(
        &text,
        SuggestOptions::default().target("ledger").generalize_ids(3),
    )
    .unwrap();
    assert_eq!(merged.rules, 1, "{}", merged.toml);
    assert!(
        merged
            .toml
            .contains(r#"callers = ["spiffe://example.org/ns/prod/sa/*"]"#)
    );
    let policy = Policy::from_toml_str(&merged.toml, "m.toml").unwrap();
    assert!(policy.lint().is_empty());

    let not_enough = suggest(
        &text,
        SuggestOptions::default().target("ledger").generalize_ids(4),
    )
    .unwrap();
    assert_eq!(not_enough.rules, 3);
}

#[test]
fn hostile_ids_paths_and_targets_never_reach_toml_unescaped() {
    let text = [
        line(ORDERS, "ledger", "GET", "/a\\\"b", None, "allow"),
        line(ORDERS, "ledger", "GET", "/c\\nd", None, "allow"),
    ]
    .join("\n");
    let s = suggest(&text, SuggestOptions::default()).unwrap();
    let policy = Policy::from_toml_str(&s.toml, "s.toml").unwrap();
    assert_eq!(policy.rules().len(), 1);
    // `/a"b` is a path the policy can hold; a newline is not.
    assert_eq!(policy.rules()[0].actions().len(), 1, "{}", s.toml);
    assert!(s.toml.contains(r#"path = "/a\"b""#), "{}", s.toml);
    assert_eq!(s.unexpressible.len(), 1, "{:?}", s.unexpressible);
    assert!(!s.unexpressible[0].contains('\n'));
}

#[test]
fn replay_splits_newly_denied_newly_allowed_and_unchanged() {
    let text = [
        line(
            ORDERS,
            "ledger",
            "GET",
            "/entries/1",
            Some("/entries/{id}"),
            "allow",
        ),
        line(
            ORDERS,
            "ledger",
            "GET",
            "/entries/2",
            Some("/entries/{id}"),
            "allow",
        ),
        line(ORDERS, "ledger", "POST", "/entries", None, "would-deny"),
        line(ORDERS, "ledger", "GET", "/admin", None, "deny"),
        line(
            "spiffe://example.org/x",
            "ledger",
            "GET",
            "/x",
            None,
            "deny",
        ),
    ]
    .join("\n")
        + "\n"
        + r#"{"caller":null,"target":"ledger","method":"GET","path":"/","decision":"deny","reason":"unauthenticated","policy_version":"v1"}"#;
    let candidate = Policy::from_toml_str(
        r#"
        [[rule]]
        id = "admin"
        effect = "allow"
        callers = ["spiffe://example.org/orders"]
        http = [{ method = "GET", path = "/admin" }, { method = "POST", path = "/entries" }]
        "#,
        "c.toml",
    )
    .unwrap();
    let mut replayer = Replayer::new(candidate);
    AuditReader::new()
        .read("a.jsonl", text.as_bytes(), |r| replayer.observe(r))
        .unwrap();
    let report = replayer.finish();
    assert_eq!(report.records, 6);
    assert_eq!(report.not_policy, 1);
    assert_eq!(report.newly_denied, 2);
    assert_eq!(report.newly_denied_was_would_deny, 0);
    assert_eq!(report.newly_allowed, 1);
    assert_eq!(report.unchanged, 2);
    assert_eq!(report.denied_groups.len(), 1);
    let group = &report.denied_groups[0];
    assert_eq!(
        (group.count, group.action.as_str()),
        (2, "GET /entries/{id}")
    );
    assert_eq!(group.first_line, "a.jsonl:1");
    assert_eq!(report.allowed_groups[0].action, "GET /admin");
    assert_eq!(report.same_version, 0);
}

#[test]
fn drift_reports_new_callers_targets_and_actions_by_volume() {
    let baseline = [
        line(
            ORDERS,
            "ledger",
            "GET",
            "/entries/1",
            Some("/entries/{id}"),
            "allow",
        ),
        line(
            ORDERS,
            "billing",
            "GET",
            "/invoices/1",
            Some("/invoices/{id}"),
            "allow",
        ),
    ]
    .join("\n");
    let current = [
        line(
            ORDERS,
            "ledger",
            "GET",
            "/entries/9",
            Some("/entries/{id}"),
            "allow",
        ),
        line(
            ORDERS,
            "ledger",
            "DELETE",
            "/entries/9",
            Some("/entries/{id}"),
            "deny",
        ),
        line(ORDERS, "vault", "GET", "/secrets", None, "deny"),
        line(ORDERS, "vault", "GET", "/secrets", None, "deny"),
        line(
            "spiffe://example.org/bot",
            "ledger",
            "GET",
            "/entries/1",
            Some("/entries/{id}"),
            "allow",
        ),
        line(
            "spiffe://example.org/bot",
            "vault",
            "GET",
            "/secrets",
            None,
            "deny",
        ),
        line(
            "spiffe://example.org/bot",
            "vault",
            "GET",
            "/secrets",
            None,
            "deny",
        ),
    ]
    .join("\n");
    let mut detector = DriftDetector::new();
    let mut reader = AuditReader::new();
    reader
        .read("base.jsonl", baseline.as_bytes(), |r| detector.baseline(r))
        .unwrap();
    reader
        .read("now.jsonl", current.as_bytes(), |r| detector.current(r))
        .unwrap();
    let report = detector.finish();
    let found: Vec<(DriftKind, &str, &str, u64, u64)> = report
        .findings
        .iter()
        .map(|f| {
            (
                f.kind,
                f.caller.as_str(),
                f.target.as_str(),
                f.count,
                f.denied,
            )
        })
        .collect();
    assert_eq!(
        found,
        [
            (
                DriftKind::NewCaller,
                "spiffe://example.org/bot",
                "ledger, vault",
                3,
                2
            ),
            (DriftKind::NewTarget, ORDERS, "vault", 2, 2),
            (DriftKind::NewAction, ORDERS, "ledger", 1, 1),
        ]
    );
    assert_eq!(report.findings[2].action, "DELETE /entries/{id}");
    assert_eq!(report.findings[0].first_line, "now.jsonl:5");
}

#[test]
fn hostile_names_are_escaped_in_svg_dot_and_mermaid() {
    let evil_target = r#"<script>alert(1)</script>\" ]; n0 -> x [label=\"pwn"#;
    let text = [
        line(ORDERS, evil_target, "GET", "/x", None, "allow"),
        line(
            "spiffe://example.org/a-b.c_d",
            "ledger",
            "GET",
            "/x",
            None,
            "deny",
        ),
        line(
            "spiffe://example.org/ns/prod/sa/ledger",
            "orders",
            "GET",
            "/y",
            None,
            "would-deny",
        ),
    ]
    .join("\n");
    let mut graph = CallGraph::new();
    let mut reader = AuditReader::new();
    reader
        .read("a.jsonl", text.as_bytes(), |r| graph.observe(r))
        .unwrap();
    assert_eq!(
        reader.report().issue_count,
        0,
        "{:?}",
        reader.report().issues
    );
    let graph = graph.finish();
    // `orders` the target is the caller spiffe://example.org/orders, and
    // `ledger` the caller ending in /ledger.
    assert_eq!(graph.nodes().len(), 4, "{:?}", graph.nodes());
    assert_eq!(graph.edges().len(), 3);

    let svg = graph.to_svg();
    assert!(!svg.contains("<script>"));
    let doc = roxmltree::Document::parse(&svg).unwrap();
    let texts: Vec<&str> = doc.descendants().filter_map(|n| n.text()).collect();
    assert!(
        texts
            .iter()
            .any(|t| t.contains("<script>alert(1)</script>")),
        "the name survives, as text"
    );
    assert!(doc.descendants().all(|n| !n.has_tag_name("script")));
    assert!(texts.contains(&"ledger (prod)"));

    let dot = graph.to_dot();
    let quoted_evil = r#"tooltip="<script>alert(1)</script>\" ]; n0 -> x [label=\"pwn""#;
    assert!(dot.contains(quoted_evil), "{dot}");
    let edges = dot
        .lines()
        .filter(|l| l.starts_with("  n") && l.contains(" -> n"))
        .count();
    assert_eq!(edges, 3, "only the three edges: {dot}");

    let mermaid = graph.to_mermaid();
    assert!(!mermaid.contains('<'), "{mermaid}");
    assert!(
        mermaid.lines().all(|l| l.matches('"').count() % 2 == 0),
        "{mermaid}"
    );
    assert!(mermaid.contains("#60;script#62;"), "{mermaid}");
}

struct Ledger;
impl zt_authz::policy::declare::Declared for Ledger {
    const ENDPOINTS: &'static [EndpointSpec] = &[
        EndpointSpec::http(
            "get_entry",
            "GET",
            "/entries/{id}",
            &["spiffe://example.org/orders"],
            &[],
            file!(),
            line!(),
        ),
        EndpointSpec::http(
            "post_entry",
            "POST",
            "/entries",
            &["spiffe://example.org/billing"],
            &[],
            file!(),
            line!(),
        ),
        EndpointSpec::grpc(
            "audit",
            "ledger.Ledger",
            "Audit",
            &["spiffe://example.org/auditor"],
            &[],
            file!(),
            line!(),
        ),
    ];
}

const FILE: &str = r#"
[[rule]]
id = "orders-reads"
effect = "allow"
callers = ["spiffe://example.org/orders"]
http = [{ method = "GET", path = "/entries/{id}" }]

[[rule]]
id = "mesh-posts"
effect = "allow"
callers = ["spiffe://example.org/**"]
http = [{ method = "POST", path = "/entries" }]
"#;

#[test]
fn declarations_and_policy_disagreements_are_found_from_code_and_from_an_export() {
    let declarations = Declarations::builder().add::<Ledger>().build().unwrap();
    let policy = Policy::from_toml_str(FILE, "policy.toml").unwrap();
    let export = declarations.clone().with_policy(policy.clone()).export();
    let from_export = parse_export(&export, "export.toml").unwrap();
    assert_eq!(from_export.len(), 3);
    for declared in [declarations.endpoints(), from_export] {
        let findings = policy.check_declared(&declared);
        let summary: Vec<(DeclaredKind, &str, Option<&str>)> = findings
            .iter()
            .map(|f| (f.kind, &*f.endpoint, f.rule_id.as_deref()))
            .collect();
        assert_eq!(
            summary,
            [
                (
                    DeclaredKind::AdmitsUndeclared,
                    "code:post_entry",
                    Some("mesh-posts")
                ),
                (DeclaredKind::NeverAllowed, "code:audit", None),
            ]
        );
        assert_eq!(findings[0].callers, ["spiffe://example.org/**"]);
        assert!(
            findings[0].to_string().starts_with("policy.toml:"),
            "{}",
            findings[0]
        );
    }
    let agreeing = Policy::from_toml_str(
        r#"
        [[rule]]
        id = "orders-reads"
        effect = "allow"
        callers = ["spiffe://example.org/orders"]
        http = [{ method = "GET", path = "/entries/{id}" }]
        [[rule]]
        id = "billing-posts"
        effect = "allow"
        callers = ["spiffe://example.org/billing"]
        http = [{ method = "POST", path = "/entries" }]
        [[rule]]
        id = "auditor"
        effect = "allow"
        callers = ["spiffe://example.org/auditor"]
        grpc = ["/ledger.Ledger/*"]
        "#,
        "ok.toml",
    )
    .unwrap();
    assert!(
        agreeing
            .check_declared(&declarations.endpoints())
            .is_empty()
    );
}

#[test]
fn a_bad_export_is_an_error_with_its_position() {
    let err = parse_export(
        "[[declared]]\nid = \"code:x\"\ncallers = [\"not an id\"]\n",
        "e.toml",
    )
    .unwrap_err();
    assert!(err.to_string().contains("not an id"), "{err}");
    let err = parse_export("[[declared]]\nid = 3\n", "e.toml").unwrap_err();
    assert!(err.to_string().starts_with("e.toml:2:"), "{err}");
}

#[test]
fn decide_names_the_same_rule_as_evaluate() {
    use zt_authz::policy::{PolicyEngine as _, Request};
    let policy = Policy::from_toml_str(
        r#"
        [[rule]]
        id = "orders-reads"
        effect = "allow"
        callers = ["spiffe://example.org/orders"]
        http = [{ method = "GET", path = "/entries/{id}" }]
        [[rule]]
        id = "mesh"
        effect = "allow"
        callers = ["spiffe://example.org/**"]
        http = [{ method = "GET", path = "/health" }]
        [[rule]]
        id = "no-admin"
        effect = "deny"
        http = [{ method = "*", path = "/admin/**" }]
        [[rule]]
        id = "watch"
        effect = "audit"
        http = [{ method = "GET", path = "/entries/export" }]
        "#,
        "p.toml",
    )
    .unwrap();
    let ids = [
        "spiffe://example.org/orders",
        "spiffe://example.org/x",
        "spiffe://other.org/y",
    ]
    .map(|s| zt_core::SpiffeId::new(s).unwrap());
    let mut decided = 0;
    for id in &ids {
        for (method, path) in [
            ("GET", "/entries/1"),
            ("GET", "/entries/export"),
            ("GET", "/health"),
            ("POST", "/admin/x"),
            ("GET", "/nope"),
        ] {
            let request = Request::new(Some(id), method, path);
            let decision = policy.evaluate(&request);
            let (allowed, rule) = policy.decide(&request);
            assert_eq!(allowed, decision.allowed, "{id} {method} {path}");
            assert_eq!(
                rule.map(|r| r.id()),
                decision.rule_id.as_deref(),
                "{id} {method} {path}"
            );
            decided += usize::from(allowed);
        }
    }
    assert_eq!(decided, 4);
    let (allowed, rule) = policy.decide(&Request::new(None, "GET", "/health"));
    assert!(!allowed && rule.is_none(), "no caller, no rule");
}

#[test]
fn the_task_and_txn_fields_are_known_to_the_reader() {
    let good = line(ORDERS, "ledger", "GET", "/entries/1", None, "allow");
    let with = good.replace(
        "\"eval_ns\":120}",
        "\"eval_ns\":120,\"task\":\"nightly-7\",\"txn\":\"txn-1001\"}",
    );
    assert_ne!(with, good);
    let nulls = good.replace(
        "\"eval_ns\":120}",
        "\"eval_ns\":120,\"task\":null,\"txn\":null}",
    );
    let mut reader = AuditReader::new();
    let mut lines = Vec::new();
    reader
        .read(
            "audit.jsonl",
            format!("{with}\n{nulls}\n").as_bytes(),
            |r| lines.push(r.line),
        )
        .unwrap();
    assert_eq!(lines, [1, 2]);
    assert!(
        reader.report().issues.is_empty(),
        "{:?}",
        reader.report().issues
    );
}
