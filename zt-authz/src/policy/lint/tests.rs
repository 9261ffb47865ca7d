//! Unit tests of the policy linter.

use super::*;
use crate::policy::Rule;

const BILLING: &str = "spiffe://example.org/ns/prod/sa/billing";

fn lint(rules: impl IntoIterator<Item = Rule>) -> Vec<(LintKind, String, String)> {
    Policy::builder()
        .rules(rules)
        .build()
        .unwrap()
        .lint()
        .into_iter()
        .map(|w| (w.kind, w.rule_id.to_string(), w.other_rule_id.to_string()))
        .collect()
}

fn shadowed(rule: &str, by: &str) -> (LintKind, String, String) {
    (LintKind::Shadowed, rule.into(), by.into())
}

fn never_allows(rule: &str, by: &str) -> (LintKind, String, String) {
    (LintKind::NeverAllows, rule.into(), by.into())
}

fn allow(id: &str, caller: Option<&str>, method: &str, path: &str) -> Rule {
    let rule = Rule::allow(id);
    let rule = match caller {
        Some(c) => rule.caller(c).unwrap(),
        None => rule,
    };
    rule.http(method, path).unwrap()
}

fn deny(id: &str, caller: Option<&str>, method: &str, path: &str) -> Rule {
    let rule = Rule::deny(id);
    let rule = match caller {
        Some(c) => rule.caller(c).unwrap(),
        None => rule,
    };
    rule.http(method, path).unwrap()
}

fn id(s: &str) -> SpiffeId {
    SpiffeId::new(s).unwrap()
}

#[test]
fn allow_rule_covered_by_an_earlier_allow_rule_is_shadowed() {
    let warnings = lint([
        allow(
            "td-invoices",
            Some("spiffe://example.org/**"),
            "GET",
            "/invoices/**",
        ),
        allow("billing-invoice", Some(BILLING), "GET", "/invoices/{id}"),
    ]);
    assert_eq!(warnings, [shadowed("billing-invoice", "td-invoices")]);
}

#[test]
fn a_broader_rule_after_a_narrower_one_is_not_shadowed() {
    let warnings = lint([
        allow("billing-invoice", Some(BILLING), "GET", "/invoices/{id}"),
        allow(
            "td-invoices",
            Some("spiffe://example.org/**"),
            "GET",
            "/invoices/**",
        ),
    ]);
    assert_eq!(warnings, []);
}

#[test]
fn deny_rule_covered_by_an_earlier_deny_rule_is_shadowed() {
    let warnings = lint([
        deny("no-admin", None, "*", "/admin/**"),
        deny(
            "no-admin-deletes",
            Some(BILLING),
            "DELETE",
            "/admin/users/{id}",
        ),
    ]);
    assert_eq!(warnings, [shadowed("no-admin-deletes", "no-admin")]);
}

#[test]
fn allow_rule_covered_by_a_deny_rule_anywhere_never_allows() {
    let warnings = lint([
        allow("billing-admin", Some(BILLING), "GET", "/admin/users"),
        deny(
            "no-admin",
            Some("spiffe://example.org/ns/prod/**"),
            "*",
            "/admin/**",
        ),
    ]);
    assert_eq!(warnings, [never_allows("billing-admin", "no-admin")]);
}

#[test]
fn a_rule_is_reported_once_and_never_allows_comes_first() {
    let warnings = lint([
        allow("all", None, "*", "/**"),
        allow("billing", Some(BILLING), "GET", "/x"),
        deny("no-x", None, "GET", "/x"),
    ]);
    assert_eq!(warnings, [never_allows("billing", "no-x")]);
}

#[test]
fn partial_overlaps_do_not_warn() {
    let warnings = lint([
        // Deny covers only DELETE; allow covers every method.
        deny("no-admin-deletes", None, "DELETE", "/admin/**"),
        allow("billing-admin", Some(BILLING), "*", "/admin/**"),
        // Other callers.
        deny(
            "no-partner",
            Some("spiffe://partner.example/**"),
            "*",
            "/**",
        ),
        allow("billing-reports", Some(BILLING), "GET", "/reports/**"),
        // One action covered, one not.
        allow("billing-some", Some(BILLING), "GET", "/admin/x")
            .http("GET", "/elsewhere")
            .unwrap(),
        // One caller covered, one not.
        allow("both", Some(BILLING), "GET", "/reports/**")
            .caller("spiffe://other.example/x")
            .unwrap(),
    ]);
    assert_eq!(warnings, []);
}

#[test]
fn path_template_segment_covers_a_literal_but_not_other_lengths() {
    let base = || allow("one-invoice", Some(BILLING), "GET", "/invoices/{id}");
    assert_eq!(
        lint([
            base(),
            allow("invoice-42", Some(BILLING), "GET", "/invoices/42")
        ]),
        [shadowed("invoice-42", "one-invoice")]
    );
    for path in ["/invoices", "/invoices/42/lines", "/invoices/**", "/"] {
        assert_eq!(
            lint([base(), allow("other", Some(BILLING), "GET", path)]),
            [],
            "{path}"
        );
    }
    // A literal does not cover a template.
    assert_eq!(
        lint([
            allow("invoice-42", Some(BILLING), "GET", "/invoices/42"),
            allow("one-invoice", Some(BILLING), "GET", "/invoices/{id}"),
        ]),
        []
    );
}

#[test]
fn double_star_covers_its_base_and_everything_below() {
    let base = || deny("no-admin", None, "*", "/admin/**");
    for path in ["/admin", "/admin/users/{id}", "/admin/a/**", "/admin/*/x"] {
        assert_eq!(
            lint([base(), deny("more", None, "GET", path)]),
            [shadowed("more", "no-admin")],
            "{path}"
        );
    }
    for path in ["/administrator", "/", "/**", "/{x}/**"] {
        assert_eq!(
            lint([base(), deny("more", None, "GET", path)]),
            [],
            "{path}"
        );
    }
    let all = || deny("all", None, "*", "/**");
    for path in ["/", "/a", "/{x}/**", "/**"] {
        assert_eq!(
            lint([all(), deny("more", None, "POST", path)]),
            [shadowed("more", "all")],
            "{path}"
        );
    }
}

#[test]
fn any_method_covers_one_but_not_the_reverse() {
    assert_eq!(
        lint([
            deny("a", None, "*", "/x"),
            deny("b", None, "GET", "/x"),
            deny("c", None, "POST", "/x"),
        ]),
        [shadowed("b", "a"), shadowed("c", "a")]
    );
    assert_eq!(
        lint([deny("a", None, "GET", "/x"), deny("b", None, "*", "/x")]),
        []
    );
    assert_eq!(
        lint([deny("a", None, "GET", "/x"), deny("b", None, "POST", "/x")]),
        []
    );
}

#[test]
fn rule_without_actions_covers_everything_and_only_it_covers_one() {
    assert_eq!(
        lint([
            Rule::deny("everything").caller(BILLING).unwrap(),
            deny("http", Some(BILLING), "GET", "/x"),
            Rule::deny("grpc")
                .caller(BILLING)
                .unwrap()
                .grpc("/a.B/C")
                .unwrap(),
        ]),
        [
            shadowed("http", "everything"),
            shadowed("grpc", "everything")
        ]
    );
    // `* /**` misses requests whose path does not start with `/`.
    assert_eq!(
        lint([
            deny("all-http", None, "*", "/**"),
            Rule::deny("everything").caller(BILLING).unwrap(),
        ]),
        []
    );
}

#[test]
fn http_actions_never_cover_grpc_actions_nor_the_reverse() {
    assert_eq!(
        lint([
            deny("all-http", None, "*", "/**"),
            Rule::allow("grpc").grpc("/billing.Billing/Get").unwrap(),
        ]),
        []
    );
    assert_eq!(
        lint([
            Rule::deny("grpc").grpc("/billing.Billing/*").unwrap(),
            allow("post", None, "POST", "/billing.Billing/Get"),
        ]),
        []
    );
}

#[test]
fn service_wide_grpc_pattern_covers_its_methods_only() {
    let service = || Rule::deny("billing").grpc("/billing.Billing/*").unwrap();
    assert_eq!(
        lint([
            service(),
            Rule::deny("get").grpc("/billing.Billing/Get").unwrap(),
            Rule::deny("same").grpc("/billing.Billing/*").unwrap(),
        ]),
        [shadowed("get", "billing"), shadowed("same", "billing")]
    );
    assert_eq!(
        lint([
            service(),
            Rule::deny("other").grpc("/billing.Billing2/Get").unwrap(),
            Rule::deny("nested")
                .grpc("/billing.Billing.V2/Get")
                .unwrap(),
        ]),
        []
    );
    assert_eq!(
        lint([
            Rule::deny("get").grpc("/billing.Billing/Get").unwrap(),
            service(),
        ]),
        []
    );
}

#[test]
fn trust_domain_covers_ids_prefixes_and_globs_in_it_but_not_its_own_id() {
    let td = || deny("td", Some("spiffe://example.org/**"), "GET", "/x");
    for caller in [
        BILLING,
        "spiffe://example.org/ns/prod/**",
        "spiffe://example.org/ns/*/sa/billing",
        "spiffe://example.org/**",
    ] {
        assert_eq!(
            lint([td(), deny("more", Some(caller), "GET", "/x")]),
            [shadowed("more", "td")],
            "{caller}"
        );
    }
    for caller in ["spiffe://other.org/a", "spiffe://other.org/**"] {
        assert_eq!(
            lint([td(), deny("more", Some(caller), "GET", "/x")]),
            [],
            "{caller}"
        );
    }
    let own_id = Rule::deny("own")
        .caller_matcher(IdMatcher::exact(id("spiffe://example.org")))
        .http("GET", "/x")
        .unwrap();
    assert_eq!(lint([td(), own_id]), []);
}

#[test]
fn prefix_covers_ids_and_prefixes_strictly_below_it() {
    let prefix = || deny("prod", Some("spiffe://example.org/ns/prod/**"), "GET", "/x");
    for caller in [
        BILLING,
        "spiffe://example.org/ns/prod/sa",
        "spiffe://example.org/ns/prod/sa/**",
        "spiffe://example.org/ns/prod/**",
        "spiffe://example.org/ns/prod/*",
        "spiffe://example.org/ns/prod/*/x/**",
    ] {
        assert_eq!(
            lint([prefix(), deny("more", Some(caller), "GET", "/x")]),
            [shadowed("more", "prod")],
            "{caller}"
        );
    }
    for caller in [
        "spiffe://example.org/ns/prod",
        "spiffe://example.org/ns/production/sa",
        "spiffe://example.org/ns/**",
        "spiffe://example.org/ns/*/sa/billing",
        "spiffe://other.org/ns/prod/sa",
    ] {
        assert_eq!(
            lint([prefix(), deny("more", Some(caller), "GET", "/x")]),
            [],
            "{caller}"
        );
    }
}

#[test]
fn globs_cover_what_they_match_segment_by_segment() {
    let glob = || deny("glob", Some("spiffe://example.org/ns/*/sa/**"), "GET", "/x");
    for caller in [
        BILLING,
        "spiffe://example.org/ns/prod/sa/**",
        "spiffe://example.org/ns/*/sa/*",
    ] {
        assert_eq!(
            lint([glob(), deny("more", Some(caller), "GET", "/x")]),
            [shadowed("more", "glob")],
            "{caller}"
        );
    }
    for caller in [
        "spiffe://example.org/ns/prod/sa",
        "spiffe://example.org/ns/**",
        "spiffe://example.org/ns/prod/**",
    ] {
        assert_eq!(
            lint([glob(), deny("more", Some(caller), "GET", "/x")]),
            [],
            "{caller}"
        );
    }
}

#[test]
fn sets_of_ids_are_compared_element_by_element() {
    let ids = |n: usize| {
        IdMatcher::one_of(
            ["a", "b", "c"]
                .iter()
                .take(n)
                .map(|s| id(&format!("spiffe://example.org/{s}"))),
        )
    };
    let rule = |name: &str, n: usize| {
        Rule::deny(name)
            .caller_matcher(ids(n))
            .http("GET", "/x")
            .unwrap()
    };
    assert_eq!(
        lint([rule("three", 3), rule("two", 2)]),
        [shadowed("two", "three")]
    );
    assert_eq!(lint([rule("two", 2), rule("three", 3)]), []);
    // Alternatives of several kinds: each one must be covered.
    let mixed = Rule::deny("mixed")
        .caller("spiffe://example.org/a")
        .unwrap()
        .caller("spiffe://example.org/z/**")
        .unwrap()
        .http("GET", "/x")
        .unwrap();
    let wide = Rule::deny("wide")
        .caller_matcher(IdMatcher::any_of([
            IdMatcher::parse("spiffe://example.org/a").unwrap(),
            IdMatcher::parse("spiffe://example.org/z/**").unwrap(),
            IdMatcher::parse("spiffe://example.org/q").unwrap(),
        ]))
        .http("*", "/**")
        .unwrap();
    assert_eq!(
        lint([wide.clone(), mixed.clone()]),
        [shadowed("mixed", "wide")]
    );
    assert_eq!(lint([mixed, wide]), []);
}

#[test]
fn closures_are_never_certain_but_any_caller_covers_them() {
    let closure = |name: &str| {
        Rule::deny(name)
            .caller_matcher(IdMatcher::from_fn("everyone", |_: &SpiffeId| true))
            .http("GET", "/x")
            .unwrap()
    };
    assert_eq!(lint([closure("a"), closure("b")]), []);
    assert_eq!(
        lint([closure("a"), deny("b", Some(BILLING), "GET", "/x")]),
        []
    );
    assert_eq!(
        lint([deny("any", None, "GET", "/x"), closure("a")]),
        [shadowed("a", "any")]
    );
}

#[test]
fn audit_rules_are_not_checked_and_do_not_shadow() {
    let audit = |name: &str| Rule::audit(name).http("GET", "/x").unwrap();
    assert_eq!(
        lint([
            audit("a"),
            audit("b"),
            allow("allow", None, "GET", "/x"),
            deny("deny", None, "*", "/**"),
            audit("c"),
        ]),
        [never_allows("allow", "deny")]
    );
}

#[test]
fn warnings_name_both_rules_with_file_lines() {
    let policy = Policy::from_toml_str(
        r#"
[[rule]]
id = "td"
effect = "allow"
callers = ["spiffe://example.org/**"]

[[rule]]
id = "billing"
effect = "allow"
callers = ["spiffe://example.org/ns/prod/sa/billing"]
http = [{ method = "GET", path = "/invoices/{id}" }]
"#,
        "policy.toml",
    )
    .unwrap();
    let warnings = policy.lint();
    assert_eq!(warnings.len(), 1);
    let w = &warnings[0];
    assert_eq!(w.origin.line(), Some(8));
    assert_eq!(w.other_origin.line(), Some(3));
    let text = w.to_string();
    assert!(text.starts_with("policy.toml:8:"), "{text}");
    assert!(
        text.contains("`billing`") && text.contains("`td` (policy.toml:3:"),
        "{text}"
    );
}

/// Every warning is a certainty: over a grid of rules and requests, the
/// covering rule matches every sample request the covered rule matches.
#[test]
fn every_warning_holds_for_every_sample_request() {
    use crate::policy::{PolicyEngine as _, Request};

    let callers = [
        None,
        Some("spiffe://example.org/**"),
        Some("spiffe://example.org/ns/prod/**"),
        Some("spiffe://example.org/ns/*/sa/**"),
        Some("spiffe://example.org/ns/*/sa/billing"),
        Some("spiffe://example.org/ns/prod/*"),
        Some(BILLING),
        Some("spiffe://example.org/ns/prod/sa"),
        Some("spiffe://other.org/**"),
    ];
    let actions: [&[(&str, &str)]; 16] = [
        &[],
        &[("*", "/**")],
        &[("GET", "/**")],
        &[("*", "/")],
        &[("*", "/a/**")],
        &[("GET", "/a/**")],
        &[("GET", "/a/{id}")],
        &[("GET", "/a/*/c")],
        &[("GET", "/a/b")],
        &[("GET", "/a")],
        &[("POST", "/{x}/**")],
        &[("GET", "/a/b"), ("POST", "/a/b")],
        &[("grpc", "/p.S/*")],
        &[("grpc", "/p.S/M")],
        &[("grpc", "/p.S/M"), ("GET", "/a")],
        &[("POST", "/p.S/M")],
    ];
    let rule = |name: &str, caller: Option<&str>, actions: &[(&str, &str)]| {
        let mut rule = Rule::deny(name);
        if let Some(c) = caller {
            rule = rule.caller(c).unwrap();
        }
        for (method, path) in actions {
            rule = if *method == "grpc" {
                rule.grpc(path).unwrap()
            } else {
                rule.http(method, path).unwrap()
            };
        }
        rule
    };
    let specs: Vec<_> = callers
        .iter()
        .flat_map(|c| actions.iter().map(move |a| (*c, *a)))
        .collect();

    let ids: Vec<SpiffeId> = [
        BILLING,
        "spiffe://example.org/ns/prod/sa",
        "spiffe://example.org/ns/prod",
        "spiffe://example.org/ns/dev/sa/billing",
        "spiffe://example.org/ns/dev/sa/x/y",
        "spiffe://example.org/a",
        "spiffe://example.org",
        "spiffe://other.org/ns/prod/sa/billing",
    ]
    .iter()
    .map(|s| id(s))
    .collect();
    let mut requests: Vec<(&str, &str, Option<&str>, Option<&str>)> = Vec::new();
    for method in ["GET", "POST"] {
        for path in [
            "/", "/a", "/a/", "/a/b", "/a/b/c", "/a/x/c", "/b", "", "/p.S/M",
        ] {
            requests.push((method, path, None, None));
        }
        for route in ["/a/{id}", "/a/{*rest}"] {
            requests.push((method, "/zz", Some(route), None));
        }
    }
    for grpc in ["/p.S/M", "/p.S/N", "/q.S/M"] {
        requests.push(("POST", grpc, None, Some(grpc)));
        requests.push(("POST", "/other", None, Some(grpc)));
    }
    let matched: Vec<Vec<bool>> = specs
        .iter()
        .map(|(c, a)| {
            let policy = Policy::builder().rule(rule("r", *c, a)).build().unwrap();
            ids.iter()
                .flat_map(|caller| requests.iter().map(move |r| (caller, r)))
                .map(|(caller, (method, path, route, grpc))| {
                    let mut request = Request::new(Some(caller), method, path);
                    if let Some(route) = route {
                        request = request.with_route(route);
                    }
                    if let Some(grpc) = grpc {
                        request = request.with_grpc_method(grpc);
                    }
                    policy.evaluate(&request).reason == crate::policy::DecisionReason::MatchedDeny
                })
                .collect()
        })
        .collect();

    let mut warned = 0;
    for (i, (ca, aa)) in specs.iter().enumerate() {
        for (j, (cb, ab)) in specs.iter().enumerate() {
            if i == j {
                continue;
            }
            let policy = Policy::builder()
                .rule(rule("a", *ca, aa))
                .rule(rule("b", *cb, ab))
                .build()
                .unwrap();
            for w in policy.lint() {
                warned += 1;
                assert_eq!(&*w.rule_id, "b");
                let covered = matched[i].iter().zip(&matched[j]).all(|(a, b)| *a || !*b);
                assert!(covered, "{ca:?} {aa:?} does not cover {cb:?} {ab:?}");
            }
        }
    }
    assert!(warned > 1000, "{warned}");
}

#[test]
fn lint_of_many_exact_id_rules_compares_only_candidates() {
    // 50 000 rules naming distinct IDs: a pairwise comparison would make
    // over a billion comparisons; the index keeps it linear.
    let rules = (0..50_000).map(|i| {
        Rule::allow(format!("r{i}"))
            .caller(&format!("spiffe://example.org/w/{i}"))
            .unwrap()
            .http("GET", "/x")
            .unwrap()
    });
    let extra = allow("dup", Some("spiffe://example.org/w/7"), "GET", "/x");
    assert_eq!(lint(rules.chain([extra])), [shadowed("dup", "r7")]);
}
