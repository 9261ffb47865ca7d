//! Rules that require scopes of the verified user context: in code and in
//! files, in the engine, in the linter, and refused by the Cedar
//! translation.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code"
)]

use zt_authz::policy::{
    DecisionReason, LintKind, Policy, PolicyEngine as _, PolicyError, Request, Rule,
};
use zt_core::SpiffeId;
use zt_core::user::UserContext;
use zt_dev::DevUserIssuer;

fn id(s: &str) -> SpiffeId {
    SpiffeId::new(s).unwrap()
}

fn user(scopes: &[&str]) -> UserContext {
    let issuer = DevUserIssuer::new("https://idp.example.org", "example.org").unwrap();
    let token = issuer.mint("alice", scopes).unwrap();
    issuer
        .validator()
        .unwrap()
        .validate(&token, std::time::SystemTime::now())
        .unwrap()
}

fn policy() -> Policy {
    Policy::builder()
        .rule(
            Rule::allow("billing-reads-invoices-for-users")
                .caller("spiffe://example.org/billing")
                .unwrap()
                .http("GET", "/invoices/{id}")
                .unwrap()
                .scope("invoices:read")
                .unwrap(),
        )
        .rule(
            Rule::allow("billing-writes-with-two-scopes")
                .caller("spiffe://example.org/billing")
                .unwrap()
                .http("POST", "/invoices")
                .unwrap()
                .scope("invoices:write")
                .unwrap()
                .scope("invoices:read")
                .unwrap(),
        )
        .build()
        .unwrap()
}

#[test]
fn a_rule_with_a_scope_matches_only_users_that_hold_it() {
    let policy = policy();
    let billing = id("spiffe://example.org/billing");
    let base = Request::new(Some(&billing), "GET", "/invoices/7");

    let reader = user(&["invoices:read", "profile"]);
    let decision = policy.evaluate(&base.with_user(&reader));
    assert!(decision.allowed);
    assert_eq!(
        decision.rule_id.as_deref(),
        Some("billing-reads-invoices-for-users")
    );

    let other = user(&["profile"]);
    let decision = policy.evaluate(&base.with_user(&other));
    assert_eq!(decision.reason, DecisionReason::NoMatchingRule);

    // No user context at all: the scoped rule cannot match.
    assert_eq!(
        policy.evaluate(&base).reason,
        DecisionReason::NoMatchingRule
    );
}

#[test]
fn every_required_scope_must_be_held() {
    let policy = policy();
    let billing = id("spiffe://example.org/billing");
    let post = Request::new(Some(&billing), "POST", "/invoices");
    let one = user(&["invoices:write"]);
    assert!(!policy.evaluate(&post.with_user(&one)).allowed);
    let both = user(&["invoices:write", "invoices:read"]);
    assert!(policy.evaluate(&post.with_user(&both)).allowed);
}

#[test]
fn scopes_read_from_a_file_decide_as_in_code() {
    let from_file = Policy::from_toml_str(
        r#"
        [[rule]]
        id = "billing-reads-invoices-for-users"
        effect = "allow"
        callers = ["spiffe://example.org/billing"]
        http = [{ method = "GET", path = "/invoices/{id}" }]
        scopes = ["invoices:read"]

        [[rule]]
        id = "billing-writes-with-two-scopes"
        effect = "allow"
        callers = ["spiffe://example.org/billing"]
        http = [{ method = "POST", path = "/invoices" }]
        scopes = ["invoices:read", "invoices:write"]
        "#,
        "policy.toml",
    )
    .unwrap();
    // Same rules, same content hash: scope order does not matter.
    assert_eq!(from_file.version(), policy().version());
    assert_eq!(
        from_file
            .rule("billing-writes-with-two-scopes")
            .unwrap()
            .scopes()
            .len(),
        2
    );
}

#[test]
fn scopes_change_the_content_hash() {
    let plain = Policy::builder()
        .rule(Rule::allow("r").http("GET", "/x").unwrap())
        .build()
        .unwrap();
    let scoped = Policy::builder()
        .rule(
            Rule::allow("r")
                .http("GET", "/x")
                .unwrap()
                .scope("a")
                .unwrap(),
        )
        .build()
        .unwrap();
    assert_ne!(plain.version(), scoped.version());
}

#[test]
fn a_bad_scope_is_a_typed_error_with_its_position() {
    assert!(matches!(
        Rule::allow("r").scope("has space"),
        Err(PolicyError::BadScope { scope, .. }) if scope == "has space"
    ));
    assert!(matches!(
        Rule::allow("r").scope(""),
        Err(PolicyError::BadScope { .. })
    ));
    let err = Policy::from_toml_str(
        "[[rule]]\nid = \"r\"\neffect = \"allow\"\nscopes = [\"ok\", \"not ok\"]\n",
        "policy.toml",
    )
    .unwrap_err();
    assert!(matches!(err, PolicyError::BadScope { .. }), "{err}");
    assert_eq!(err.line(), Some(4));
    assert_eq!(err.rule_id(), Some("r"));
}

#[test]
fn a_scoped_rule_does_not_shadow_an_unscoped_one() {
    let policy = Policy::builder()
        .rule(
            Rule::allow("scoped")
                .http("GET", "/invoices/**")
                .unwrap()
                .scope("invoices:read")
                .unwrap(),
        )
        .rule(Rule::allow("plain").http("GET", "/invoices/{id}").unwrap())
        .build()
        .unwrap();
    assert!(policy.lint().is_empty(), "{:?}", policy.lint());

    // A scoped deny rule does not make an unscoped allow rule dead either.
    let policy = Policy::builder()
        .rule(Rule::deny("no-guests").scope("guest").unwrap())
        .rule(Rule::allow("plain").http("GET", "/invoices/{id}").unwrap())
        .build()
        .unwrap();
    assert!(policy.lint().is_empty(), "{:?}", policy.lint());
}

#[test]
fn an_unscoped_rule_still_shadows_a_scoped_one() {
    let policy = Policy::builder()
        .rule(Rule::allow("plain").http("GET", "/invoices/**").unwrap())
        .rule(
            Rule::allow("scoped")
                .http("GET", "/invoices/{id}")
                .unwrap()
                .scope("invoices:read")
                .unwrap(),
        )
        .rule(
            Rule::deny("deny-fewer-scopes")
                .http("*", "/admin/**")
                .unwrap()
                .scope("a")
                .unwrap(),
        )
        .rule(
            Rule::allow("allow-more-scopes")
                .http("GET", "/admin/x")
                .unwrap()
                .scope("a")
                .unwrap()
                .scope("b")
                .unwrap(),
        )
        .build()
        .unwrap();
    let warnings = policy.lint();
    let found: Vec<(&str, LintKind, &str)> = warnings
        .iter()
        .map(|w| (&*w.rule_id, w.kind, &*w.other_rule_id))
        .collect();
    assert_eq!(
        found,
        [
            ("scoped", LintKind::Shadowed, "plain"),
            (
                "allow-more-scopes",
                LintKind::NeverAllows,
                "deny-fewer-scopes"
            ),
        ]
    );
}

#[cfg(feature = "cedar")]
#[test]
fn the_cedar_translation_refuses_scoped_rules() {
    use zt_authz::policy::cedar::{CedarError, CedarPolicy};
    assert!(matches!(
        CedarPolicy::from_policy(&policy()),
        Err(CedarError::Untranslatable { rule_id, .. }) if rule_id == "billing-reads-invoices-for-users"
    ));
}
