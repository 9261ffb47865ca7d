use super::*;
use zt_core::matcher::IdMatcher;

fn id(s: &str) -> SpiffeId {
    SpiffeId::new(s).unwrap()
}

const BILLING: &str = "spiffe://example.org/ns/prod/sa/billing";
const FRONTEND: &str = "spiffe://example.org/ns/prod/sa/frontend";
const PARTNER: &str = "spiffe://partner.example/app/reporting";
const STRANGER: &str = "spiffe://other.example/x";

/// One policy for the decision table.
fn table_policy() -> Policy {
    Policy::builder()
        .version("table")
        .rule(
            Rule::allow("billing-reads-invoices")
                .caller(BILLING)
                .unwrap()
                .http("GET", "/invoices/{id}")
                .unwrap()
                .http("GET", "/invoices")
                .unwrap(),
        )
        .rule(
            Rule::allow("partner-reads-reports")
                .caller("spiffe://partner.example/**")
                .unwrap()
                .http("GET", "/reports/**")
                .unwrap(),
        )
        .rule(
            Rule::allow("prod-namespace-writes")
                .caller("spiffe://example.org/ns/*/sa/frontend")
                .unwrap()
                .http("POST", "/orders")
                .unwrap(),
        )
        .rule(Rule::allow("anyone-health").http("*", "/health").unwrap())
        .rule(
            Rule::allow("billing-grpc")
                .caller(BILLING)
                .unwrap()
                .grpc("/billing.Billing/GetInvoice")
                .unwrap()
                .grpc("/ledger.Ledger/*")
                .unwrap(),
        )
        .rule(
            Rule::allow("billing-admin")
                .caller(BILLING)
                .unwrap()
                .http("*", "/admin/**")
                .unwrap(),
        )
        .rule(
            Rule::deny("no-admin-deletes")
                .http("DELETE", "/admin/**")
                .unwrap(),
        )
        .rule(
            Rule::audit("watch-invoice-reads")
                .http("GET", "/invoices/{id}")
                .unwrap(),
        )
        .rule(Rule::audit("watch-billing").caller(BILLING).unwrap())
        .build()
        .unwrap()
}

struct Case {
    caller: Option<&'static str>,
    method: &'static str,
    path: &'static str,
    route: Option<&'static str>,
    grpc: Option<&'static str>,
    allowed: bool,
    reason: DecisionReason,
    rule: Option<&'static str>,
}

const fn http(
    caller: Option<&'static str>,
    method: &'static str,
    path: &'static str,
    allowed: bool,
    reason: DecisionReason,
    rule: Option<&'static str>,
) -> Case {
    Case {
        caller,
        method,
        path,
        route: None,
        grpc: None,
        allowed,
        reason,
        rule,
    }
}

use DecisionReason::{MatchedAllow as ALLOW, MatchedDeny as DENY, NoMatchingRule as NONE};

#[test]
fn decision_table_covers_callers_paths_methods_grpc_and_precedence() {
    let policy = table_policy();
    let cases = [
        // exact caller, exact path and template
        http(
            Some(BILLING),
            "GET",
            "/invoices",
            true,
            ALLOW,
            Some("billing-reads-invoices"),
        ),
        http(
            Some(BILLING),
            "GET",
            "/invoices/42",
            true,
            ALLOW,
            Some("billing-reads-invoices"),
        ),
        http(
            Some(BILLING),
            "GET",
            "/invoices/42/lines",
            false,
            NONE,
            None,
        ),
        http(Some(BILLING), "GET", "/invoices/", false, NONE, None),
        http(Some(BILLING), "POST", "/invoices/42", false, NONE, None),
        http(Some(FRONTEND), "GET", "/invoices/42", false, NONE, None),
        // trust-domain caller, prefix path
        http(
            Some(PARTNER),
            "GET",
            "/reports/2026/q4",
            true,
            ALLOW,
            Some("partner-reads-reports"),
        ),
        http(
            Some(PARTNER),
            "GET",
            "/reports",
            true,
            ALLOW,
            Some("partner-reads-reports"),
        ),
        http(Some(PARTNER), "GET", "/reportsx", false, NONE, None),
        http(Some(STRANGER), "GET", "/reports/1", false, NONE, None),
        // glob caller
        http(
            Some(FRONTEND),
            "POST",
            "/orders",
            true,
            ALLOW,
            Some("prod-namespace-writes"),
        ),
        http(
            Some("spiffe://example.org/ns/dev/sa/frontend"),
            "POST",
            "/orders",
            true,
            ALLOW,
            Some("prod-namespace-writes"),
        ),
        http(Some(BILLING), "POST", "/orders", false, NONE, None),
        // any caller, method wildcard
        http(
            Some(STRANGER),
            "GET",
            "/health",
            true,
            ALLOW,
            Some("anyone-health"),
        ),
        http(
            Some(STRANGER),
            "HEAD",
            "/health",
            true,
            ALLOW,
            Some("anyone-health"),
        ),
        http(Some(STRANGER), "GET", "/healthz", false, NONE, None),
        // prefix on a segment boundary; deny overrides allow
        http(
            Some(BILLING),
            "GET",
            "/admin",
            true,
            ALLOW,
            Some("billing-admin"),
        ),
        http(
            Some(BILLING),
            "GET",
            "/admin/users/7",
            true,
            ALLOW,
            Some("billing-admin"),
        ),
        http(Some(BILLING), "GET", "/administrator", false, NONE, None),
        http(
            Some(BILLING),
            "DELETE",
            "/admin/users/7",
            false,
            DENY,
            Some("no-admin-deletes"),
        ),
        http(
            Some(STRANGER),
            "DELETE",
            "/admin",
            false,
            DENY,
            Some("no-admin-deletes"),
        ),
        // default deny
        http(Some(STRANGER), "GET", "/", false, NONE, None),
        // unauthenticated: fails closed even where any caller is allowed
        http(
            None,
            "GET",
            "/health",
            false,
            DecisionReason::Unauthenticated,
            None,
        ),
        // gRPC method and service-wide
        Case {
            grpc: Some("/billing.Billing/GetInvoice"),
            ..http(
                Some(BILLING),
                "POST",
                "/billing.Billing/GetInvoice",
                true,
                ALLOW,
                Some("billing-grpc"),
            )
        },
        Case {
            grpc: Some("/billing.Billing/DeleteInvoice"),
            ..http(
                Some(BILLING),
                "POST",
                "/billing.Billing/DeleteInvoice",
                false,
                NONE,
                None,
            )
        },
        Case {
            grpc: Some("/ledger.Ledger/Post"),
            ..http(
                Some(BILLING),
                "POST",
                "/ledger.Ledger/Post",
                true,
                ALLOW,
                Some("billing-grpc"),
            )
        },
        Case {
            grpc: Some("/ledger.LedgerAdmin/Post"),
            ..http(
                Some(BILLING),
                "POST",
                "/ledger.LedgerAdmin/Post",
                false,
                NONE,
                None,
            )
        },
        Case {
            grpc: Some("/ledger.Ledger/Post"),
            ..http(
                Some(FRONTEND),
                "POST",
                "/ledger.Ledger/Post",
                false,
                NONE,
                None,
            )
        },
        // a gRPC action needs a gRPC method, not just the path
        http(
            Some(BILLING),
            "POST",
            "/billing.Billing/GetInvoice",
            false,
            NONE,
            None,
        ),
        // route template as well as raw path
        Case {
            route: Some("/invoices/{id}"),
            ..http(
                Some(BILLING),
                "GET",
                "/invoices/%34%32",
                true,
                ALLOW,
                Some("billing-reads-invoices"),
            )
        },
        Case {
            route: Some("/invoices/{*rest}"),
            ..http(Some(BILLING), "GET", "/invoices/a/b", false, NONE, None)
        },
    ];
    for (i, c) in cases.iter().enumerate() {
        let caller = c.caller.map(id);
        let mut request = Request::new(caller.as_ref(), c.method, c.path);
        if let Some(route) = c.route {
            request = request.with_route(route);
        }
        if let Some(grpc) = c.grpc {
            request = request.with_grpc_method(grpc);
        }
        let d = policy.evaluate(&request);
        let what = format!("case {i}: {:?} {} {} -> {d:?}", c.caller, c.method, c.path);
        assert_eq!(d.allowed, c.allowed, "{what}");
        assert_eq!(d.reason, c.reason, "{what}");
        assert_eq!(d.rule_id.as_deref(), c.rule, "{what}");
        assert_eq!(&*d.policy_version, "table", "{what}");
    }
}

#[test]
fn audit_only_matches_are_reported_but_never_decide() {
    let policy = table_policy();
    let billing = id(BILLING);
    let d = policy.evaluate(&Request::new(Some(&billing), "GET", "/invoices/7"));
    assert!(d.allowed);
    assert_eq!(d.rule_id.as_deref(), Some("billing-reads-invoices"));
    let audits: Vec<&str> = d.audit_only_matches.iter().map(|s| &**s).collect();
    assert_eq!(audits, ["watch-invoice-reads", "watch-billing"]);

    // An audit rule alone does not allow.
    let stranger = id(STRANGER);
    let d = policy.evaluate(&Request::new(Some(&stranger), "GET", "/invoices/7"));
    assert!(!d.allowed);
    assert_eq!(d.reason, DecisionReason::NoMatchingRule);
    assert_eq!(d.audit_only_matches.len(), 1);

    // Nor does an audit rule with the deny effect's shape deny.
    let policy = Policy::builder()
        .rule(Rule::audit("would-deny-all"))
        .rule(Rule::allow("allow-all"))
        .build()
        .unwrap();
    let d = policy.evaluate(&Request::new(Some(&stranger), "GET", "/"));
    assert!(d.allowed);
    assert_eq!(d.audit_only_matches.len(), 1);
}

#[test]
fn first_matching_rule_in_policy_order_is_reported() {
    let policy = Policy::builder()
        .rule(Rule::allow("any-caller").http("GET", "/x").unwrap())
        .rule(
            Rule::allow("exact")
                .caller(BILLING)
                .unwrap()
                .http("GET", "/x")
                .unwrap(),
        )
        .rule(
            Rule::allow("domain")
                .caller("spiffe://example.org/**")
                .unwrap(),
        )
        .build()
        .unwrap();
    let billing = id(BILLING);
    let d = policy.evaluate(&Request::new(Some(&billing), "GET", "/x"));
    assert_eq!(d.rule_id.as_deref(), Some("any-caller"));
    let d = policy.evaluate(&Request::new(Some(&billing), "GET", "/y"));
    assert_eq!(d.rule_id.as_deref(), Some("domain"));
}

#[test]
fn trust_domain_rule_does_not_match_the_trust_domain_id_itself() {
    let policy = Policy::builder()
        .rule(
            Rule::allow("domain")
                .caller("spiffe://example.org/**")
                .unwrap(),
        )
        .build()
        .unwrap();
    let td_id = id("spiffe://example.org");
    assert!(
        !policy
            .evaluate(&Request::new(Some(&td_id), "GET", "/"))
            .allowed
    );
}

#[test]
fn closure_and_one_of_callers_are_honoured() {
    let policy = Policy::builder()
        .rule(
            Rule::allow("set")
                .caller_matcher(IdMatcher::one_of([id(BILLING), id(PARTNER)]))
                .http("GET", "/set")
                .unwrap(),
        )
        .rule(
            Rule::allow("closure")
                .caller_matcher(IdMatcher::from_fn("reporting apps", |i: &SpiffeId| {
                    i.path().ends_with("/reporting")
                }))
                .http("GET", "/closure")
                .unwrap(),
        )
        .build()
        .unwrap();
    let partner = id(PARTNER);
    let frontend = id(FRONTEND);
    assert!(
        policy
            .evaluate(&Request::new(Some(&partner), "GET", "/set"))
            .allowed
    );
    assert!(
        policy
            .evaluate(&Request::new(Some(&partner), "GET", "/closure"))
            .allowed
    );
    assert!(
        !policy
            .evaluate(&Request::new(Some(&frontend), "GET", "/set"))
            .allowed
    );
    assert!(
        !policy
            .evaluate(&Request::new(Some(&frontend), "GET", "/closure"))
            .allowed
    );
}

#[test]
fn index_with_100000_unrelated_exact_id_rules_gives_the_right_answer() {
    let mut builder = Policy::builder();
    for i in 0..100_000 {
        builder = builder.rule(
            Rule::allow(format!("r{i}"))
                .caller(&format!("spiffe://example.org/svc/{i}"))
                .unwrap()
                .http("GET", &format!("/things/{i}"))
                .unwrap(),
        );
    }
    builder = builder.rule(
        Rule::deny("deny-77")
            .caller("spiffe://example.org/svc/77")
            .unwrap(),
    );
    let policy = builder.build().unwrap();

    let caller = id("spiffe://example.org/svc/31337");
    let d = policy.evaluate(&Request::new(Some(&caller), "GET", "/things/31337"));
    assert!(d.allowed);
    assert_eq!(d.rule_id.as_deref(), Some("r31337"));
    let d = policy.evaluate(&Request::new(Some(&caller), "GET", "/things/31338"));
    assert_eq!(d.reason, DecisionReason::NoMatchingRule);
    let denied = id("spiffe://example.org/svc/77");
    let d = policy.evaluate(&Request::new(Some(&denied), "GET", "/things/77"));
    assert_eq!(d.rule_id.as_deref(), Some("deny-77"));

    // The candidates for a caller do not include unrelated rules.
    let [by_id, by_td, other] = policy.inner.index.candidate_counts(&caller);
    assert_eq!((by_id, by_td, other), (1, 0, 0));
}

// ---- files ----

const FILE: &str = r#"version = "2026-11-23.1"

[[rule]]
id = "billing-reads-invoices"
effect = "allow"
callers = ["spiffe://example.org/ns/prod/sa/billing", "spiffe://partner.example/**"]
http = [{ method = "GET", path = "/invoices/{id}" }, { method = "*", path = "/health" }]
grpc = ["/billing.Billing/GetInvoice", "/billing.Billing/*"]

[[rule]]
id = "no-admin"
effect = "deny"
http = [{ path = "/admin/**" }]

[[rule]]
id = "dry-run"
effect = "audit"
"#;

#[test]
fn file_reads_into_the_same_rules_as_the_builder() {
    let policy = Policy::from_toml_str(FILE, "policy.toml").unwrap();
    assert_eq!(policy.version(), "2026-11-23.1");
    assert!(policy.has_explicit_version());
    assert_eq!(policy.rules().len(), 3);
    let rule = policy.rule("billing-reads-invoices").unwrap();
    assert_eq!(rule.callers().len(), 2);
    assert_eq!(rule.actions().len(), 4);
    assert_eq!(rule.origin().line(), Some(4));
    assert_eq!(policy.rule("no-admin").unwrap().effect(), Effect::Deny);
    assert_eq!(policy.rule("dry-run").unwrap().effect(), Effect::AuditOnly);

    let partner = id(PARTNER);
    let d = policy.evaluate(
        &Request::new(Some(&partner), "POST", "/billing.Billing/List")
            .with_grpc_method("/billing.Billing/List"),
    );
    assert!(d.allowed);
    assert_eq!(&*d.policy_version, "2026-11-23.1");
    assert_eq!(d.audit_only_matches.len(), 1);
    let d = policy.evaluate(&Request::new(Some(&partner), "PUT", "/admin/x"));
    assert_eq!(d.reason, DecisionReason::MatchedDeny);
}

fn file_err(text: &str) -> PolicyError {
    Policy::from_toml_str(text, "bad.toml").unwrap_err()
}

#[test]
fn unknown_field_error_names_file_line_and_rule() {
    let e = file_err(
        "[[rule]]\nid = \"a\"\neffect = \"allow\"\n\n[[rule]]\nid = \"b\"\neffect = \"allow\"\nmethods = [\"GET\"]\n",
    );
    assert!(matches!(e, PolicyError::File { .. }), "{e:?}");
    assert_eq!(e.line(), Some(8), "{e}");
    assert_eq!(e.rule_id(), Some("b"), "{e}");
    let msg = e.to_string();
    assert!(msg.starts_with("bad.toml:8:1: in rule `b`: "), "{msg}");
    assert!(msg.contains("methods"), "{msg}");
}

#[test]
fn unknown_top_level_field_and_syntax_errors_name_the_line() {
    let e = file_err("versoin = \"1\"\n");
    assert_eq!(e.line(), Some(1), "{e}");
    assert!(e.to_string().contains("versoin"), "{e}");
    let e = file_err("[[rule]]\nid = \"a\"\neffect = allow\n");
    assert_eq!(e.line(), Some(3), "{e}");
    let e = file_err(
        "[[rule]]\nid = \"a\"\neffect = \"allow\"\nhttp = [{ method = \"GET\", path = \"/x\", verb = \"y\" }]\n",
    );
    assert_eq!(e.line(), Some(4), "{e}");
    assert!(e.to_string().contains("verb"), "{e}");
}

#[test]
fn bad_caller_id_error_names_line_column_and_rule() {
    let e = file_err(
        "[[rule]]\nid = \"a\"\neffect = \"allow\"\ncallers = [\"spiffe://example.org/ok\", \"spiffe://Example.org/x\"]\n",
    );
    assert!(matches!(e, PolicyError::BadCaller { .. }), "{e:?}");
    assert_eq!(e.line(), Some(4));
    // The column of the uppercase letter, inside the second string.
    assert_eq!(e.origin().column(), Some(49));
    assert_eq!(e.rule_id(), Some("a"));
    let msg = e.to_string();
    assert!(
        msg.starts_with("bad.toml:4:49: rule `a`: caller `spiffe://Example.org/x`"),
        "{msg}"
    );
}

#[test]
fn duplicate_rule_id_error_names_both_lines() {
    let e = file_err(
        "[[rule]]\nid = \"a\"\neffect = \"allow\"\n\n[[rule]]\nid = \"a\"\neffect = \"deny\"\n",
    );
    let PolicyError::DuplicateRuleId { first, .. } = &e else {
        panic!("{e:?}");
    };
    assert_eq!(first.line(), Some(2));
    assert_eq!(e.line(), Some(6));
    assert!(e.to_string().contains("bad.toml:2:6"), "{e}");
}

#[test]
fn bad_effect_error_names_line_and_choices() {
    let e = file_err("[[rule]]\nid = \"a\"\neffect = \"permit\"\n");
    assert!(matches!(e, PolicyError::UnknownEffect { .. }), "{e:?}");
    assert_eq!(e.line(), Some(3));
    assert!(e.to_string().contains("`allow`, `deny` or `audit`"), "{e}");
}

#[test]
fn bad_paths_methods_and_grpc_patterns_are_rejected_with_their_line() {
    let rule = |field: &str| format!("[[rule]]\nid = \"a\"\neffect = \"allow\"\n{field}\n");
    for (field, want) in [
        (
            "http = [{ path = \"invoices\" }]",
            "does not start with `/`",
        ),
        ("http = [{ path = \"/a//b\" }]", "empty segment"),
        ("http = [{ path = \"/a/**/b\" }]", "`**` before the end"),
        (
            "http = [{ path = \"/a/x*\" }]",
            "wildcards are whole segments",
        ),
        ("http = [{ path = \"/a/{}\" }]", "parameter"),
        ("http = [{ path = \"/a?x=1\" }]", "query"),
        (
            "http = [{ method = \"get\", path = \"/a\" }]",
            "write `GET`",
        ),
        ("grpc = [\"billing.Billing/Get\"]", "/service/method"),
        ("grpc = [\"/billing.Billing/Get/x\"]", "method name"),
        ("grpc = [\"/.Billing/Get\"]", "service name"),
    ] {
        let e = file_err(&rule(field));
        assert_eq!(e.line(), Some(4), "{field}: {e}");
        assert_eq!(e.rule_id(), Some("a"), "{field}: {e}");
        assert!(e.to_string().contains(want), "{field}: {e}");
    }
}

#[test]
fn builder_rejects_empty_and_duplicate_ids_and_empty_versions() {
    let e = Policy::builder().rule(Rule::allow("")).build().unwrap_err();
    assert!(matches!(e, PolicyError::EmptyRuleId { .. }));
    let e = Policy::builder()
        .rule(Rule::allow("x"))
        .rule(Rule::deny("x"))
        .build()
        .unwrap_err();
    assert!(matches!(e, PolicyError::DuplicateRuleId { .. }));
    assert!(e.to_string().starts_with("<code>: rule id `x`"), "{e}");
    let e = Policy::builder().version(" ").build().unwrap_err();
    assert!(matches!(e, PolicyError::EmptyVersion { .. }));
}

// ---- versions ----

#[test]
fn version_is_a_content_hash_unless_given() {
    let without_version = FILE.replace("version = \"2026-11-23.1\"\n", "");
    let a = Policy::from_toml_str(&without_version, "a.toml").unwrap();
    let b = Policy::from_toml_str(&without_version, "b.toml").unwrap();
    assert!(!a.has_explicit_version());
    assert_eq!(a.version().len(), 12);
    assert!(a.version().bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(a.version(), b.version(), "same content, same hash");

    let changed = without_version.replace("/health", "/healthz");
    let c = Policy::from_toml_str(&changed, "a.toml").unwrap();
    assert_ne!(a.version(), c.version(), "changed content, different hash");

    // Comments and layout do not change the hash; the builder agrees.
    let built = Policy::builder()
        .rule(
            Rule::allow("x")
                .caller(BILLING)
                .unwrap()
                .http("GET", "/x")
                .unwrap(),
        )
        .build()
        .unwrap();
    let read = Policy::from_toml_str(
        "# a comment\n[[rule]]\nid   = \"x\"\neffect = \"allow\"\ncallers = [\n  \"spiffe://example.org/ns/prod/sa/billing\",\n]\nhttp = [{ path = \"/x\", method = \"GET\" }]\n",
        "x.toml",
    )
    .unwrap();
    assert_eq!(built.version(), read.version());

    let explicit = Policy::from_toml_str(FILE, "policy.toml").unwrap();
    assert_eq!(explicit.version(), "2026-11-23.1");
}

#[test]
fn policy_is_a_send_sync_engine() {
    fn assert_engine<T: PolicyEngine + Clone + 'static>() {}
    assert_engine::<Policy>();
    let engine: Box<dyn PolicyEngine> = Box::new(table_policy());
    assert_eq!(&*engine.version(), "table");
}

#[test]
fn rules_sharing_a_trust_domain_are_indexed_by_route() {
    // 10,000 rules for one trust domain, each on its own route; a few that
    // apply to every route.
    let mut builder = Policy::builder();
    for i in 0..10_000 {
        builder = builder.rule(
            Rule::allow(format!("svc-{i}"))
                .caller("spiffe://example.org/**")
                .unwrap()
                .http("GET", &format!("/svc-{i}/items/{{id}}"))
                .unwrap()
                .grpc(&format!("/pkg.Svc{i}/*"))
                .unwrap(),
        );
    }
    builder = builder
        .rule(Rule::allow("health").http("GET", "/{any}").unwrap())
        .rule(
            Rule::allow("partner-wide")
                .caller("spiffe://example.org/**")
                .unwrap(),
        );
    let policy = builder.build().unwrap();
    let caller = SpiffeId::new("spiffe://example.org/ns/prod/sa/x").unwrap();

    let http = Request::new(Some(&caller), "GET", "/svc-4242/items/7");
    let decision = policy.evaluate(&http);
    assert_eq!(decision.rule_id.as_deref(), Some("svc-4242"));
    // Tried: the rule on this route, and the two that apply to any route.
    assert_eq!(policy.inner.index.tried(&http), 3);

    let with_route =
        Request::new(Some(&caller), "GET", "/svc-17/items/7").with_route("/svc-9/items/{id}");
    assert_eq!(
        policy.evaluate(&with_route).rule_id.as_deref(),
        Some("svc-9"),
        "the route template is looked up as well as the path"
    );
    assert_eq!(policy.inner.index.tried(&with_route), 4);

    let grpc =
        Request::new(Some(&caller), "POST", "/pkg.Svc77/Get").with_grpc_method("/pkg.Svc77/Get");
    assert_eq!(policy.evaluate(&grpc).rule_id.as_deref(), Some("svc-77"));
    assert_eq!(policy.inner.index.tried(&grpc), 3);

    // A route no rule names falls through to the rules for any route.
    let other = Request::new(Some(&caller), "GET", "/nothing/here");
    assert_eq!(
        policy.evaluate(&other).rule_id.as_deref(),
        Some("partner-wide")
    );
    assert_eq!(policy.inner.index.tried(&other), 2);
}
