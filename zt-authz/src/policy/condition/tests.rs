//! Conditions: each test kind, captures, the failed condition a decision
//! names, file errors with their position, lint, export and Cedar.

use std::sync::Arc;

use zt_core::SpiffeId;

use crate::policy::{
    Context, ContextValue, DecisionReason, LintKind, Policy, PolicyEngine, PolicyError, Request,
};

fn id(s: &str) -> SpiffeId {
    SpiffeId::new(s).unwrap()
}

fn policy(text: &str) -> Policy {
    Policy::from_toml_str(text, "policy.toml").unwrap_or_else(|e| panic!("{e}"))
}

fn error(text: &str) -> PolicyError {
    match Policy::from_toml_str(text, "policy.toml") {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e,
    }
}

const DEPLOY: &str = r#"
[[rule]]
id = "deploy-prod"
effect = "allow"
callers = ["spiffe://github.example/repo/org/app/**"]
http = [{ method = "POST", path = "/deploy/prod" }]
when = { repository = "org/app", ref = { one_of = ["refs/heads/main", "refs/heads/release"] }, environment = "prod", runner_environment = "github-hosted" }
"#;

fn github() -> Context {
    Context::new()
        .with("repository", "org/app")
        .with("ref", "refs/heads/main")
        .with("environment", "prod")
        .with("runner_environment", "github-hosted")
}

fn deploy(policy: &Policy, context: Option<&Context>) -> crate::policy::Decision {
    let caller = id("spiffe://github.example/repo/org/app/workflow/deploy");
    let mut request = Request::new(Some(&caller), "POST", "/deploy/prod");
    if let Some(context) = context {
        request = request.with_context(context);
    }
    policy.evaluate(&request)
}

#[test]
fn all_exact_and_one_of_conditions_must_hold() {
    let policy = policy(DEPLOY);
    let decision = deploy(&policy, Some(&github()));
    assert!(decision.allowed, "{decision:?}");
    assert_eq!(decision.reason, DecisionReason::MatchedAllow);
    assert_eq!(decision.condition, None);

    let release = github().with("ref", "refs/heads/release");
    assert!(deploy(&policy, Some(&release)).allowed);

    let branch = github().with("ref", "refs/heads/feature");
    let decision = deploy(&policy, Some(&branch));
    assert!(!decision.allowed);
    assert_eq!(decision.reason, DecisionReason::ConditionNotMet);
    assert_eq!(decision.rule_id.as_deref(), Some("deploy-prod"));
    assert_eq!(
        decision.condition.as_deref(),
        Some(r#"ref = { one_of = ["refs/heads/main", "refs/heads/release"] } (differs)"#)
    );

    let self_hosted = github().with("runner_environment", "self-hosted");
    let decision = deploy(&policy, Some(&self_hosted));
    assert_eq!(
        decision.condition.as_deref(),
        Some(r#"runner_environment = "github-hosted" (differs)"#)
    );
}

#[test]
fn a_request_without_context_fails_the_first_condition_as_absent() {
    let policy = policy(DEPLOY);
    let decision = deploy(&policy, None);
    assert!(!decision.allowed);
    assert_eq!(decision.reason, DecisionReason::ConditionNotMet);
    assert_eq!(
        decision.condition.as_deref(),
        Some(r#"repository = "org/app" (absent)"#)
    );
}

#[test]
fn a_failed_condition_is_reported_only_when_the_rest_of_the_rule_matched() {
    let policy = policy(DEPLOY);
    let caller = id("spiffe://github.example/repo/org/other/workflow/deploy");
    let decision = policy.evaluate(&Request::new(Some(&caller), "POST", "/deploy/prod"));
    assert_eq!(decision.reason, DecisionReason::NoMatchingRule);
    assert_eq!(decision.rule_id, None);
    assert_eq!(decision.condition, None);
    let caller = id("spiffe://github.example/repo/org/app/workflow/deploy");
    let context = github();
    let request = Request::new(Some(&caller), "GET", "/deploy/prod").with_context(&context);
    assert_eq!(
        policy.evaluate(&request).reason,
        DecisionReason::NoMatchingRule
    );
}

#[test]
fn glob_conditions_match_on_segment_boundaries() {
    let policy = policy(
        r#"
        [[rule]]
        id = "tags"
        effect = "allow"
        when = { ref = { glob = "refs/tags/v*" }, repository = { glob = "org/**" }, job = { glob = "*/build" } }
        "#,
    );
    let caller = id("spiffe://example.org/ci");
    let decide = |r#ref: &str, repository: &str, job: &str| {
        let context = Context::new()
            .with("ref", r#ref)
            .with("repository", repository)
            .with("job", job);
        policy
            .evaluate(&Request::new(Some(&caller), "GET", "/").with_context(&context))
            .allowed
    };
    assert!(decide("refs/tags/v1.2.0", "org/app", "ci/build"));
    assert!(decide("refs/tags/v", "org/app/sub", "x/build"));
    assert!(!decide("refs/tags/x1", "org/app", "ci/build"));
    assert!(!decide("refs/tags/v1/extra", "org/app", "ci/build"));
    assert!(!decide("refs/tags/v1", "org", "ci/build"));
    assert!(!decide("refs/tags/v1", "organisation/app", "ci/build"));
    assert!(!decide("refs/tags/v1", "org/app", "/build"));
    assert!(!decide("refs/tags/v1", "org/app", "a/b/build"));
}

#[test]
fn present_absent_and_boolean_conditions() {
    let policy = policy(
        r#"
        [[rule]]
        id = "no-impersonation"
        effect = "allow"
        when = { sub = { present = true }, act = { present = false }, "repository_visibility.private" = true }
        "#,
    );
    let caller = id("spiffe://example.org/ci");
    let decide = |context: &Context| {
        policy.evaluate(&Request::new(Some(&caller), "GET", "/").with_context(context))
    };
    let ok = Context::new()
        .with("sub", "repo:org/app")
        .with("repository_visibility.private", true);
    assert!(decide(&ok).allowed);
    let acting = ok.clone().with("act", "someone");
    assert_eq!(
        decide(&acting).condition.as_deref(),
        Some("act = { present = false } (present)")
    );
    let string_true = ok.clone().with("repository_visibility.private", "true");
    assert_eq!(
        decide(&string_true).condition.as_deref(),
        Some(r#""repository_visibility.private" = true (differs)"#)
    );
    let no_sub = Context::new().with("repository_visibility.private", true);
    assert_eq!(
        decide(&no_sub).condition.as_deref(),
        Some("sub = { present = true } (absent)")
    );
}

#[test]
fn a_list_value_passes_when_one_element_does() {
    let policy = policy(
        r#"
        [[rule]]
        id = "deployers"
        effect = "allow"
        when = { groups = "deployers", aud = { one_of = ["zt", "other"] } }
        "#,
    );
    let caller = id("spiffe://example.org/ci");
    let decide = |context: &Context| {
        policy
            .evaluate(&Request::new(Some(&caller), "GET", "/").with_context(context))
            .allowed
    };
    let both = Context::new()
        .with("groups", vec!["readers", "deployers"])
        .with("aud", vec!["x", "zt"]);
    assert!(decide(&both));
    let neither = Context::new()
        .with("groups", vec!["readers"])
        .with("aud", vec!["zt"]);
    assert!(!decide(&neither));
}

#[test]
fn captures_of_the_caller_id_are_compared_with_values_and_with_context() {
    let policy = policy(
        r#"
        [[rule]]
        id = "prod-namespace"
        effect = "allow"
        callers = ["spiffe://example.org/ns/{ns}/sa/{sa}"]
        when = { ns = "prod", sa = { same_as = "kubernetes.io.serviceaccount.name" } }
        "#,
    );
    let context = Context::new().with("kubernetes.io.serviceaccount.name", "billing");
    let decide = |caller: &str, context: &Context| {
        let caller = id(caller);
        policy.evaluate(&Request::new(Some(&caller), "GET", "/").with_context(context))
    };
    assert!(decide("spiffe://example.org/ns/prod/sa/billing", &context).allowed);
    let dev = decide("spiffe://example.org/ns/dev/sa/billing", &context);
    assert_eq!(dev.reason, DecisionReason::ConditionNotMet);
    assert_eq!(dev.condition.as_deref(), Some(r#"ns = "prod" (differs)"#));
    let other_sa = decide("spiffe://example.org/ns/prod/sa/orders", &context);
    assert_eq!(
        other_sa.condition.as_deref(),
        Some(r#"sa = { same_as = "kubernetes.io.serviceaccount.name" } (differs)"#)
    );
    let no_claim = decide("spiffe://example.org/ns/prod/sa/billing", &Context::new());
    assert_eq!(
        no_claim.condition.as_deref(),
        Some(r#"sa = { same_as = "kubernetes.io.serviceaccount.name" } (other absent)"#)
    );
    // A capture matches one whole segment, as `*` does.
    let deeper = decide("spiffe://example.org/ns/prod/sa/billing/x", &context);
    assert_eq!(deeper.reason, DecisionReason::NoMatchingRule);
}

#[test]
fn a_capture_name_shadows_the_context_key_of_the_same_name() {
    let policy = policy(
        r#"
        [[rule]]
        id = "ns"
        effect = "allow"
        callers = ["spiffe://example.org/ns/{ns}/**"]
        when = { ns = "prod" }
        "#,
    );
    let caller = id("spiffe://example.org/ns/dev/sa/x");
    let context = Context::new().with("ns", "prod");
    let request = Request::new(Some(&caller), "GET", "/").with_context(&context);
    assert!(!policy.evaluate(&request).allowed);
}

#[test]
fn from_claims_flattens_objects_to_dotted_keys() {
    let claims = serde_json::json!({
        "sub": "system:serviceaccount:prod:billing",
        "kubernetes.io": { "namespace": "prod", "serviceaccount": { "name": "billing" } },
        "aud": ["zt", "other"],
        "exp": 1_700_000_000,
        "private": false,
        "nothing": null,
        "objects": [{ "a": 1 }]
    });
    let serde_json::Value::Object(claims) = claims else {
        unreachable!()
    };
    let context = Context::from_claims(&claims);
    assert_eq!(
        context.get("kubernetes.io.namespace"),
        Some(&ContextValue::from("prod"))
    );
    assert_eq!(
        context.get("kubernetes.io.serviceaccount.name"),
        Some(&ContextValue::from("billing"))
    );
    assert_eq!(
        context.get("aud"),
        Some(&ContextValue::from(vec!["zt", "other"]))
    );
    assert_eq!(context.get("exp"), Some(&ContextValue::from("1700000000")));
    assert_eq!(context.get("private"), Some(&ContextValue::Bool(false)));
    assert_eq!(context.get("nothing"), None);
    assert_eq!(context.get("objects"), None);
    assert_eq!(context.len(), 6);
}

#[test]
fn condition_errors_are_typed_and_name_line_column_and_rule() {
    let cases: &[(&str, &str)] = &[
        (r#"when = { ref = 3 }"#, "is a integer"),
        (r#"when = { ref = { one_of = [] } }"#, "empty `one_of`"),
        (
            r#"when = { ref = { one_of = [1] } }"#,
            "`one_of` with a integer",
        ),
        (
            r#"when = { ref = { glob = "refs/**/x" } }"#,
            "`**` that is not the last",
        ),
        (
            r#"when = { ref = { glob = "re*fs" } }"#,
            "`*` inside segment",
        ),
        (
            r#"when = { ref = { present = "yes" } }"#,
            "write true or false",
        ),
        (
            r#"when = { ref = { equals = "x" } }"#,
            "unknown test `equals`",
        ),
        (
            r#"when = { ref = { glob = "a", one_of = ["b"] } }"#,
            "exactly one of",
        ),
        (r#"when = { ref = { same_as = "" } }"#, "a non-empty string"),
        (
            r#"when = { kubernetes.io.namespace = "prod" }"#,
            "must be quoted",
        ),
    ];
    for (when, expected) in cases {
        let text = format!("[[rule]]\nid = \"r\"\neffect = \"allow\"\n{when}\n");
        let e = error(&text);
        assert!(
            matches!(e, PolicyError::BadCondition { .. }),
            "{when}: {e:?}"
        );
        assert!(e.to_string().contains(expected), "{when}: {e}");
        assert_eq!(e.line(), Some(4), "{when}: {e}");
        assert_eq!(e.rule_id(), Some("r"));
        assert!(e.origin().column().is_some_and(|c| c > 8), "{when}: {e}");
        assert!(e.to_string().starts_with("policy.toml:4:"), "{e}");
    }
}

#[test]
fn capture_errors_are_typed() {
    let cases: &[(&str, &str)] = &[
        ("spiffe://example.org/ns/{ns}/x/{ns}", "captures `ns` twice"),
        ("spiffe://example.org/ns/{1ns}", "capture name"),
        ("spiffe://example.org/ns/{}", "capture name"),
        (
            "spiffe://example.org/ns/a{ns}",
            "a capture is a whole segment",
        ),
        ("spiffe://{td}/x", "trust domain"),
    ];
    for (pattern, expected) in cases {
        let text = format!("[[rule]]\nid = \"r\"\neffect = \"allow\"\ncallers = [\"{pattern}\"]\n");
        let e = error(&text);
        assert!(
            matches!(e, PolicyError::BadCapture { .. }),
            "{pattern}: {e:?}"
        );
        assert!(e.to_string().contains(expected), "{pattern}: {e}");
        assert_eq!(e.line(), Some(4), "{e}");
    }
    // The rest of the pattern is checked as any caller is.
    let e = error(
        "[[rule]]\nid = \"r\"\neffect = \"allow\"\ncallers = [\"spiffe://Example.org/{ns}\"]\n",
    );
    assert!(matches!(e, PolicyError::BadCaller { .. }), "{e:?}");
}

#[test]
fn lint_a_conditioned_rule_never_covers_an_unconditioned_one() {
    let policy = policy(
        r#"
        [[rule]]
        id = "deny-forks"
        effect = "deny"
        when = { fork = true }

        [[rule]]
        id = "all"
        effect = "allow"

        [[rule]]
        id = "main-only"
        effect = "allow"
        when = { ref = "refs/heads/main" }

        [[rule]]
        id = "main-prod"
        effect = "allow"
        http = [{ method = "POST", path = "/deploy" }]
        when = { ref = "refs/heads/main", environment = "prod" }
        "#,
    );
    let found: Vec<(LintKind, String, String)> = policy
        .lint()
        .iter()
        .map(|w| (w.kind, w.rule_id.to_string(), w.other_rule_id.to_string()))
        .collect();
    // `deny-forks` covers nothing (conditioned); `all` shadows both
    // conditioned allows; `main-only` would shadow `main-prod` as well.
    assert_eq!(
        found,
        vec![
            (LintKind::Shadowed, "main-only".into(), "all".into()),
            (LintKind::Shadowed, "main-prod".into(), "all".into()),
        ]
    );
    let without_all = Policy::builder()
        .rules(policy.rules().iter().filter(|r| r.id() != "all").cloned())
        .build()
        .unwrap();
    let found: Vec<(LintKind, String, String)> = without_all
        .lint()
        .iter()
        .map(|w| (w.kind, w.rule_id.to_string(), w.other_rule_id.to_string()))
        .collect();
    assert_eq!(
        found,
        vec![(LintKind::Shadowed, "main-prod".into(), "main-only".into())]
    );
}

#[test]
fn lint_reports_conditions_that_can_never_hold() {
    let policy = policy(
        r#"
        [[rule]]
        id = "slash"
        effect = "allow"
        callers = ["spiffe://example.org/ns/{ns}/**"]
        when = { ns = "prod/eu" }

        [[rule]]
        id = "absent-capture"
        effect = "allow"
        callers = ["spiffe://example.org/team/{ns}"]
        when = { ns = { present = false } }

        [[rule]]
        id = "fine"
        effect = "allow"
        callers = ["spiffe://example.org/ns/{ns}/**", "spiffe://example.org/other"]
        when = { ns = { present = false } }
        "#,
    );
    let found: Vec<(LintKind, String)> = policy
        .lint()
        .iter()
        .map(|w| (w.kind, w.rule_id.to_string()))
        .collect();
    assert_eq!(
        found,
        vec![
            (LintKind::ConditionNeverHolds, "slash".into()),
            (LintKind::ConditionNeverHolds, "absent-capture".into()),
        ]
    );
    assert!(policy.lint()[0].to_string().contains("never matches"));
}

#[test]
fn conditions_change_the_content_hash_and_export_round_trips() {
    let base = policy(
        "[[rule]]\nid = \"r\"\neffect = \"allow\"\ncallers = [\"spiffe://example.org/ns/{ns}/sa/{sa}\"]\n",
    );
    let with = policy(
        "[[rule]]\nid = \"r\"\neffect = \"allow\"\ncallers = [\"spiffe://example.org/ns/{ns}/sa/{sa}\"]\nwhen = { ns = \"prod\" }\n",
    );
    assert_ne!(base.version(), with.version());

    let declarations = crate::policy::declare::Declarations::builder()
        .build()
        .unwrap();
    let exported = declarations.clone().with_policy(policy(DEPLOY)).export();
    assert!(
        exported.contains(
            r#"when = { repository = "org/app", ref = { one_of = ["refs/heads/main", "refs/heads/release"] }, environment = "prod", runner_environment = "github-hosted" }"#
        ),
        "{exported}"
    );
    // The rule tables of an export read back as a policy file.
    let rules = &exported[exported.find("\n[[rule]]").unwrap()..];
    let reread = Policy::from_toml_str(rules, "export").unwrap();
    assert_eq!(
        reread.rules()[0].conditions(),
        policy(DEPLOY).rules()[0].conditions()
    );

    let captured = declarations.with_policy(with).export();
    assert!(
        captured.contains(r#"callers = ["spiffe://example.org/ns/{ns}/sa/{sa}"]"#),
        "{captured}"
    );
}

#[test]
fn cedar_translates_conditions_and_captures_into_when_clauses() {
    use crate::policy::cedar::CedarPolicy;
    let deploy = policy(DEPLOY);
    let cedar = CedarPolicy::from_policy(&deploy).unwrap();
    let text = cedar.policy_text();
    assert!(
        text.contains(
            "context.claims has \"repository\" && context.claims.repository == \"org/app\""
        ),
        "{text}"
    );
    assert!(text.contains("context.claims.ref)"), "{text}");
    for context in [
        Some(github()),
        Some(github().with("ref", "refs/heads/dev")),
        None,
    ] {
        let caller = id("spiffe://github.example/repo/org/app/workflow/deploy");
        let mut request = Request::new(Some(&caller), "POST", "/deploy/prod");
        if let Some(context) = &context {
            request = request.with_context(context);
        }
        assert_eq!(
            cedar.evaluate(&request),
            deploy.evaluate(&request),
            "{context:?}"
        );
    }
    let captured = policy(
        "[[rule]]\nid = \"c\"\neffect = \"allow\"\ncallers = [\"spiffe://example.org/ns/{ns}\"]\nwhen = { ns = \"prod\" }\n",
    );
    let cedar = CedarPolicy::from_policy(&captured).unwrap();
    assert!(
        cedar
            .policy_text()
            .contains("principal.segments.s1 == \"prod\""),
        "{}",
        cedar.policy_text()
    );
}

#[test]
fn unconditioned_policies_decide_as_before() {
    let policy = policy(
        r#"
        [[rule]]
        id = "billing"
        effect = "allow"
        callers = ["spiffe://example.org/billing"]
        "#,
    );
    let other = id("spiffe://example.org/orders");
    let context = github();
    let decision = policy.evaluate(&Request::new(Some(&other), "GET", "/").with_context(&context));
    assert_eq!(decision.reason, DecisionReason::NoMatchingRule);
    assert_eq!(decision.condition, None);
    assert_eq!(decision.rule_id, None::<Arc<str>>);
}
