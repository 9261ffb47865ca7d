//! Endpoint declarations in code, alone and combined with a policy: the
//! combination rule (both must allow, a denial anywhere wins), build errors
//! and the exported effective policy.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use zt_authz::policy::declare::{Declarations, Declared, EndpointSpec};
use zt_authz::policy::{
    Decision, DecisionReason, Policy, PolicyEngine, PolicyError, PolicyStore, Request, Rule,
};
use zt_core::SpiffeId;

const BILLING: &str = "spiffe://example.org/billing";
const ORDERS: &str = "spiffe://example.org/orders";
const PARTNER: &str = "spiffe://partner.example/sync";

struct Invoices;
impl Declared for Invoices {
    const ENDPOINTS: &'static [EndpointSpec] = &[
        EndpointSpec::http(
            "get_invoice",
            "GET",
            "/invoices/{id}",
            &[BILLING],
            &["partner.example"],
            file!(),
            line!(),
        ),
        EndpointSpec::grpc(
            "Ledger::append",
            "ledger.Ledger",
            "Append",
            &["spiffe://example.org/*"],
            &[],
            file!(),
            line!(),
        ),
    ];
}

/// A gRPC service implemented with one method left undeclared.
struct PartlyDeclared;
impl Declared for PartlyDeclared {
    const ENDPOINTS: &'static [EndpointSpec] = &[
        EndpointSpec::grpc(
            "Svc::get",
            "pkg.Svc",
            "Get",
            &[BILLING],
            &[],
            file!(),
            line!(),
        ),
        EndpointSpec::undeclared_grpc("Svc::put", "pkg.Svc", "Put", file!(), line!()),
    ];
}

fn id(s: &str) -> SpiffeId {
    SpiffeId::new(s).unwrap()
}

fn get_invoice<'a>(caller: &'a SpiffeId) -> Request<'a> {
    Request::new(Some(caller), "GET", "/invoices/7").with_route("/invoices/{id}")
}

fn declarations() -> Declarations {
    Declarations::builder().add::<Invoices>().build().unwrap()
}

fn assert_decision(d: &Decision, allowed: bool, reason: DecisionReason, rule: Option<&str>) {
    assert_eq!(d.allowed, allowed, "{d:?}");
    assert_eq!(d.reason, reason, "{d:?}");
    assert_eq!(d.rule_id.as_deref(), rule, "{d:?}");
}

#[test]
fn declarations_alone_allow_declared_callers_and_deny_the_rest() {
    let code = declarations();
    let billing = id(BILLING);
    let partner = id(PARTNER);
    let orders = id(ORDERS);
    assert_decision(
        &code.evaluate(&get_invoice(&billing)),
        true,
        DecisionReason::MatchedAllow,
        Some("code:get_invoice"),
    );
    // Through `trust_domain = "partner.example"`.
    assert!(code.evaluate(&get_invoice(&partner)).allowed);
    assert_decision(
        &code.evaluate(&get_invoice(&orders)),
        false,
        DecisionReason::CallerNotDeclared,
        Some("code:get_invoice"),
    );
    // The raw path matches the declared pattern too.
    assert!(
        code.evaluate(&Request::new(Some(&billing), "GET", "/invoices/9"))
            .allowed
    );
    // Another method on the same path is not this endpoint.
    assert_decision(
        &code.evaluate(&Request::new(Some(&billing), "DELETE", "/invoices/9")),
        false,
        DecisionReason::NoMatchingRule,
        None,
    );
    // gRPC: `spiffe://example.org/*` admits orders, not the partner.
    let append = |c| {
        Request::new(Some(c), "POST", "/ledger.Ledger/Append")
            .with_grpc_method("/ledger.Ledger/Append")
    };
    assert_decision(
        &code.evaluate(&append(&orders)),
        true,
        DecisionReason::MatchedAllow,
        Some("code:Ledger::append"),
    );
    assert_decision(
        &code.evaluate(&append(&partner)),
        false,
        DecisionReason::CallerNotDeclared,
        Some("code:Ledger::append"),
    );
    assert_decision(
        &code.evaluate(&Request::new(None, "GET", "/invoices/7")),
        false,
        DecisionReason::Unauthenticated,
        None,
    );
    assert!(code.version().starts_with("code-"));
    assert_eq!(code.version().len(), "code-".len() + 12);
}

/// The combination table: code verdict × policy verdict.
#[test]
fn combined_both_must_allow_and_a_denial_anywhere_wins() {
    let policy = Policy::builder()
        .version("file-1")
        .rule(
            Rule::deny("no-partner-invoices")
                .caller("spiffe://partner.example/**")
                .unwrap()
                .http("*", "/invoices/**")
                .unwrap(),
        )
        .rule(
            Rule::allow("mesh")
                .caller("spiffe://example.org/**")
                .unwrap(),
        )
        .rule(
            Rule::allow("partner-health")
                .caller("spiffe://partner.example/**")
                .unwrap()
                .http("GET", "/health")
                .unwrap(),
        )
        .build()
        .unwrap();
    let engine = declarations().with_policy(policy);
    let billing = id(BILLING);
    let orders = id(ORDERS);
    let partner = id(PARTNER);
    let version = engine.version();
    assert!(version.starts_with("file-1+code-"), "{version}");

    // Code allows, file allows: allowed, naming the file's rule.
    let d = engine.evaluate(&get_invoice(&billing));
    assert_decision(&d, true, DecisionReason::MatchedAllow, Some("mesh"));
    assert_eq!(d.policy_version, version);
    // Code allows (partner.example is declared), file denies: the file wins.
    assert_decision(
        &engine.evaluate(&get_invoice(&partner)),
        false,
        DecisionReason::MatchedDeny,
        Some("no-partner-invoices"),
    );
    // Code denies, file allows (orders is in the mesh): the code wins.
    let d = engine.evaluate(&get_invoice(&orders));
    assert_decision(
        &d,
        false,
        DecisionReason::CallerNotDeclared,
        Some("code:get_invoice"),
    );
    assert_eq!(d.policy_version, version);
    // Not declared in code: the file alone decides, both ways.
    assert_decision(
        &engine.evaluate(&Request::new(Some(&partner), "GET", "/health")),
        true,
        DecisionReason::MatchedAllow,
        Some("partner-health"),
    );
    assert_decision(
        &engine.evaluate(&Request::new(Some(&partner), "GET", "/other")),
        false,
        DecisionReason::NoMatchingRule,
        None,
    );
    // No caller: unauthenticated, whatever the code declares.
    assert_decision(
        &engine.evaluate(&Request::new(None, "GET", "/invoices/7")),
        false,
        DecisionReason::Unauthenticated,
        None,
    );
}

#[test]
fn require_declared_refuses_what_no_declaration_covers() {
    let policy = Policy::builder()
        .rule(
            Rule::allow("everyone")
                .caller("spiffe://example.org/**")
                .unwrap(),
        )
        .build()
        .unwrap();
    let code = Declarations::builder()
        .add::<Invoices>()
        .require_declared(true)
        .build()
        .unwrap();
    assert!(code.requires_declared());
    let engine = code.with_policy(policy);
    let billing = id(BILLING);
    assert!(engine.evaluate(&get_invoice(&billing)).allowed);
    assert_decision(
        &engine.evaluate(&Request::new(Some(&billing), "GET", "/health")),
        false,
        DecisionReason::Undeclared,
        None,
    );
    assert_eq!(DecisionReason::Undeclared.as_str(), "undeclared-endpoint");
    assert_eq!(
        DecisionReason::CallerNotDeclared.as_str(),
        "caller-not-declared"
    );
}

#[test]
fn require_declared_refuses_to_build_with_an_undeclared_method() {
    // Without the requirement the undeclared method is listed, not enforced.
    let lenient = Declarations::builder()
        .add::<PartlyDeclared>()
        .build()
        .unwrap();
    assert_eq!(lenient.undeclared().len(), 1);
    assert_eq!(lenient.undeclared()[0].name(), "Svc::put");
    assert_eq!(lenient.rules().count(), 1);

    let err = Declarations::builder()
        .add::<PartlyDeclared>()
        .require_declared(true)
        .build()
        .unwrap_err();
    assert!(
        matches!(err, PolicyError::UndeclaredEndpoints { ref endpoints, .. } if endpoints.len() == 1)
    );
    let message = err.to_string();
    assert!(
        message.contains("Svc::put (zt-authz/tests/declarations.rs:"),
        "{message}"
    );
    assert!(message.contains("declare no required callers"), "{message}");
}

#[test]
fn overlapping_declarations_must_all_accept_the_caller() {
    struct Overlap;
    impl Declared for Overlap {
        const ENDPOINTS: &'static [EndpointSpec] = &[
            EndpointSpec::http(
                "all_admin",
                "*",
                "/admin/**",
                &[BILLING, ORDERS],
                &[],
                file!(),
                line!(),
            ),
            EndpointSpec::http(
                "reset",
                "POST",
                "/admin/reset",
                &[BILLING],
                &[],
                file!(),
                line!(),
            ),
        ];
    }
    let code = Declarations::builder().add::<Overlap>().build().unwrap();
    let (billing, orders) = (id(BILLING), id(ORDERS));
    let reset = |c| Request::new(Some(c), "POST", "/admin/reset");
    assert!(code.evaluate(&reset(&billing)).allowed);
    assert_decision(
        &code.evaluate(&reset(&orders)),
        false,
        DecisionReason::CallerNotDeclared,
        Some("code:reset"),
    );
    assert!(
        code.evaluate(&Request::new(Some(&orders), "GET", "/admin/users"))
            .allowed
    );
}

#[test]
fn bad_declarations_are_typed_errors_with_their_source_line() {
    fn build(spec: EndpointSpec) -> PolicyError {
        Declarations::builder().specs(&[spec]).build().unwrap_err()
    }
    let err = build(EndpointSpec::http(
        "a",
        "GET",
        "/a",
        &["spiffe://Example.org/x"],
        &[],
        "src/api.rs",
        12,
    ));
    assert!(matches!(err, PolicyError::BadCaller { .. }), "{err:?}");
    assert_eq!(err.origin().to_string(), "src/api.rs:12");
    assert_eq!(err.rule_id(), Some("code:a"));

    let err = build(EndpointSpec::http(
        "a",
        "GET",
        "/a",
        &[],
        &["Bad.Domain"],
        "src/api.rs",
        3,
    ));
    assert!(matches!(err, PolicyError::BadTrustDomain { .. }), "{err:?}");

    let err = build(EndpointSpec::http(
        "a",
        "GET",
        "/a",
        &[],
        &[],
        "src/api.rs",
        4,
    ));
    assert!(matches!(err, PolicyError::NoCallers { .. }), "{err:?}");
    assert!(err.to_string().contains("declares no callers"), "{err}");

    let err = build(EndpointSpec::http(
        "a",
        "get",
        "/a",
        &[BILLING],
        &[],
        "src/api.rs",
        5,
    ));
    assert!(matches!(err, PolicyError::BadMethod { .. }), "{err:?}");
    let err = build(EndpointSpec::http(
        "a",
        "GET",
        "a",
        &[BILLING],
        &[],
        "src/api.rs",
        5,
    ));
    assert!(matches!(err, PolicyError::BadPath { .. }), "{err:?}");
    let err = build(EndpointSpec::grpc(
        "a",
        "pkg.Svc",
        "",
        &[BILLING],
        &[],
        "src/api.rs",
        5,
    ));
    assert!(matches!(err, PolicyError::BadGrpcMethod { .. }), "{err:?}");

    // The same endpoint declared twice, under two names.
    let err = Declarations::builder()
        .specs(&[
            EndpointSpec::http("a", "GET", "/x", &[BILLING], &[], "src/a.rs", 1),
            EndpointSpec::http("b", "GET", "/x", &[ORDERS], &[], "src/b.rs", 2),
        ])
        .build()
        .unwrap_err();
    assert!(
        matches!(err, PolicyError::DuplicateEndpoint { .. }),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "src/b.rs:2: `GET /x` is already declared at src/a.rs:1; declare each endpoint's callers in one place"
    );
    // Two endpoints with one name.
    let err = Declarations::builder()
        .specs(&[
            EndpointSpec::http("a", "GET", "/x", &[BILLING], &[], "src/a.rs", 1),
            EndpointSpec::http("a", "GET", "/y", &[BILLING], &[], "src/a.rs", 9),
        ])
        .build()
        .unwrap_err();
    assert!(
        matches!(err, PolicyError::DuplicateRuleId { .. }),
        "{err:?}"
    );
}

#[test]
fn the_combined_version_follows_policy_reloads() {
    let store = PolicyStore::new(
        Policy::builder()
            .version("v1")
            .rule(
                Rule::allow("mesh")
                    .caller("spiffe://example.org/**")
                    .unwrap(),
            )
            .build()
            .unwrap(),
    );
    let engine = declarations().with_policy(store.clone());
    let code_version = engine.declarations().version().to_owned();
    let billing = id(BILLING);
    assert_eq!(
        &*engine.evaluate(&get_invoice(&billing)).policy_version,
        format!("v1+{code_version}")
    );
    store.replace(
        Policy::builder()
            .version("v2")
            .rule(Rule::deny("closed"))
            .build()
            .unwrap(),
    );
    let d = engine.evaluate(&get_invoice(&billing));
    assert_decision(&d, false, DecisionReason::MatchedDeny, Some("closed"));
    assert_eq!(&*d.policy_version, format!("v2+{code_version}"));
    assert_eq!(&*engine.version(), format!("v2+{code_version}"));
    // Different declarations, different code version.
    let other = Declarations::builder()
        .add::<PartlyDeclared>()
        .build()
        .unwrap();
    assert_ne!(other.version(), code_version);
}

#[test]
fn export_lists_declarations_with_their_source_and_the_rules() {
    let policy = Policy::from_toml_str(
        r#"
        version = "ops-7"
        [[rule]]
        id = "mesh"
        effect = "allow"
        callers = ["spiffe://example.org/**"]
        "#,
        "policy.toml",
    )
    .unwrap();
    let engine = Declarations::builder()
        .add::<Invoices>()
        .add::<PartlyDeclared>()
        .build()
        .unwrap()
        .with_policy(policy);
    let text = engine.export();
    let code_version = engine.declarations().version();
    assert!(
        text.contains(&format!("version = \"ops-7+{code_version}\"")),
        "{text}"
    );
    assert!(
        text.contains(
            "[[declared]]\nid = \"code:get_invoice\"\nsource = \"zt-authz/tests/declarations.rs:"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "callers = [\"spiffe://example.org/billing\", \"spiffe://partner.example/**\"]\nhttp = [{ method = \"GET\", path = \"/invoices/{id}\" }]\n"
        ),
        "{text}"
    );
    assert!(text.contains("id = \"code:Ledger::append\""), "{text}");
    assert!(
        text.contains("grpc = [\"/ledger.Ledger/Append\"]"),
        "{text}"
    );
    assert!(
        text.contains(
            "# implemented without declared callers: Svc::put at zt-authz/tests/declarations.rs:"
        ),
        "{text}"
    );
    assert!(
        text.contains("[[rule]]\nid = \"mesh\"\neffect = \"allow\"\n# from policy.toml:4:14\ncallers = [\"spiffe://example.org/**\"]\n"),
        "{text}"
    );
    // The rules part reads back as the same policy.
    let rules_part = &text[text.find("\n[[rule]]\n").unwrap()..];
    let reread = Policy::from_toml_str(rules_part, "export").unwrap();
    assert_eq!(reread.rules().len(), 1);
    assert_eq!(reread.rules()[0].id(), "mesh");
}

/// The coverage index finds exactly the declarations whose action matches:
/// checked against the policy engine's own matching (audit-only rules with
/// the same actions) over every pair of patterns and requests below.
#[test]
fn coverage_index_agrees_with_rule_matching() {
    const PATTERNS: &[(&str, &str)] = &[
        ("GET", "/"),
        ("GET", "/a"),
        ("*", "/a/{x}"),
        ("GET", "/a/*/c"),
        ("POST", "/a/b/c"),
        ("*", "/a/**"),
        ("GET", "/a/b/**"),
        ("*", "/**"),
        ("GET", "/{x}/b"),
        ("GET", "/x/{y}/{z}"),
        ("DELETE", "/x/y/z"),
    ];
    const GRPC: &[&str] = &["/p.S/M", "/p.S/*", "/q.T/M"];
    const PATHS: &[&str] = &[
        "/",
        "/a",
        "/a/",
        "/a/b",
        "/a/b/c",
        "/a/b/c/d",
        "/a//c",
        "/x/y/z",
        "/x/b",
        "/b",
        "/a/{x}",
        "/a/{*rest}",
        "/p.S/M",
        "/q.T/N",
        "",
        "a/b",
    ];
    let callers: Vec<String> = (0..PATTERNS.len() + GRPC.len())
        .map(|i| format!("spiffe://example.org/w{i}"))
        .collect();
    let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
    let mut specs = Vec::new();
    let mut oracle = Policy::builder();
    for (i, (method, path)) in PATTERNS.iter().enumerate() {
        let caller: &'static [&'static str] = Box::leak(Box::new([leak(callers[i].clone())]));
        specs.push(EndpointSpec::http(
            leak(format!("h{i}")),
            method,
            path,
            caller,
            &[],
            "t.rs",
            1,
        ));
        oracle = oracle.rule(
            Rule::audit(format!("code:h{i}"))
                .http(method, path)
                .unwrap(),
        );
    }
    for (j, grpc) in GRPC.iter().enumerate() {
        let i = PATTERNS.len() + j;
        let (service, method) = grpc[1..].split_once('/').unwrap();
        let caller: &'static [&'static str] = Box::leak(Box::new([leak(callers[i].clone())]));
        specs.push(EndpointSpec::grpc(
            leak(format!("g{j}")),
            service,
            method,
            caller,
            &[],
            "t.rs",
            1,
        ));
        oracle = oracle.rule(Rule::audit(format!("code:g{j}")).grpc(grpc).unwrap());
    }
    let code = Declarations::builder().specs(&specs).build().unwrap();
    let oracle = oracle.build().unwrap();

    let mut checked = 0;
    for method in ["GET", "POST", "DELETE"] {
        for path in PATHS {
            for route in [
                None,
                Some("/a/{x}"),
                Some("/a/b/c"),
                Some("/a/{*rest}"),
                Some("/x/{y}/z"),
            ] {
                for grpc in [None, Some("/p.S/M"), Some("/q.T/M"), Some("/p.S/Other")] {
                    for caller in &callers {
                        let id = id(caller);
                        let mut request = Request::new(Some(&id), method, path);
                        if let Some(route) = route {
                            request = request.with_route(route);
                        }
                        if let Some(grpc) = grpc {
                            request = request.with_grpc_method(grpc);
                        }
                        let covering = oracle.evaluate(&request).audit_only_matches;
                        let expected = match covering.first() {
                            None => (false, DecisionReason::NoMatchingRule, None),
                            Some(first) => {
                                let refusing = covering.iter().find(|rule| {
                                    let n = specs
                                        .iter()
                                        .position(|s| format!("code:{}", s.name()) == ***rule)
                                        .unwrap();
                                    specs[n].callers()[0] != caller.as_str()
                                });
                                match refusing {
                                    Some(r) => (
                                        false,
                                        DecisionReason::CallerNotDeclared,
                                        Some(r.to_string()),
                                    ),
                                    None => (
                                        true,
                                        DecisionReason::MatchedAllow,
                                        Some(first.to_string()),
                                    ),
                                }
                            }
                        };
                        let got = code.evaluate(&request);
                        assert_eq!(
                            (
                                got.allowed,
                                got.reason,
                                got.rule_id.as_deref().map(str::to_owned)
                            ),
                            expected,
                            "{request:?}"
                        );
                        checked += 1;
                    }
                }
            }
        }
    }
    assert_eq!(checked, 3 * PATHS.len() * 5 * 4 * callers.len());
}

#[test]
fn check_routes_names_every_route_without_a_declaration() {
    let code = declarations();
    assert!(code.covers_route("/invoices/{id}"));
    assert!(code.covers_route("/invoices/42"));
    assert!(!code.covers_route("/invoices"));
    assert!(!code.covers_route("/invoices/{id}/lines"));
    // A gRPC declaration does not declare an HTTP route.
    assert!(!code.covers_route("/ledger.Ledger/Append"));
    code.check_routes(["/invoices/{id}"]).unwrap();
    let err = code
        .check_routes(["/invoices/{id}", "/health", "/debug/{*rest}"])
        .unwrap_err();
    assert!(
        matches!(&err, PolicyError::UndeclaredEndpoints { endpoints, .. }
            if endpoints == &["route /health".to_owned(), "route /debug/{*rest}".to_owned()]),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "<router>: these endpoints declare no required callers: route /health, route \
         /debug/{*rest}; declare them, or turn require_declared off"
    );
}
