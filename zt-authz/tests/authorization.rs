//! The authorization plane without HTTP: revocation lists, the hot-reloading
//! policy store, the authorizer (revocation, policy, dry run, audit) and the
//! JSON-lines audit writer.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code"
)]

use std::io::Write;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use serde_json::Value;
use zt_authz::Authorizer;
use zt_authz::audit::{AuditEvent, AuditSink, JsonLinesAuditWriter, Verdict};
use zt_authz::policy::{
    DecisionReason, Policy, PolicyEngine, PolicyError, PolicyStore, Request, Rule,
};
use zt_core::SpiffeId;
use zt_core::revocation::{ReloadOutcome, RevocationError, RevocationSet, Revocations, Revoked};
use zt_core::time::ManualClock;

fn id(s: &str) -> SpiffeId {
    SpiffeId::new(s).unwrap()
}

const GOOD: &str = r#"
version = "v1"

[[rule]]
id = "orders-reads-invoices"
effect = "allow"
callers = ["spiffe://example.org/orders"]
http = [{ method = "GET", path = "/invoices/{id}" }]
"#;

const GOOD_V2: &str = r#"
version = "v2"

[[rule]]
id = "orders-reads-invoices"
effect = "allow"
callers = ["spiffe://example.org/orders"]
http = [{ method = "GET", path = "/invoices/{id}" }]

[[rule]]
id = "no-invoice-42"
effect = "deny"
http = [{ method = "*", path = "/invoices/42" }]
"#;

const BAD: &str = r#"
version = "v3"

[[rule]]
id = "typo"
effect = "allow"
callers = ["spiffe://Example.org/orders"]
"#;

/// Collects JSON lines of every event, as a sink would write them.
#[derive(Default)]
struct Lines(Mutex<Vec<Value>>);

impl AuditSink for Lines {
    fn record(&self, event: &AuditEvent<'_>) {
        let line = event.to_json_line();
        assert_eq!(line.last(), Some(&b'\n'));
        self.0
            .lock()
            .unwrap()
            .push(serde_json::from_slice(&line).unwrap());
    }
}

impl Lines {
    fn take(&self) -> Vec<Value> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

// --- revocation -----------------------------------------------------------

#[test]
fn revocation_by_id_and_by_serial() {
    let set = RevocationSet::new()
        .with_id(id("spiffe://example.org/bad"))
        .with_serial(&[0x00, 0x3a, 0x9f]);
    assert_eq!(
        set.check(&id("spiffe://example.org/bad"), &[1]),
        Some(Revoked::Id)
    );
    // Leading zero bytes do not make a different serial.
    assert_eq!(
        set.check(&id("spiffe://example.org/good"), &[0x3a, 0x9f]),
        Some(Revoked::Serial)
    );
    assert_eq!(set.check(&id("spiffe://example.org/good"), &[0x3a]), None);
    assert_eq!(set.len(), 2);
}

#[test]
fn revocation_api_updates_every_clone_at_once() {
    let list = Revocations::new();
    let seen_by_server = list.clone();
    let bad = id("spiffe://example.org/bad");
    assert_eq!(seen_by_server.check(&bad, &[7]), None);
    list.revoke_id(bad.clone());
    assert_eq!(seen_by_server.check(&bad, &[7]), Some(Revoked::Id));
    list.reinstate_id(&bad);
    assert_eq!(seen_by_server.check(&bad, &[7]), None);
    list.revoke_serial(&[7]);
    assert_eq!(seen_by_server.check(&bad, &[7]), Some(Revoked::Serial));
    list.reinstate_serial(&[0, 7]);
    assert_eq!(seen_by_server.check(&bad, &[7]), None);
}

#[test]
fn revocation_file_formats_and_errors() {
    let set = RevocationSet::from_toml_str(
        "ids = [\"spiffe://example.org/bad\"]\nserials = [\"3a:9f\", \"0x0A\", \"11\"]\n",
        "revoked.toml",
    )
    .unwrap();
    assert!(set.is_id_revoked(&id("spiffe://example.org/bad")));
    let mut serials: Vec<Vec<u8>> = set.serials().map(<[u8]>::to_vec).collect();
    serials.sort();
    assert_eq!(serials, vec![vec![0x0a], vec![0x0b], vec![0x3a, 0x9f]]);

    let err = RevocationSet::from_toml_str(
        "ids = [\n  \"spiffe://example.org/ok\",\n  \"spiffe://example.org/a/../b\",\n]\n",
        "revoked.toml",
    )
    .unwrap_err();
    assert!(matches!(err, RevocationError::BadId { .. }), "{err:?}");
    assert!(err.to_string().starts_with("revoked.toml:3:"), "{err}");

    let err = RevocationSet::from_toml_str("serials = [\"zz\"]\n", "revoked.toml").unwrap_err();
    assert!(matches!(err, RevocationError::BadSerial { .. }), "{err:?}");
    assert!(err.to_string().contains("`zz`"), "{err}");

    let err = RevocationSet::from_toml_str("serials = [\"00\"]\n", "r.toml").unwrap_err();
    assert!(err.to_string().contains("zero"), "{err}");

    let err = RevocationSet::from_toml_str("idz = []\n", "r.toml").unwrap_err();
    assert!(matches!(err, RevocationError::File { .. }), "{err:?}");
    assert!(err.to_string().contains("idz"), "{err}");
}

#[test]
fn revocation_file_reload_keeps_the_old_list_on_a_bad_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("revoked.toml");
    std::fs::write(&path, "ids = [\"spiffe://example.org/bad\"]\n").unwrap();
    let list = Revocations::from_file(&path).unwrap();
    let bad = id("spiffe://example.org/bad");
    let worse = id("spiffe://example.org/worse");
    assert_eq!(list.check(&bad, &[1]), Some(Revoked::Id));
    assert_eq!(list.reload().unwrap(), ReloadOutcome::Unchanged);

    std::fs::write(&path, "ids = [\"not an id\"]\n").unwrap();
    assert!(list.reload().is_err());
    assert_eq!(list.check(&bad, &[1]), Some(Revoked::Id), "old list kept");
    assert!(list.last_error().is_some());
    // The same bad content is reported once.
    assert_eq!(list.reload().unwrap(), ReloadOutcome::Unchanged);

    std::fs::write(&path, "ids = [\"spiffe://example.org/worse\"]\n").unwrap();
    assert_eq!(list.reload().unwrap(), ReloadOutcome::Applied);
    assert_eq!(list.check(&bad, &[1]), None);
    assert_eq!(list.check(&worse, &[1]), Some(Revoked::Id));
    assert!(list.last_error().is_none());

    std::fs::remove_file(&path).unwrap();
    assert!(matches!(list.reload(), Err(RevocationError::Io { .. })));
    assert_eq!(list.check(&worse, &[1]), Some(Revoked::Id), "old list kept");
}

// --- policy store ---------------------------------------------------------

#[test]
fn store_reload_swaps_good_files_and_keeps_the_policy_on_bad_ones() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.toml");
    std::fs::write(&path, GOOD).unwrap();
    let store = PolicyStore::from_file(&path).unwrap();
    let orders = id("spiffe://example.org/orders");
    let req = Request::new(Some(&orders), "GET", "/invoices/42");
    let decision = store.evaluate(&req);
    assert!(decision.allowed);
    assert_eq!(&*decision.policy_version, "v1");

    // A bad file: rejected as a whole with file, line and rule; v1 stays.
    std::fs::write(&path, BAD).unwrap();
    let err = store.reload().unwrap_err();
    assert!(matches!(err, PolicyError::BadCaller { .. }), "{err:?}");
    assert_eq!(err.line(), Some(7));
    assert_eq!(err.rule_id(), Some("typo"));
    assert!(err.to_string().contains("policy.toml:7:"), "{err}");
    assert_eq!(store.last_error(), Some(err));
    assert_eq!(&*store.version(), "v1");
    assert!(store.evaluate(&req).allowed);

    // A good file: swapped in.
    let mut versions = store.subscribe();
    std::fs::write(&path, GOOD_V2).unwrap();
    assert_eq!(store.reload().unwrap(), ReloadOutcome::Applied);
    assert!(versions.has_changed().unwrap());
    assert_eq!(&**versions.borrow_and_update(), "v2");
    assert_eq!(store.last_error(), None);
    let decision = store.evaluate(&req);
    assert!(!decision.allowed);
    assert_eq!(decision.rule_id.as_deref(), Some("no-invoice-42"));
    assert_eq!(&*decision.policy_version, "v2");
    assert_eq!(store.reload().unwrap(), ReloadOutcome::Unchanged);

    // An unreadable file keeps v2.
    std::fs::remove_file(&path).unwrap();
    assert!(matches!(store.reload(), Err(PolicyError::Io { .. })));
    assert_eq!(&*store.version(), "v2");
}

#[test]
fn store_from_a_missing_or_bad_file_fails() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.toml");
    let err = PolicyStore::from_file(&path).unwrap_err();
    assert!(matches!(err, PolicyError::Io { .. }), "{err:?}");
    std::fs::write(&path, BAD).unwrap();
    assert!(matches!(
        PolicyStore::from_file(&path),
        Err(PolicyError::BadCaller { .. })
    ));
    std::fs::write(&path, [0xff, 0xfe]).unwrap();
    assert!(matches!(
        PolicyStore::from_file(&path),
        Err(PolicyError::Io { .. })
    ));
}

#[test]
fn a_decision_in_flight_keeps_the_policy_it_started_with() {
    let store = PolicyStore::new(Policy::from_toml_str(GOOD, "a.toml").unwrap());
    let orders = id("spiffe://example.org/orders");
    let req = Request::new(Some(&orders), "GET", "/invoices/42");
    let before = store.current();
    store.replace(Policy::from_toml_str(GOOD_V2, "b.toml").unwrap());
    assert!(before.evaluate(&req).allowed, "the old policy is intact");
    assert!(!store.evaluate(&req).allowed);
}

#[tokio::test]
async fn store_watch_applies_a_changed_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.toml");
    std::fs::write(&path, GOOD).unwrap();
    let store = PolicyStore::from_file(&path).unwrap();
    let mut versions = store.subscribe();
    let _watch = store.watch(Duration::from_millis(20));
    std::fs::write(&path, GOOD_V2).unwrap();
    tokio::time::timeout(Duration::from_secs(30), versions.changed())
        .await
        .expect("the watcher never applied the new file")
        .unwrap();
    assert_eq!(&**versions.borrow(), "v2");
}

// --- authorizer -----------------------------------------------------------

fn authorizer(dry_run: bool, revocations: &Revocations, lines: &Arc<Lines>) -> Authorizer {
    let policy = Policy::from_toml_str(GOOD_V2, "policy.toml").unwrap();
    Authorizer::builder(policy)
        .target("billing")
        .dry_run(dry_run)
        .revocations(revocations.clone())
        .audit_sink(lines.clone())
        .clock(Arc::new(ManualClock::new(
            UNIX_EPOCH + Duration::from_millis(1_795_000_000_123),
        )))
        .build()
}

#[test]
fn timed_decisions_carry_the_time_they_took() {
    let orders = id("spiffe://example.org/orders");
    let req = Request::new(Some(&orders), "GET", "/invoices/7");
    // On an injected clock (timed by the monotonic clock) and on the
    // system clock (timed by the wall clock read again).
    for clock in [true, false] {
        let lines = Arc::new(Lines::default());
        let mut builder =
            Authorizer::builder(Policy::from_toml_str(GOOD_V2, "policy.toml").unwrap())
                .audit_sink(lines.clone())
                .time_decisions(true);
        if clock {
            builder = builder.clock(Arc::new(ManualClock::new(
                UNIX_EPOCH + Duration::from_secs(1_795_000_000),
            )));
        }
        let authz = builder.build();
        assert_eq!(authz.authorize(&req, None).verdict, Verdict::Allow);
        let [line] = &lines.take()[..] else { panic!() };
        assert!(line["eval_ns"].is_u64(), "clock {clock}: {line}");
    }
}

#[test]
fn authorizer_decides_and_audits_every_field() {
    let lines = Arc::new(Lines::default());
    let revocations = Revocations::new();
    let authz = authorizer(false, &revocations, &lines);
    let orders = id("spiffe://example.org/orders");

    let req = Request::new(Some(&orders), "GET", "/invoices/7").with_route("/invoices/{id}");
    let result = authz.authorize(&req, Some(&[0x0a, 0xbc]));
    assert_eq!(result.verdict, Verdict::Allow);
    assert_eq!(result.decision.reason, DecisionReason::MatchedAllow);
    let [line] = &lines.take()[..] else { panic!() };
    assert_eq!(line["time"], "2026-11-18T11:06:40.123Z");
    assert_eq!(line["caller"], "spiffe://example.org/orders");
    assert_eq!(line["caller_serial"], "0abc");
    assert_eq!(line["target"], "billing");
    assert_eq!(line["method"], "GET");
    assert_eq!(line["path"], "/invoices/7");
    assert_eq!(line["route"], "/invoices/{id}");
    assert_eq!(line["grpc_method"], Value::Null);
    assert_eq!(line["decision"], "allow");
    assert_eq!(line["reason"], "matched-allow");
    assert_eq!(line["rule"], "orders-reads-invoices");
    assert_eq!(line["policy_version"], "v2");
    assert_eq!(line["audit_rules"], serde_json::json!([]));
    // Decisions are not timed unless asked for.
    assert_eq!(line["eval_ns"], Value::Null);

    let req = Request::new(Some(&orders), "GET", "/invoices/42");
    let result = authz.authorize(&req, Some(&[0x0a, 0xbc]));
    assert_eq!(result.verdict, Verdict::Deny);
    assert!(!result.is_unauthenticated());
    let [line] = &lines.take()[..] else { panic!() };
    assert_eq!(line["decision"], "deny");
    assert_eq!(line["reason"], "matched-deny");
    assert_eq!(line["rule"], "no-invoice-42");

    let req = Request::new(None, "GET", "/invoices/7");
    let result = authz.authorize(&req, None);
    assert_eq!(result.verdict, Verdict::Deny);
    assert!(result.is_unauthenticated());
    let [line] = &lines.take()[..] else { panic!() };
    assert_eq!(line["caller"], Value::Null);
    assert_eq!(line["reason"], "unauthenticated");
    assert_eq!(line["rule"], Value::Null);
}

#[test]
fn authorizer_refuses_revoked_callers_before_the_policy() {
    let lines = Arc::new(Lines::default());
    let revocations = Revocations::new();
    let authz = authorizer(false, &revocations, &lines);
    let orders = id("spiffe://example.org/orders");
    let req = Request::new(Some(&orders), "GET", "/invoices/7");
    assert!(authz.authorize(&req, Some(&[1])).proceeds());

    revocations.revoke_serial(&[1]);
    let result = authz.authorize(&req, Some(&[1]));
    assert_eq!(result.verdict, Verdict::Deny);
    assert_eq!(result.revoked, Some(Revoked::Serial));
    assert_eq!(result.decision.reason, DecisionReason::Revoked);
    // The next certificate, with another serial, is accepted.
    assert!(authz.authorize(&req, Some(&[2])).proceeds());

    revocations.revoke_id(orders.clone());
    assert_eq!(authz.authorize(&req, Some(&[2])).revoked, Some(Revoked::Id));
    let lines = lines.take();
    assert_eq!(lines.len(), 4);
    assert_eq!(lines[1]["reason"], "revoked");
    assert_eq!(lines[1]["policy_version"], "v2");
}

#[test]
fn dry_run_lets_policy_denials_through_but_never_identity_failures() {
    let lines = Arc::new(Lines::default());
    let revocations = Revocations::new();
    let authz = authorizer(true, &revocations, &lines);
    let orders = id("spiffe://example.org/orders");
    let ledger = id("spiffe://example.org/ledger");

    let denied_by_rule = Request::new(Some(&orders), "GET", "/invoices/42");
    let result = authz.authorize(&denied_by_rule, Some(&[1]));
    assert_eq!(result.verdict, Verdict::WouldDeny);
    assert!(result.proceeds());
    assert_eq!(result.decision.rule_id.as_deref(), Some("no-invoice-42"));

    let no_rule = Request::new(Some(&ledger), "GET", "/invoices/7");
    assert_eq!(
        authz.authorize(&no_rule, Some(&[1])).verdict,
        Verdict::WouldDeny
    );

    let unauthenticated = Request::new(None, "GET", "/invoices/7");
    assert_eq!(
        authz.authorize(&unauthenticated, None).verdict,
        Verdict::Deny
    );

    revocations.revoke_id(orders.clone());
    let allowed_but_revoked = Request::new(Some(&orders), "GET", "/invoices/7");
    assert_eq!(
        authz.authorize(&allowed_but_revoked, Some(&[1])).verdict,
        Verdict::Deny
    );

    let decisions: Vec<String> = lines
        .take()
        .iter()
        .map(|l| l["decision"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(decisions, ["would-deny", "would-deny", "deny", "deny"]);
}

#[test]
fn audit_only_rules_are_listed_in_the_record() {
    let lines = Arc::new(Lines::default());
    let policy = Policy::builder()
        .version("p")
        .rule(Rule::allow("all"))
        .rule(Rule::audit("watch-admin").http("*", "/admin/**").unwrap())
        .build()
        .unwrap();
    let authz = Authorizer::builder(policy)
        .audit_sink(lines.clone())
        .build();
    let caller = id("spiffe://example.org/x");
    authz.authorize(&Request::new(Some(&caller), "POST", "/admin/users"), None);
    let [line] = &lines.take()[..] else { panic!() };
    assert_eq!(line["decision"], "allow");
    assert_eq!(line["rule"], "all");
    assert_eq!(line["audit_rules"], serde_json::json!(["watch-admin"]));
    assert_eq!(line["target"], "-");
    assert_eq!(line["caller_serial"], Value::Null);
}

#[test]
fn outcome_decides_and_audits_as_authorize_identities_does() {
    use zt_authz::{Identity, IdentityRole};
    let policy = Policy::builder()
        .version("p")
        .rule(
            Rule::allow("orders-reads")
                .caller("spiffe://example.org/orders")
                .unwrap()
                .http("GET", "/invoices/{id}")
                .unwrap(),
        )
        .rule(Rule::deny("sealed").http("*", "/invoices/42").unwrap())
        .rule(Rule::audit("watch").http("*", "/invoices/**").unwrap())
        .build()
        .unwrap();
    let orders = id("spiffe://example.org/orders");
    let ledger = id("spiffe://example.org/ledger");
    let at = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    for dry_run in [false, true] {
        let revocations = Revocations::new();
        revocations.revoke_serial(&[9]);
        let build = |lines: &Arc<Lines>| {
            Authorizer::builder(policy.clone())
                .target("billing")
                .dry_run(dry_run)
                .revocations(revocations.clone())
                .audit_sink(lines.clone())
                .clock(Arc::new(ManualClock::new(at)))
                .build()
        };
        let (full_lines, light_lines) = (Arc::new(Lines::default()), Arc::new(Lines::default()));
        let (full, light) = (build(&full_lines), build(&light_lines));
        let peer = |caller, serial| Identity::peer(caller, serial, at + Duration::from_secs(60));
        let expired =
            Identity::new(IdentityRole::JwtSubject, &orders).expiring(at - Duration::from_secs(1));
        let cases: Vec<(Request<'_>, Vec<Identity<'_>>)> = vec![
            (
                Request::new(Some(&orders), "GET", "/invoices/7"),
                vec![peer(&orders, &[1])],
            ),
            (
                Request::new(Some(&orders), "GET", "/invoices/42"),
                vec![peer(&orders, &[1])],
            ),
            (
                Request::new(Some(&ledger), "GET", "/invoices/7"),
                vec![peer(&ledger, &[2])],
            ),
            (Request::new(None, "GET", "/invoices/7"), vec![]),
            (
                Request::new(Some(&orders), "GET", "/invoices/7"),
                vec![peer(&orders, &[9])],
            ),
            (
                Request::new(Some(&orders), "GET", "/invoices/7"),
                vec![peer(&orders, &[1]), expired],
            ),
        ];
        for (request, identities) in &cases {
            let authorization = full.authorize_identities(request, identities);
            let outcome = light.outcome(request, identities);
            assert_eq!(outcome.verdict, authorization.verdict, "{request:?}");
            assert_eq!(outcome.reason, authorization.decision.reason, "{request:?}");
            assert_eq!(outcome.revoked, authorization.revoked, "{request:?}");
            assert_eq!(outcome.proceeds(), authorization.proceeds());
            assert_eq!(
                outcome.is_unauthenticated(),
                authorization.is_unauthenticated()
            );
        }
        let strip = |mut lines: Vec<Value>| {
            for line in &mut lines {
                line.as_object_mut().unwrap().remove("eval_ns");
            }
            lines
        };
        let full_lines = strip(full_lines.take());
        assert_eq!(full_lines.len(), cases.len());
        assert_eq!(full_lines, strip(light_lines.take()));
        assert_eq!(full_lines[1]["audit_rules"], serde_json::json!(["watch"]));
        assert_eq!(full_lines[4]["reason"], "revoked");
        assert_eq!(full_lines[5]["reason"], "expired");
    }
}

/// An engine that hands over `answers` decisions per request (the
/// contract is exactly one).
struct Unruly {
    policy: Policy,
    answers: usize,
}

impl PolicyEngine for Unruly {
    fn evaluate(&self, request: &Request<'_>) -> zt_authz::policy::Decision {
        self.policy.evaluate(request)
    }

    fn version(&self) -> Arc<str> {
        PolicyEngine::version(&self.policy)
    }

    fn evaluate_with(
        &self,
        request: &Request<'_>,
        with: &mut dyn FnMut(zt_authz::policy::DecisionRef<'_>),
    ) {
        let decision = self.policy.evaluate(request);
        for _ in 0..self.answers {
            with(decision.borrowed());
        }
    }
}

#[test]
fn an_engine_that_gives_no_decision_denies_and_one_that_gives_two_is_audited_once() {
    let orders = id("spiffe://example.org/orders");
    let request = Request::new(Some(&orders), "GET", "/invoices/7");
    for (answers, verdict) in [(0, Verdict::Deny), (1, Verdict::Allow), (2, Verdict::Allow)] {
        let lines = Arc::new(Lines::default());
        let engine = Unruly {
            policy: Policy::from_toml_str(GOOD, "policy.toml").unwrap(),
            answers,
        };
        let authz = Authorizer::builder(engine)
            .audit_sink(lines.clone())
            .build();
        let outcome = authz.outcome(&request, &[]);
        assert_eq!(outcome.verdict, verdict, "{answers} answers");
        let authorization = authz.authorize(&request, None);
        assert_eq!(authorization.verdict, verdict, "{answers} answers");
        let lines = lines.take();
        assert_eq!(lines.len(), 2, "one record per decision, {answers} answers");
        if answers == 0 {
            assert_eq!(lines[0]["reason"], "no-matching-rule");
            assert_eq!(lines[0]["rule"], Value::Null);
        }
    }
}

#[test]
fn evaluate_with_hands_over_what_evaluate_returns() {
    let store = PolicyStore::new(Policy::from_toml_str(GOOD_V2, "policy.toml").unwrap());
    let policy = Policy::builder()
        .version("c")
        .rule(Rule::audit("watch").http("*", "/**").unwrap())
        .rule(
            Rule::allow("prod-only")
                .caller("spiffe://example.org/orders")
                .unwrap()
                .when(zt_authz::policy::Condition::new(
                    "environment",
                    zt_authz::policy::Test::Equals("prod".into()),
                )),
        )
        .build()
        .unwrap();
    let orders = id("spiffe://example.org/orders");
    let other = id("spiffe://example.org/x");
    let requests = [
        Request::new(Some(&orders), "GET", "/invoices/7"),
        Request::new(Some(&orders), "GET", "/invoices/42"),
        Request::new(Some(&other), "GET", "/invoices/7"),
        Request::new(None, "GET", "/"),
    ];
    let engines: [&dyn PolicyEngine; 2] = [&store, &policy];
    for engine in engines {
        for request in &requests {
            let mut handed = Vec::new();
            engine.evaluate_with(request, &mut |d| handed.push(d.to_decision()));
            assert_eq!(handed, [engine.evaluate(request)], "{request:?}");
        }
    }
}

// --- JSON-lines writer ----------------------------------------------------

#[test]
fn json_lines_writer_writes_one_object_per_decision() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let writer = Arc::new(JsonLinesAuditWriter::append_to_file(&path).unwrap());
    let policy = Policy::builder().rule(Rule::allow("all")).build().unwrap();
    let authz = Authorizer::builder(policy)
        .target("billing")
        .audit_sink(writer.clone())
        .build();
    let caller = id("spiffe://example.org/x");
    for n in 0..50 {
        let path = format!("/items/{n}");
        authz.authorize(&Request::new(Some(&caller), "GET", &path), Some(&[1]));
    }
    writer.flush();
    assert_eq!(writer.written(), 50);
    assert_eq!(writer.dropped(), 0);
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 50);
    for (n, line) in lines.iter().enumerate() {
        assert_eq!(line["path"], format!("/items/{n}"));
        assert_eq!(line["decision"], "allow");
        assert_eq!(line["caller"], "spiffe://example.org/x");
    }
}

/// An output that blocks every write until released.
struct Gate {
    open: mpsc::Receiver<()>,
    written: Arc<Mutex<Vec<u8>>>,
}

impl Write for Gate {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let _ = self.open.recv();
        self.written.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_stuck_audit_output_drops_and_counts_instead_of_blocking() {
    let (release, open) = mpsc::channel();
    let written = Arc::new(Mutex::new(Vec::new()));
    let gate = Gate {
        open,
        written: written.clone(),
    };
    let writer = Arc::new(JsonLinesAuditWriter::new(gate, 4).unwrap());
    let policy = Policy::builder().rule(Rule::allow("all")).build().unwrap();
    let authz = Authorizer::builder(policy)
        .audit_sink(writer.clone())
        .build();
    let caller = id("spiffe://example.org/x");
    // The output accepts nothing, so at most one batch (four lines) is in
    // the writer's hands and four in the queue: the rest are dropped, and
    // every call returns at once.
    const N: u64 = 200;
    for _ in 0..N {
        assert!(
            authz
                .authorize(&Request::new(Some(&caller), "GET", "/"), None)
                .proceeds()
        );
    }
    assert!(writer.dropped() >= N - 8, "dropped {}", writer.dropped());
    for _ in 0..N {
        release.send(()).unwrap();
    }
    writer.flush();
    assert_eq!(writer.written() + writer.dropped(), N);
    let lines = written
        .lock()
        .unwrap()
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .count();
    assert_eq!(lines as u64, writer.written());
}

#[test]
fn revocation_list_reads_serials_as_spire_and_openssl_print_them() {
    // SPIRE prints 1234567890; openssl prints 49:96:02:d2 or 0x499602D2.
    let leaf_serial = [0x49, 0x96, 0x02, 0xd2];
    let billing = id("spiffe://example.org/billing");
    for pasted in ["1234567890", "49:96:02:d2", "0x499602D2"] {
        let set =
            RevocationSet::from_toml_str(&format!("serials = [\"{pasted}\"]\n"), "r.toml").unwrap();
        assert_eq!(
            set.check(&billing, &leaf_serial),
            Some(Revoked::Serial),
            "{pasted}"
        );
    }
    // Bare hex with letters could be misread either way: refused, naming the forms.
    let err = RevocationSet::from_toml_str("serials = [\"499602d2\"]\n", "r.toml").unwrap_err();
    let RevocationError::BadSerial { reason, .. } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(*reason, zt_core::serial::SerialError::Ambiguous);
    assert!(err.to_string().contains("decimal"), "{err}");
}

#[test]
fn every_identity_on_a_request_is_checked_for_revocation_and_expiry() {
    use zt_authz::{Identity, IdentityRole};
    let clock = ManualClock::starting_now();
    let revocations = Revocations::new();
    let authz = Authorizer::builder(Policy::from_toml_str(GOOD, "p.toml").unwrap())
        .revocations(revocations.clone())
        .clock(Arc::new(clock.clone()))
        .build();
    let orders = id("spiffe://example.org/orders");
    let mallory = id("spiffe://example.org/mallory");
    let gateway = id("spiffe://example.org/gateway");
    let now = std::time::SystemTime::now();
    let later = now + Duration::from_secs(60);
    // The caller the policy sees is the JWT-SVID subject (orders); the
    // peer is mallory; gateway acted in the user context's chain.
    let request = Request::new(Some(&orders), "GET", "/invoices/1");
    let identities = [
        Identity::peer(&mallory, &[0x2a], later),
        Identity::new(IdentityRole::JwtSubject, &orders).expiring(later),
        Identity::new(IdentityRole::Actor, &gateway).expiring(later),
    ];
    assert_eq!(
        authz.authorize_identities(&request, &identities).verdict,
        Verdict::Allow
    );

    for revoked in [&mallory, &gateway, &orders] {
        revocations.revoke_id(revoked.clone());
        let result = authz.authorize_identities(&request, &identities);
        assert_eq!(result.verdict, Verdict::Deny, "{revoked}");
        assert_eq!(result.decision.reason, DecisionReason::Revoked, "{revoked}");
        revocations.reinstate_id(revoked);
    }
    revocations.revoke_serial(&[0x2a]);
    assert_eq!(
        authz.authorize_identities(&request, &identities).revoked,
        Some(Revoked::Serial)
    );
    revocations.reinstate_serial(&[0x2a]);

    clock.set(later + Duration::from_secs(1));
    let result = authz.authorize_identities(&request, &identities);
    assert_eq!(result.verdict, Verdict::Deny);
    assert_eq!(result.decision.reason, DecisionReason::Expired);
}
