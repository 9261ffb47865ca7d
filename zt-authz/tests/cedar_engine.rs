//! The Cedar translation of a policy decides exactly as the built-in engine:
//! a decision table run on both, a property over random policies and
//! requests, context conditions and captures over every combination of
//! matching, differing and missing claims, and the refusal of rules Cedar
//! cannot express.

#![cfg(feature = "cedar")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code"
)]

use std::sync::Arc;

use proptest::prelude::*;
use zt_authz::policy::cedar::{CedarError, CedarPolicy};
use zt_authz::policy::{
    Context, Decision, DecisionReason, Effect, Policy, PolicyEngine, Request, Rule,
};
use zt_core::SpiffeId;
use zt_core::matcher::IdMatcher;

// ---------------------------------------------------------------------------
// Decision table
// ---------------------------------------------------------------------------

const BILLING: &str = "spiffe://example.org/ns/prod/sa/billing";
const API: &str = "spiffe://example.org/ns/prod/sa/api";
const LEDGER: &str = "spiffe://example.org/ns/prod/sa/ledger";
const ADMIN: &str = "spiffe://example.org/ns/prod/sa/admin";
const OPS_1: &str = "spiffe://ops.example/team/one";
const OPS_2: &str = "spiffe://ops.example/team/two";
const OPS_3: &str = "spiffe://ops.example/team/three";
const PARTNER: &str = "spiffe://partner.example/shop";
const STRANGER: &str = "spiffe://other.example/shop";

fn table_policy() -> Policy {
    Policy::builder()
        .version("table-1")
        .rule(
            Rule::allow("example-status")
                .caller("spiffe://example.org/**")
                .unwrap()
                .http("GET", "/status")
                .unwrap(),
        )
        .rule(
            Rule::allow("exact-billing")
                .caller(BILLING)
                .unwrap()
                .http("GET", "/invoices/{id}")
                .unwrap(),
        )
        .rule(
            Rule::allow("trust-domain-partner")
                .caller("spiffe://partner.example/**")
                .unwrap()
                .http("GET", "/catalog")
                .unwrap(),
        )
        .rule(
            Rule::allow("prefix-prod")
                .caller("spiffe://example.org/ns/prod/**")
                .unwrap()
                .http("GET", "/reports/**")
                .unwrap(),
        )
        .rule(
            Rule::allow("glob-readers")
                .caller("spiffe://example.org/ns/*/sa/reader")
                .unwrap()
                .http("GET", "/docs/*")
                .unwrap(),
        )
        .rule(
            Rule::allow("one-of-ops")
                .caller_matcher(IdMatcher::one_of_strs([OPS_1, OPS_2]).unwrap())
                .http("POST", "/deploy")
                .unwrap(),
        )
        .rule(
            Rule::allow("files-one-segment")
                .caller(OPS_3)
                .unwrap()
                .http("GET", "/files/*")
                .unwrap(),
        )
        .rule(
            Rule::allow("files-everything")
                .caller(OPS_1)
                .unwrap()
                .http("GET", "/files/**")
                .unwrap(),
        )
        .rule(
            Rule::allow("grpc-method")
                .caller(API)
                .unwrap()
                .grpc("/billing.Billing/GetInvoice")
                .unwrap(),
        )
        .rule(
            Rule::allow("grpc-service")
                .caller(LEDGER)
                .unwrap()
                .grpc("/ledger.Ledger/*")
                .unwrap(),
        )
        .rule(Rule::deny("no-admin").http("*", "/admin/**").unwrap())
        .rule(
            Rule::allow("admins")
                .caller(ADMIN)
                .unwrap()
                .http("*", "/admin/**")
                .unwrap(),
        )
        .rule(Rule::audit("audit-deletes").http("DELETE", "/**").unwrap())
        .rule(
            Rule::audit("audit-partner")
                .caller("spiffe://partner.example/**")
                .unwrap(),
        )
        .rule(Rule::allow("anyone-health").http("GET", "/health").unwrap())
        .rule(Rule::allow("anyone-status").http("GET", "/status").unwrap())
        .build()
        .unwrap()
}

/// One row: a request and the decision both engines must give.
struct Row {
    name: &'static str,
    caller: Option<&'static str>,
    method: &'static str,
    path: &'static str,
    route: Option<&'static str>,
    grpc: Option<&'static str>,
    reason: DecisionReason,
    rule: Option<&'static str>,
    audit: &'static [&'static str],
}

const fn http(
    name: &'static str,
    caller: Option<&'static str>,
    method: &'static str,
    path: &'static str,
    reason: DecisionReason,
    rule: Option<&'static str>,
) -> Row {
    Row {
        name,
        caller,
        method,
        path,
        route: None,
        grpc: None,
        reason,
        rule,
        audit: &[],
    }
}

impl Row {
    const fn route(mut self, route: &'static str) -> Self {
        self.route = Some(route);
        self
    }

    const fn grpc(mut self, grpc: &'static str) -> Self {
        self.grpc = Some(grpc);
        self
    }

    const fn audit(mut self, audit: &'static [&'static str]) -> Self {
        self.audit = audit;
        self
    }
}

#[rustfmt::skip]
fn table() -> Vec<Row> {
    use DecisionReason::{MatchedAllow as Allow, MatchedDeny as Deny, NoMatchingRule as NoRule};
    let prod_x = Some("spiffe://example.org/ns/prod/sa/x");
    let reader = Some("spiffe://example.org/ns/dev/sa/reader");
    vec![
        http("exact ID on a path template", Some(BILLING), "GET", "/invoices/42", Allow, Some("exact-billing")),
        http("exact ID, other method", Some(BILLING), "POST", "/invoices/42", NoRule, None),
        http("path template is one segment", Some(BILLING), "GET", "/invoices/42/lines", NoRule, None),
        http("path template needs a non-empty segment", Some(BILLING), "GET", "/invoices/", NoRule, None),
        http("route template matches the template", Some(BILLING), "GET", "/v2/invoices/42", Allow, Some("exact-billing"))
            .route("/invoices/{id}"),
        http("trust domain", Some(PARTNER), "GET", "/catalog", Allow, Some("trust-domain-partner"))
            .audit(&["audit-partner"]),
        http("other trust domain", Some(STRANGER), "GET", "/catalog", NoRule, None),
        http("ID prefix", prod_x, "GET", "/reports/q3/summary", Allow, Some("prefix-prod")),
        http("path prefix covers its base", prod_x, "GET", "/reports", Allow, Some("prefix-prod")),
        http("ID prefix excludes its base", Some("spiffe://example.org/ns/prod"), "GET", "/reports", NoRule, None),
        http("ID prefix is on a segment boundary", Some("spiffe://example.org/ns/production/x"), "GET", "/reports", NoRule, None),
        http("ID glob", reader, "GET", "/docs/intro", Allow, Some("glob-readers")),
        http("ID glob star is one segment", Some("spiffe://example.org/ns/a/b/sa/reader"), "GET", "/docs/intro", NoRule, None),
        http("path star is one segment", reader, "GET", "/docs/a/b", NoRule, None),
        http("one of several IDs", Some(OPS_2), "POST", "/deploy", Allow, Some("one-of-ops")),
        http("not one of them", Some(OPS_3), "POST", "/deploy", NoRule, None),
        http("one-segment wildcard never matches a catch-all route", Some(OPS_3), "GET", "/files/a/b", NoRule, None)
            .route("/files/{*rest}"),
        http("one-segment wildcard on the raw path", Some(OPS_3), "GET", "/files/a", Allow, Some("files-one-segment"))
            .route("/files/{*rest}"),
        http("final ** matches a catch-all route", Some(OPS_1), "GET", "/x", Allow, Some("files-everything"))
            .route("/files/{*rest}"),
        http("gRPC method", Some(API), "POST", "/billing.Billing/GetInvoice", Allow, Some("grpc-method"))
            .grpc("/billing.Billing/GetInvoice"),
        http("other gRPC method", Some(API), "POST", "/billing.Billing/Refund", NoRule, None)
            .grpc("/billing.Billing/Refund"),
        http("gRPC service-wide", Some(LEDGER), "POST", "/ledger.Ledger/Post", Allow, Some("grpc-service"))
            .grpc("/ledger.Ledger/Post"),
        http("gRPC pattern needs a gRPC method", Some(LEDGER), "POST", "/ledger.Ledger/Post", NoRule, None),
        http("gRPC service-wide needs a method name", Some(LEDGER), "POST", "/ledger.Ledger/", NoRule, None)
            .grpc("/ledger.Ledger/"),
        http("deny overrides allow", Some(ADMIN), "GET", "/admin/users", Deny, Some("no-admin")),
        http("deny covers the base path", Some(BILLING), "GET", "/admin", Deny, Some("no-admin")),
        http("default deny", Some(BILLING), "GET", "/nothing", NoRule, None),
        http("rule without callers", Some(STRANGER), "GET", "/health", Allow, Some("anyone-health")),
        http("first matching allow decides", Some(BILLING), "GET", "/status", Allow, Some("example-status")),
        http("later allow for other callers", Some(STRANGER), "GET", "/status", Allow, Some("anyone-status")),
        http("unauthenticated", None, "GET", "/health", DecisionReason::Unauthenticated, None),
        http("audit-only never decides", Some(BILLING), "DELETE", "/invoices/42", NoRule, None)
            .audit(&["audit-deletes"]),
        http("every audit-only match, in order", Some(PARTNER), "DELETE", "/catalog", NoRule, None)
            .audit(&["audit-deletes", "audit-partner"]),
        http("audit-only beside a deny", Some(PARTNER), "DELETE", "/admin/x", Deny, Some("no-admin"))
            .audit(&["audit-deletes", "audit-partner"]),
    ]
}

#[test]
fn both_engines_follow_the_decision_table() {
    let policy = table_policy();
    let cedar = CedarPolicy::from_policy(&policy).unwrap();
    let version: Arc<str> = Arc::from("table-1");
    assert_eq!(cedar.version(), version);
    for row in table() {
        let caller = row.caller.map(|c| SpiffeId::new(c).unwrap());
        let mut request = Request::new(caller.as_ref(), row.method, row.path);
        if let Some(route) = row.route {
            request = request.with_route(route);
        }
        if let Some(grpc) = row.grpc {
            request = request.with_grpc_method(grpc);
        }
        let builtin = policy.evaluate(&request);
        let translated = cedar.evaluate(&request);
        assert_eq!(
            builtin.allowed,
            row.reason == DecisionReason::MatchedAllow,
            "{}",
            row.name
        );
        assert_eq!(builtin.reason, row.reason, "{}", row.name);
        assert_eq!(builtin.rule_id.as_deref(), row.rule, "{}", row.name);
        let audit: Vec<&str> = builtin.audit_only_matches.iter().map(|a| &**a).collect();
        assert_eq!(audit, row.audit, "{}", row.name);
        assert_eq!(builtin.policy_version, version, "{}", row.name);
        assert_eq!(translated, builtin, "{}: Cedar disagrees", row.name);
    }
}

#[test]
fn a_closure_caller_cannot_be_translated() {
    let policy = Policy::builder()
        .rule(
            Rule::allow("fine")
                .caller("spiffe://example.org/**")
                .unwrap(),
        )
        .rule(
            Rule::deny("short-ids")
                .caller_matcher(IdMatcher::from_fn(
                    "IDs with one segment",
                    |id: &SpiffeId| id.path().matches('/').count() == 1,
                ))
                .http("GET", "/x")
                .unwrap(),
        )
        .build()
        .unwrap();
    let err = CedarPolicy::from_policy(&policy).unwrap_err();
    match &err {
        CedarError::Untranslatable { rule_id, reason } => {
            assert_eq!(rule_id, "short-ids");
            assert!(reason.contains("IDs with one segment"), "{reason}");
        }
        other => panic!("expected Untranslatable, got {other:?}"),
    }
    assert!(err.to_string().contains("short-ids"), "{err}");
}

#[test]
fn a_closure_inside_any_of_cannot_be_translated_either() {
    let policy = Policy::builder()
        .rule(Rule::allow("mixed").caller_matcher(IdMatcher::any_of([
            IdMatcher::parse("spiffe://example.org/**").unwrap(),
            IdMatcher::from_fn("anything", |_: &SpiffeId| true),
        ])))
        .build()
        .unwrap();
    assert!(matches!(
        CedarPolicy::from_policy(&policy),
        Err(CedarError::Untranslatable { rule_id, .. }) if rule_id == "mixed"
    ));
}

#[test]
fn quotes_and_unicode_in_ids_and_paths_survive_translation() {
    let policy = Policy::builder()
        .rule(
            Rule::allow("odd \"id\" \\ ü")
                .http("GET", "/a\"b/ü\\/{x}")
                .unwrap(),
        )
        .build()
        .unwrap();
    let cedar = CedarPolicy::from_policy(&policy).unwrap();
    let caller = SpiffeId::new(BILLING).unwrap();
    for path in ["/a\"b/ü\\/1", "/a\"b/ü\\", "/a\"b/ü\\/1/2"] {
        let request = Request::new(Some(&caller), "GET", path);
        assert_eq!(
            cedar.evaluate(&request),
            policy.evaluate(&request),
            "{path}"
        );
    }
    let request = Request::new(Some(&caller), "GET", "/a\"b/ü\\/1");
    assert!(cedar.evaluate(&request).allowed);
}

#[test]
fn an_empty_policy_denies_everything_in_both_engines() {
    let policy = Policy::builder().build().unwrap();
    let cedar = CedarPolicy::from_policy(&policy).unwrap();
    let caller = SpiffeId::new(BILLING).unwrap();
    let request = Request::new(Some(&caller), "GET", "/");
    let decision = cedar.evaluate(&request);
    assert_eq!(decision, policy.evaluate(&request));
    assert_eq!(decision.reason, DecisionReason::NoMatchingRule);
}

// ---------------------------------------------------------------------------
// Context conditions and captures
// ---------------------------------------------------------------------------

/// Every condition form: exact, one of, globs (on claims and on captures),
/// booleans, presence and absence, `same_as` between a capture and a
/// dotted claim, a capture declared by two caller patterns, list claims,
/// and conditions on deny and audit-only rules.
const CONDITIONS: &str = r#"
[[rule]]
id = "deploy-prod"
effect = "allow"
callers = ["spiffe://github.example/repo/org/app/**"]
http = [{ method = "POST", path = "/deploy/prod" }]
when = { repository = "org/app", ref = { one_of = ["refs/heads/main", "refs/heads/release"] }, environment = "prod", runner_environment = "github-hosted" }

[[rule]]
id = "release-tags"
effect = "allow"
callers = ["spiffe://github.example/**"]
http = [{ method = "POST", path = "/release" }]
when = { ref = { glob = "refs/tags/v*" }, job_workflow_ref = { glob = "org/**" } }

[[rule]]
id = "no-forks"
effect = "deny"
callers = ["spiffe://github.example/**"]
when = { fork = true }

[[rule]]
id = "same-namespace"
effect = "allow"
callers = ["spiffe://k8s.example/ns/{ns}/sa/{sa}"]
http = [{ method = "GET", path = "/ns/{x}" }]
when = { ns = { same_as = "kubernetes.io.namespace" }, sa = { glob = "api*" } }

[[rule]]
id = "captured-namespace"
effect = "allow"
callers = ["spiffe://k8s.example/ns/{ns}/**", "spiffe://other.example/{ns}/x"]
http = [{ method = "GET", path = "/capture" }]
when = { ns = { one_of = ["prod", "staging"] } }

[[rule]]
id = "admins"
effect = "allow"
http = [{ method = "GET", path = "/admin" }]
when = { groups = "admins", mfa = { present = true }, sandbox = { present = false }, "kubernetes.io.namespace" = { same_as = "groups" } }

[[rule]]
id = "watch-prod"
effect = "audit"
when = { environment = { one_of = ["prod"] } }
"#;

const CONDITION_CALLERS: &[&str] = &[
    "spiffe://github.example/repo/org/app/workflow/deploy",
    "spiffe://github.example/repo/org/other",
    "spiffe://k8s.example/ns/prod/sa/api",
    "spiffe://k8s.example/ns/prod/sa/apiserver",
    "spiffe://k8s.example/ns/dev/sa/api",
    "spiffe://k8s.example/ns/staging/sa/web/extra",
    "spiffe://other.example/prod/x",
    "spiffe://other.example/dev/x",
];

const CONDITION_ACTIONS: &[(&str, &str)] = &[
    ("POST", "/deploy/prod"),
    ("POST", "/release"),
    ("GET", "/ns/1"),
    ("GET", "/capture"),
    ("GET", "/admin"),
];

/// Contexts that match, differ in one claim, miss claims, or carry claims
/// as lists and booleans.
fn condition_contexts() -> Vec<Option<Context>> {
    let github = Context::new()
        .with("repository", "org/app")
        .with("ref", "refs/heads/main")
        .with("environment", "prod")
        .with("runner_environment", "github-hosted")
        .with(
            "job_workflow_ref",
            "org/ci/.github/workflows/release.yml@refs/heads/main",
        );
    vec![
        None,
        Some(Context::new()),
        Some(github.clone()),
        Some(github.clone().with("repository", "org/app2")),
        Some(github.clone().with("ref", "refs/heads/dev")),
        Some(github.clone().with("environment", vec!["staging", "prod"])),
        Some(github.clone().with("environment", true)),
        Some(github.clone().with("fork", true)),
        Some(github.clone().with("fork", false)),
        Some(github.clone().with("fork", "true")),
        Some(github.clone().with("ref", "refs/tags/v1.2")),
        Some(github.clone().with("ref", "refs/tags/v")),
        Some(github.clone().with("ref", "refs/tags/1.2")),
        Some(github.clone().with("ref", "refs/tags/v1/x")),
        Some(
            github
                .clone()
                .with("ref", "refs/tags/v2")
                .with("job_workflow_ref", "org"),
        ),
        Some(
            github
                .clone()
                .with("ref", "refs/tags/v2")
                .with("job_workflow_ref", "org/"),
        ),
        Some(
            github
                .clone()
                .with("ref", "refs/tags/v2")
                .with("job_workflow_ref", "organisation/x"),
        ),
        Some(Context::new().with("kubernetes.io.namespace", "prod")),
        Some(Context::new().with("kubernetes.io.namespace", "dev")),
        Some(Context::new().with("kubernetes.io.namespace", vec!["dev", "prod"])),
        Some(Context::new().with("kubernetes.io.namespace", true)),
        Some(
            Context::new()
                .with("groups", vec!["devs", "admins"])
                .with("mfa", false)
                .with("kubernetes.io.namespace", "admins"),
        ),
        Some(
            Context::new()
                .with("groups", "admins")
                .with("mfa", "yes")
                .with("kubernetes.io.namespace", vec!["x", "admins"]),
        ),
        Some(
            Context::new()
                .with("groups", vec!["admins"])
                .with("mfa", true)
                .with("sandbox", false)
                .with("kubernetes.io.namespace", "admins"),
        ),
        Some(
            Context::new()
                .with("groups", vec!["admins"])
                .with("kubernetes.io.namespace", "devs"),
        ),
        // `same_as` between two lists: some element in common.
        Some(
            Context::new()
                .with("groups", vec!["devs", "admins"])
                .with("mfa", true)
                .with("kubernetes.io.namespace", vec!["x", "admins"]),
        ),
        Some(
            Context::new()
                .with("groups", vec!["devs", "admins"])
                .with("mfa", true)
                .with("kubernetes.io.namespace", vec!["x", "y"]),
        ),
    ]
}

#[test]
fn conditions_and_captures_decide_alike_in_both_engines() {
    let policy = Policy::from_toml_str(CONDITIONS, "conditions.toml").unwrap();
    let cedar = CedarPolicy::from_policy(&policy).unwrap();
    let text = cedar.policy_text();
    assert!(
        text.contains(
            "context.claims has \"repository\" && context.claims.repository == \"org/app\""
        ),
        "{text}"
    );
    assert!(
        text.contains("context.parts[\"ref\"]") || text.contains("context.parts.ref"),
        "{text}"
    );
    let mut seen: Vec<(DecisionReason, Option<String>)> = Vec::new();
    for caller in CONDITION_CALLERS {
        let caller = SpiffeId::new(caller).unwrap();
        for (method, path) in CONDITION_ACTIONS {
            for context in condition_contexts() {
                let mut request = Request::new(Some(&caller), method, path);
                if let Some(context) = &context {
                    request = request.with_context(context);
                }
                let builtin = policy.evaluate(&request);
                let translated = cedar.evaluate(&request);
                assert_eq!(
                    translated, builtin,
                    "{caller} {method} {path} {context:?}\nCedar policies:\n{text}"
                );
                let seen_now = (
                    builtin.reason,
                    builtin.rule_id.as_deref().map(str::to_owned),
                );
                if !seen.contains(&seen_now) {
                    seen.push(seen_now);
                }
            }
        }
    }
    // Every rule both matched and (for allow rules) failed only a condition
    // somewhere in the table, so the comparison covered each.
    for (reason, rule) in [
        (DecisionReason::MatchedAllow, "deploy-prod"),
        (DecisionReason::ConditionNotMet, "deploy-prod"),
        (DecisionReason::MatchedAllow, "release-tags"),
        (DecisionReason::ConditionNotMet, "release-tags"),
        (DecisionReason::MatchedDeny, "no-forks"),
        (DecisionReason::MatchedAllow, "same-namespace"),
        (DecisionReason::ConditionNotMet, "same-namespace"),
        (DecisionReason::MatchedAllow, "captured-namespace"),
        (DecisionReason::ConditionNotMet, "captured-namespace"),
        (DecisionReason::MatchedAllow, "admins"),
        (DecisionReason::ConditionNotMet, "admins"),
    ] {
        assert!(
            seen.contains(&(reason, Some(rule.to_owned()))),
            "no request gave {reason:?} by `{rule}`; seen {seen:?}"
        );
    }
}

#[test]
fn audit_only_rules_with_conditions_match_alike() {
    let policy = Policy::from_toml_str(CONDITIONS, "conditions.toml").unwrap();
    let cedar = CedarPolicy::from_policy(&policy).unwrap();
    let caller = SpiffeId::new(CONDITION_CALLERS[0]).unwrap();
    let prod = Context::new().with("environment", "prod");
    let dev = Context::new().with("environment", "dev");
    let request = Request::new(Some(&caller), "GET", "/none").with_context(&prod);
    let decision = cedar.evaluate(&request);
    assert_eq!(decision, policy.evaluate(&request));
    assert_eq!(&*decision.audit_only_matches, [Arc::from("watch-prod")]);
    let request = Request::new(Some(&caller), "GET", "/none").with_context(&dev);
    let decision = cedar.evaluate(&request);
    assert_eq!(decision, policy.evaluate(&request));
    assert!(decision.audit_only_matches.is_empty());
}

#[test]
fn cedar_denies_a_list_claim_that_a_glob_reads() {
    // Cedar has no quantifier over sets, so "some element matches the
    // glob" has no Cedar form: the Cedar engine fails closed.
    let policy = Policy::from_toml_str(CONDITIONS, "conditions.toml").unwrap();
    let cedar = CedarPolicy::from_policy(&policy).unwrap();
    let caller = SpiffeId::new(CONDITION_CALLERS[0]).unwrap();
    let context = Context::new()
        .with("ref", vec!["refs/tags/v1"])
        .with("job_workflow_ref", "org/ci");
    let request = Request::new(Some(&caller), "POST", "/release").with_context(&context);
    assert!(policy.evaluate(&request).allowed);
    let decision = cedar.evaluate(&request);
    assert!(!decision.allowed);
    assert_eq!(decision.reason, DecisionReason::NoMatchingRule);
}

#[test]
fn claim_keys_that_are_not_cedar_identifiers_are_quoted() {
    let policy = Policy::from_toml_str(
        r#"
        [[rule]]
        id = "odd-keys"
        effect = "allow"
        when = { "kubernetes.io.namespace" = "prod", "if" = "x", "a b\"c" = { glob = "x/*" } }
        "#,
        "odd.toml",
    )
    .unwrap();
    let cedar = CedarPolicy::from_policy(&policy).unwrap();
    let text = cedar.policy_text();
    assert!(
        text.contains("context.claims[\"kubernetes.io.namespace\"]"),
        "{text}"
    );
    assert!(text.contains("context.claims[\"if\"]"), "{text}");
    let caller = SpiffeId::new(BILLING).unwrap();
    let good = Context::new()
        .with("kubernetes.io.namespace", "prod")
        .with("if", "x")
        .with("a b\"c", "x/y");
    let bad = good.clone().with("a b\"c", "x/y/z");
    for context in [&good, &bad] {
        let request = Request::new(Some(&caller), "GET", "/").with_context(context);
        assert_eq!(cedar.evaluate(&request), policy.evaluate(&request));
    }
    let request = Request::new(Some(&caller), "GET", "/").with_context(&good);
    assert!(cedar.evaluate(&request).allowed);
}

/// A random context over the keys the conditions read: each key keeps,
/// more often than not, a value that satisfies its conditions, else takes a
/// value that differs, has another type, or is absent. Glob keys are never
/// lists (see `cedar_denies_a_list_claim_that_a_glob_reads`).
fn condition_context() -> impl Strategy<Value = Option<Context>> {
    use ContextValueSpec::{Bool, List, Str};
    const VALUES: &[&str] = &[
        "org/app",
        "prod",
        "dev",
        "admins",
        "refs/heads/main",
        "refs/tags/v1",
        "org/ci/x",
        "github-hosted",
        "",
    ];
    let keys: Vec<(&'static str, bool, Option<ContextValueSpec>)> = vec![
        ("repository", true, Some(Str("org/app"))),
        ("ref", false, Some(Str("refs/heads/main"))),
        ("environment", true, Some(Str("prod"))),
        ("runner_environment", true, Some(Str("github-hosted"))),
        ("job_workflow_ref", false, Some(Str("org/ci/x"))),
        ("fork", true, Some(Bool(false))),
        ("kubernetes.io.namespace", true, Some(Str("prod"))),
        ("groups", true, Some(List(vec!["devs", "admins"]))),
        ("mfa", true, Some(Bool(true))),
        ("sandbox", true, None),
    ];
    let values: Vec<_> = keys
        .iter()
        .map(|(_, list_ok, good)| {
            let string = prop::sample::select(VALUES).prop_map(|v| Some(Str(v)));
            let list = prop::collection::vec(prop::sample::select(VALUES), 0..3)
                .prop_map(|v| Some(List(v)));
            let flag = any::<bool>().prop_map(|b| Some(Bool(b)));
            let other = if *list_ok {
                prop_oneof![string, list, flag, Just(None)].boxed()
            } else {
                prop_oneof![string, flag, Just(None)].boxed()
            };
            prop_oneof![3 => Just(good.clone()), 1 => other]
        })
        .collect();
    let names: Vec<&'static str> = keys.iter().map(|(k, _, _)| *k).collect();
    (0..8u8, values).prop_map(move |(none, values)| {
        (none != 0).then(|| {
            let mut context = Context::new();
            for (key, value) in names.iter().zip(values) {
                match value {
                    Some(Str(v)) => context.insert(key, v),
                    Some(List(v)) => context.insert(key, v),
                    Some(Bool(b)) => context.insert(key, b),
                    None => &mut context,
                };
            }
            context
        })
    })
}

#[derive(Debug, Clone)]
enum ContextValueSpec {
    Str(&'static str),
    List(Vec<&'static str>),
    Bool(bool),
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn cedar_and_the_builtin_engine_agree_on_random_contexts(
        caller in prop::sample::select(CONDITION_CALLERS),
        action in prop::sample::select(CONDITION_ACTIONS),
        context in condition_context(),
    ) {
        static ENGINES: std::sync::LazyLock<(Policy, CedarPolicy)> =
            std::sync::LazyLock::new(|| {
                let policy = Policy::from_toml_str(CONDITIONS, "conditions.toml").unwrap();
                let cedar = CedarPolicy::from_policy(&policy).unwrap();
                (policy, cedar)
            });
        let (policy, cedar) = &*ENGINES;
        let caller = SpiffeId::new(caller).unwrap();
        let mut request = Request::new(Some(&caller), action.0, action.1);
        if let Some(context) = &context {
            request = request.with_context(context);
        }
        prop_assert_eq!(cedar.evaluate(&request), policy.evaluate(&request), "{:?}", context);
    }
}

// ---------------------------------------------------------------------------
// Property: random policies and requests from one small universe
// ---------------------------------------------------------------------------

const TRUST_DOMAINS: &[&str] = &["a.org", "b.org"];
const ID_SEGMENTS: &[&str] = &["x", "y", "z"];
const PATH_SEGMENTS: &[&str] = &["p", "q", "r"];
const GRPC_PATTERNS: &[&str] = &["/s.A/M", "/s.A/N", "/s.B/M", "/s.A/*", "/s.B/*"];
const GRPC_METHODS: &[&str] = &[
    "/s.A/M", "/s.A/N", "/s.B/M", "/s.B/O", "/s.A/", "/s.A/M/x", "s.A/M", "/s.A",
];

/// A SPIFFE ID from the universe, with 0 to 4 path segments.
fn spiffe_id() -> impl Strategy<Value = String> {
    (
        prop::sample::select(TRUST_DOMAINS),
        prop::collection::vec(prop::sample::select(ID_SEGMENTS), 0..=4),
    )
        .prop_map(|(td, segments)| {
            let mut id = format!("spiffe://{td}");
            for s in segments {
                id.push('/');
                id.push_str(s);
            }
            id
        })
}

/// An ID pattern: exact, trust domain, prefix or glob (with or without a
/// final `**`).
fn id_pattern() -> impl Strategy<Value = String> {
    let segment = prop_oneof![
        3 => prop::sample::select(ID_SEGMENTS).prop_map(str::to_owned),
        1 => Just("*".to_owned()),
    ];
    (
        prop::sample::select(TRUST_DOMAINS),
        prop::collection::vec(segment, 0..=3),
        any::<bool>(),
    )
        .prop_map(|(td, segments, tail)| {
            let mut pattern = format!("spiffe://{td}");
            for s in &segments {
                pattern.push('/');
                pattern.push_str(s);
            }
            if tail || segments.is_empty() {
                pattern.push_str("/**");
            }
            pattern
        })
}

#[derive(Debug, Clone)]
enum CallerSpec {
    Pattern(String),
    OneOf(Vec<String>),
    AnyOf(Vec<String>),
}

fn caller_spec() -> impl Strategy<Value = CallerSpec> {
    prop_oneof![
        4 => id_pattern().prop_map(CallerSpec::Pattern),
        2 => spiffe_id()
            .prop_filter("an exact pattern needs a path", |id| id.matches('/').count() > 2)
            .prop_map(CallerSpec::Pattern),
        1 => prop::collection::vec(spiffe_id(), 0..=3).prop_map(CallerSpec::OneOf),
        1 => prop::collection::vec(id_pattern(), 1..=3).prop_map(CallerSpec::AnyOf),
    ]
}

fn caller_matcher(spec: &CallerSpec) -> IdMatcher {
    match spec {
        CallerSpec::Pattern(p) => IdMatcher::parse(p).unwrap(),
        CallerSpec::OneOf(ids) => IdMatcher::one_of(ids.iter().map(|i| SpiffeId::new(i).unwrap())),
        CallerSpec::AnyOf(patterns) => IdMatcher::one_of_strs(patterns).unwrap(),
    }
}

/// A path pattern: `/`, `/**`, or segments that are literals, `*` or
/// `{id}`, with or without a final `/**`.
fn path_pattern() -> impl Strategy<Value = String> {
    let segment = prop_oneof![
        4 => prop::sample::select(PATH_SEGMENTS).prop_map(str::to_owned),
        1 => Just("*".to_owned()),
        1 => Just("{id}".to_owned()),
    ];
    (prop::collection::vec(segment, 0..=3), any::<bool>()).prop_map(|(segments, tail)| {
        let mut pattern = String::new();
        for s in &segments {
            pattern.push('/');
            pattern.push_str(s);
        }
        if tail {
            pattern.push_str("/**");
        }
        if pattern.is_empty() {
            pattern.push('/');
        }
        pattern
    })
}

#[derive(Debug, Clone)]
enum ActionSpec {
    Http(&'static str, String),
    Grpc(&'static str),
}

fn action_spec() -> impl Strategy<Value = ActionSpec> {
    prop_oneof![
        3 => (prop::sample::select(&["*", "GET", "POST"][..]), path_pattern())
            .prop_map(|(m, p)| ActionSpec::Http(m, p)),
        1 => prop::sample::select(GRPC_PATTERNS).prop_map(ActionSpec::Grpc),
    ]
}

#[derive(Debug, Clone)]
struct RuleSpec {
    effect: Effect,
    callers: Vec<CallerSpec>,
    actions: Vec<ActionSpec>,
}

fn rule_spec() -> impl Strategy<Value = RuleSpec> {
    (
        prop::sample::select(&[Effect::Allow, Effect::Deny, Effect::AuditOnly][..]),
        prop::collection::vec(caller_spec(), 0..=2),
        prop::collection::vec(action_spec(), 0..=2),
    )
        .prop_map(|(effect, callers, actions)| RuleSpec {
            effect,
            callers,
            actions,
        })
}

fn build_policy(rules: &[RuleSpec]) -> Policy {
    let mut builder = Policy::builder();
    for (i, spec) in rules.iter().enumerate() {
        let mut rule = Rule::new(format!("rule-{i}"), spec.effect);
        for caller in &spec.callers {
            rule = rule.caller_matcher(caller_matcher(caller));
        }
        for action in &spec.actions {
            rule = match action {
                ActionSpec::Http(method, path) => rule.http(method, path).unwrap(),
                ActionSpec::Grpc(pattern) => rule.grpc(pattern).unwrap(),
            };
        }
        builder = builder.rule(rule);
    }
    builder.build().unwrap()
}

#[derive(Debug, Clone)]
struct RequestSpec {
    caller: Option<String>,
    method: &'static str,
    path: String,
    route: Option<String>,
    grpc: Option<&'static str>,
}

/// A raw path: mostly `/`-rooted segments from the universe, sometimes
/// with empty segments, a trailing `/` or no leading `/`.
fn raw_path() -> impl Strategy<Value = String> {
    let segment = prop_oneof![
        6 => prop::sample::select(PATH_SEGMENTS).prop_map(str::to_owned),
        1 => Just(String::new()),
        1 => Just("{id}".to_owned()),
    ];
    (prop::collection::vec(segment, 0..=4), 0..10u8).prop_map(|(segments, shape)| {
        let body = segments.join("/");
        match shape {
            0 => body,
            _ => format!("/{body}"),
        }
    })
}

/// A route template: literals, `{id}` and a final `{*rest}`.
fn route_template() -> impl Strategy<Value = String> {
    let segment = prop_oneof![
        3 => prop::sample::select(PATH_SEGMENTS).prop_map(str::to_owned),
        1 => Just("{id}".to_owned()),
    ];
    (prop::collection::vec(segment, 0..=3), any::<bool>()).prop_map(|(segments, catch_all)| {
        let mut route = String::new();
        for s in &segments {
            route.push('/');
            route.push_str(s);
        }
        if catch_all {
            route.push_str("/{*rest}");
        }
        if route.is_empty() {
            route.push('/');
        }
        route
    })
}

fn request_spec() -> impl Strategy<Value = RequestSpec> {
    (
        prop::option::weighted(0.9, spiffe_id()),
        prop::sample::select(&["GET", "POST", "DELETE"][..]),
        raw_path(),
        prop::option::of(route_template()),
        prop::option::weighted(0.3, prop::sample::select(GRPC_METHODS)),
    )
        .prop_map(|(caller, method, path, route, grpc)| RequestSpec {
            caller,
            method,
            path,
            route,
            grpc,
        })
}

fn decide(engine: &dyn PolicyEngine, spec: &RequestSpec) -> Decision {
    let caller = spec.caller.as_deref().map(|c| SpiffeId::new(c).unwrap());
    let mut request = Request::new(caller.as_ref(), spec.method, &spec.path);
    if let Some(route) = &spec.route {
        request = request.with_route(route);
    }
    if let Some(grpc) = spec.grpc {
        request = request.with_grpc_method(grpc);
    }
    engine.evaluate(&request)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn cedar_and_the_builtin_engine_agree(
        rules in prop::collection::vec(rule_spec(), 0..=8),
        requests in prop::collection::vec(request_spec(), 1..=16),
    ) {
        let policy = build_policy(&rules);
        let cedar = CedarPolicy::from_policy(&policy).unwrap();
        for request in &requests {
            let builtin = decide(&policy, request);
            let translated = decide(&cedar, request);
            prop_assert_eq!(
                &translated,
                &builtin,
                "request {:?}\nCedar policies:\n{}",
                request,
                cedar.policy_text()
            );
        }
    }
}
