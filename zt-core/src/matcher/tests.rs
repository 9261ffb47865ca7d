use super::*;

fn id(s: &str) -> SpiffeId {
    SpiffeId::new(s).unwrap()
}

fn td(s: &str) -> TrustDomain {
    TrustDomain::new(s).unwrap()
}

fn m(pattern: &str) -> IdMatcher {
    IdMatcher::parse(pattern).unwrap()
}

fn err(pattern: &str) -> PatternError {
    IdMatcher::parse(pattern).unwrap_err()
}

#[test]
fn matcher_is_send_sync_and_cheap_to_clone() {
    fn assert_send_sync<T: Send + Sync + Clone + 'static>() {}
    assert_send_sync::<IdMatcher>();
    assert_send_sync::<PatternError>();
}

// ---- exact ----

#[test]
fn exact_pattern_matches_only_that_id() {
    let m = m("spiffe://example.org/ns/prod/sa/billing");
    assert!(matches!(m.kind(), MatcherKind::Exact(_)));
    assert!(m.matches(&id("spiffe://example.org/ns/prod/sa/billing")));
    assert!(!m.matches(&id("spiffe://example.org/ns/prod/sa/billing/x")));
    assert!(!m.matches(&id("spiffe://example.org/ns/prod/sa")));
    assert!(!m.matches(&id("spiffe://other.org/ns/prod/sa/billing")));
}

#[test]
fn exact_match_is_case_sensitive_in_the_path() {
    let m = m("spiffe://example.org/Billing");
    assert!(m.matches(&id("spiffe://example.org/Billing")));
    assert!(!m.matches(&id("spiffe://example.org/billing")));
}

#[test]
fn exact_constructor_and_from_agree_with_the_parser() {
    let a = IdMatcher::exact(id("spiffe://example.org/a"));
    let b: IdMatcher = id("spiffe://example.org/a").into();
    assert_eq!(a.to_string(), "spiffe://example.org/a");
    assert_eq!(b.to_string(), m("spiffe://example.org/a").to_string());
    assert_eq!(
        a.exact_ids().unwrap().collect::<Vec<_>>(),
        vec![&id("spiffe://example.org/a")]
    );
    assert_eq!(a.trust_domain(), Some(&td("example.org")));
}

// ---- one of ----

#[test]
fn one_of_matches_each_listed_id_and_nothing_else() {
    let m = IdMatcher::one_of([id("spiffe://a.org/x"), id("spiffe://b.org/y")]);
    assert!(m.matches(&id("spiffe://a.org/x")));
    assert!(m.matches(&id("spiffe://b.org/y")));
    assert!(!m.matches(&id("spiffe://a.org/y")));
    assert!(!m.matches(&id("spiffe://a.org/x/z")));
    let MatcherKind::OneOf(set) = m.kind() else {
        panic!("expected one-of, got {m:?}");
    };
    assert_eq!(set.len(), 2);
    assert!(set.contains(&id("spiffe://b.org/y")));
    assert_eq!(m.exact_ids().unwrap().len(), 2);
}

#[test]
fn one_of_reports_a_trust_domain_only_when_all_ids_share_it() {
    let same = IdMatcher::one_of([id("spiffe://a.org/x"), id("spiffe://a.org/y")]);
    assert_eq!(same.trust_domain(), Some(&td("a.org")));
    let mixed = IdMatcher::one_of([id("spiffe://a.org/x"), id("spiffe://b.org/y")]);
    assert_eq!(mixed.trust_domain(), None);
    let empty = IdMatcher::one_of([]);
    assert_eq!(empty.trust_domain(), None);
    assert!(!empty.matches(&id("spiffe://a.org/x")));
}

#[test]
fn one_of_strs_of_exact_ids_is_a_single_set() {
    let m = IdMatcher::one_of_strs(["spiffe://a.org/x", "spiffe://a.org/y"]).unwrap();
    assert!(matches!(m.kind(), MatcherKind::OneOf(set) if set.len() == 2));
    assert_eq!(m.to_string(), "one of [spiffe://a.org/x, spiffe://a.org/y]");
    assert!(m.matches(&id("spiffe://a.org/y")));
}

#[test]
fn one_of_strs_accepts_patterns_alongside_ids() {
    let m = IdMatcher::one_of_strs(vec![
        "spiffe://a.org/x".to_owned(),
        "spiffe://b.org/**".to_owned(),
    ])
    .unwrap();
    assert!(matches!(m.kind(), MatcherKind::AnyOf(list) if list.len() == 2));
    assert!(m.matches(&id("spiffe://a.org/x")));
    assert!(m.matches(&id("spiffe://b.org/anything/at/all")));
    assert!(!m.matches(&id("spiffe://a.org/y")));
    assert_eq!(
        m.to_string(),
        "any of [spiffe://a.org/x, spiffe://b.org/**]"
    );
    assert_eq!(m.exact_ids().map(|ids| ids.count()), None);
}

#[test]
fn one_of_strs_names_the_bad_item_and_its_position() {
    let e = IdMatcher::one_of_strs(["spiffe://a.org/x", "spiffe://a.org/x?y"]).unwrap_err();
    let PatternError::InList { index, source } = &e else {
        panic!("expected InList, got {e:?}");
    };
    assert_eq!(*index, 1);
    assert!(matches!(
        **source,
        PatternError::BadCharacter { ch: '?', .. }
    ));
    assert_eq!(e.position(), Some(16));
    assert!(e.to_string().contains("pattern 1 of the list"), "{e}");
}

#[test]
fn one_of_display_abbreviates_long_sets_unless_alternate() {
    let m = IdMatcher::one_of((0..20).map(|i| id(&format!("spiffe://a.org/w{i:02}"))));
    let short = m.to_string();
    assert!(short.starts_with("one of [spiffe://a.org/w00, spiffe://a.org/w01,"));
    assert!(short.ends_with(", … 4 more]"), "{short}");
    let long = format!("{m:#}");
    assert!(long.ends_with("spiffe://a.org/w19]"), "{long}");
}

// ---- trust domain ----

#[test]
fn trust_domain_pattern_matches_every_workload_of_that_domain() {
    let m = m("spiffe://example.org/**");
    assert!(matches!(m.kind(), MatcherKind::TrustDomain(t) if t == &td("example.org")));
    assert!(m.matches(&id("spiffe://example.org/a")));
    assert!(m.matches(&id("spiffe://example.org/a/b/c")));
    assert!(!m.matches(&id("spiffe://example.org")));
    assert!(!m.matches(&id("spiffe://other.org/a")));
    assert!(!m.matches(&id("spiffe://example.org.evil/a")));
    assert_eq!(m.trust_domain(), Some(&td("example.org")));
}

#[test]
fn trust_domain_constructor_is_the_same_as_the_pattern() {
    let m = IdMatcher::in_trust_domain(td("example.org"));
    assert_eq!(m.to_string(), "spiffe://example.org/**");
    let from: IdMatcher = td("example.org").into();
    assert!(from.matches(&id("spiffe://example.org/a")));
}

#[test]
fn trust_domain_matcher_accepts_ids_the_spiffe_crate_lowercased() {
    // A peer ID parsed leniently has a lowercase trust domain; the matcher
    // compares canonical forms.
    let m = m("spiffe://example.org/**");
    assert!(m.matches(&id("spiffe://EXAMPLE.org/a")));
}

// ---- prefix ----

#[test]
fn prefix_matches_ids_strictly_below_on_segment_boundaries() {
    let m = m("spiffe://example.org/ns/prod/**");
    let MatcherKind::Prefix { trust_domain, path } = m.kind() else {
        panic!("expected prefix, got {m:?}");
    };
    assert_eq!(trust_domain, &td("example.org"));
    assert_eq!(path, "/ns/prod");
    assert!(m.matches(&id("spiffe://example.org/ns/prod/x")));
    assert!(m.matches(&id("spiffe://example.org/ns/prod/x/y")));
}

#[test]
fn prefix_does_not_match_sibling_with_same_prefix() {
    let m = m("spiffe://example.org/ns/prod/**");
    assert!(!m.matches(&id("spiffe://example.org/ns/production")));
    assert!(!m.matches(&id("spiffe://example.org/ns/production/x")));
}

#[test]
fn prefix_does_not_match_its_base_id() {
    let m = m("spiffe://example.org/ns/prod/**");
    assert!(!m.matches(&id("spiffe://example.org/ns/prod")));
    assert!(!m.matches(&id("spiffe://example.org/ns")));
    assert!(!m.matches(&id("spiffe://other.org/ns/prod/x")));
}

#[test]
fn prefix_constructor_is_the_same_as_the_pattern() {
    let m = IdMatcher::prefix(id("spiffe://example.org/ns/prod"));
    assert_eq!(m.to_string(), "spiffe://example.org/ns/prod/**");
    assert!(m.matches(&id("spiffe://example.org/ns/prod/x")));
    assert!(!m.matches(&id("spiffe://example.org/ns/prod")));
    let root = IdMatcher::prefix(id("spiffe://example.org"));
    assert!(matches!(root.kind(), MatcherKind::TrustDomain(_)));
}

// ---- glob ----

#[test]
fn glob_star_matches_exactly_one_whole_segment() {
    let m = m("spiffe://example.org/ns/*/sa/billing");
    let MatcherKind::Glob { segments, tail, .. } = m.kind() else {
        panic!("expected glob, got {m:?}");
    };
    assert_eq!(segments.len(), 4);
    assert_eq!(segments[1], SegmentPattern::Any);
    assert!(!tail);
    assert!(m.matches(&id("spiffe://example.org/ns/prod/sa/billing")));
    assert!(m.matches(&id("spiffe://example.org/ns/dev/sa/billing")));
    assert!(!m.matches(&id("spiffe://example.org/ns/a/b/sa/billing")));
    assert!(!m.matches(&id("spiffe://example.org/ns/sa/billing")));
    assert!(!m.matches(&id("spiffe://example.org/ns/prod/sa/billing/x")));
    assert!(!m.matches(&id("spiffe://example.org/ns/prod/sa/audit")));
    assert!(!m.matches(&id("spiffe://other.org/ns/prod/sa/billing")));
    assert!(!m.matches(&id("spiffe://example.org")));
}

#[test]
fn trailing_single_star_matches_one_segment_not_deeper() {
    let m = m("spiffe://example.org/ns/prod/*");
    assert!(m.matches(&id("spiffe://example.org/ns/prod/x")));
    assert!(!m.matches(&id("spiffe://example.org/ns/prod/x/y")));
    assert!(!m.matches(&id("spiffe://example.org/ns/prod")));
    assert!(!m.matches(&id("spiffe://example.org/ns/production")));
}

#[test]
fn glob_with_double_star_tail_needs_at_least_one_more_segment() {
    let m = m("spiffe://example.org/ns/*/sa/**");
    assert!(matches!(m.kind(), MatcherKind::Glob { tail: true, .. }));
    assert!(m.matches(&id("spiffe://example.org/ns/prod/sa/billing")));
    assert!(m.matches(&id("spiffe://example.org/ns/dev/sa/a/b")));
    assert!(!m.matches(&id("spiffe://example.org/ns/prod/sa")));
    assert!(!m.matches(&id("spiffe://example.org/ns/prod/sam/x")));
}

#[test]
fn glob_of_only_stars_counts_segments() {
    let m = m("spiffe://example.org/*/*");
    assert!(m.matches(&id("spiffe://example.org/a/b")));
    assert!(!m.matches(&id("spiffe://example.org/a")));
    assert!(!m.matches(&id("spiffe://example.org/a/b/c")));
    assert_eq!(m.trust_domain(), Some(&td("example.org")));
}

// ---- closure and any-of ----

#[test]
fn closure_decides_and_its_description_is_the_display() {
    let m = IdMatcher::from_fn("IDs ending in /admin", |id: &SpiffeId| {
        id.path().ends_with("/admin")
    });
    assert!(m.matches(&id("spiffe://a.org/x/admin")));
    assert!(!m.matches(&id("spiffe://a.org/x/admins")));
    assert_eq!(m.to_string(), "IDs ending in /admin");
    assert_eq!(
        format!("{m:?}"),
        r#"IdMatcher { custom: "IDs ending in /admin" }"#
    );
    assert!(
        matches!(m.kind(), MatcherKind::Custom { description } if description == "IDs ending in /admin")
    );
    assert_eq!(m.trust_domain(), None);
    assert!(m.exact_ids().is_none());
    let clone = m.clone();
    assert!(clone.matches(&id("spiffe://b.org/admin")));
}

#[test]
fn any_of_matches_when_any_alternative_does() {
    let m = IdMatcher::any_of(vec![
        m("spiffe://a.org/ns/prod/**"),
        IdMatcher::from_fn("b.org root-level", |id: &SpiffeId| {
            id.trust_domain_name() == "b.org" && id.path().matches('/').count() == 1
        }),
    ]);
    assert!(m.matches(&id("spiffe://a.org/ns/prod/x")));
    assert!(m.matches(&id("spiffe://b.org/x")));
    assert!(!m.matches(&id("spiffe://b.org/x/y")));
    assert!(!m.matches(&id("spiffe://a.org/ns/dev/x")));
    assert_eq!(
        m.to_string(),
        "any of [spiffe://a.org/ns/prod/**, b.org root-level]"
    );
}

#[test]
fn any_of_gathers_exact_ids_and_flattens_nested_lists() {
    let inner = IdMatcher::any_of(vec![m("spiffe://a.org/x"), m("spiffe://c.org/**")]);
    let m = IdMatcher::any_of(vec![inner, m("spiffe://a.org/y"), m("spiffe://a.org/x")]);
    let MatcherKind::AnyOf(list) = m.kind() else {
        panic!("expected any-of, got {m:?}");
    };
    assert_eq!(list.len(), 2);
    assert!(matches!(list[0].kind(), MatcherKind::OneOf(set) if set.len() == 2));
    assert_eq!(
        m.to_string(),
        "any of [spiffe://a.org/x, spiffe://a.org/y, spiffe://c.org/**]"
    );
    assert_eq!(m.trust_domain(), None);
}

#[test]
fn any_of_a_single_matcher_is_that_matcher_and_empty_matches_nothing() {
    let one = IdMatcher::any_of(vec![m("spiffe://a.org/**")]);
    assert!(matches!(one.kind(), MatcherKind::TrustDomain(_)));
    let none = IdMatcher::any_of(Vec::new());
    assert!(!none.matches(&id("spiffe://a.org/x")));
}

#[test]
fn any_of_in_one_trust_domain_reports_it() {
    let m = IdMatcher::any_of(vec![m("spiffe://a.org/x/**"), m("spiffe://a.org/*/y")]);
    assert_eq!(m.trust_domain(), Some(&td("a.org")));
}

// ---- Display / Debug ----

#[test]
fn display_round_trips_every_parseable_kind() {
    for pattern in [
        "spiffe://example.org/ns/prod/sa/billing",
        "spiffe://example.org/A-b_c.d",
        "spiffe://example.org/**",
        "spiffe://example.org/ns/prod/**",
        "spiffe://example.org/ns/*/sa/billing",
        "spiffe://example.org/ns/prod/*",
        "spiffe://example.org/ns/*/sa/**",
        "spiffe://example.org/*",
        "spiffe://td_1-x.y/*/*/**",
    ] {
        let parsed = m(pattern);
        assert_eq!(parsed.to_string(), pattern);
        let again = m(&parsed.to_string());
        assert_eq!(again.to_string(), pattern);
        assert_eq!(
            format!("{:?}", again.kind()),
            format!("{:?}", parsed.kind())
        );
    }
}

#[test]
fn debug_shows_the_pattern() {
    assert_eq!(
        format!("{:?}", m("spiffe://example.org/ns/*/sa/**")),
        "IdMatcher(spiffe://example.org/ns/*/sa/**)"
    );
}

#[test]
fn from_str_and_try_from_agree_with_parse() {
    let a: IdMatcher = "spiffe://a.org/**".parse().unwrap();
    let b = IdMatcher::try_from("spiffe://a.org/**").unwrap();
    assert_eq!(a.to_string(), b.to_string());
    assert!("nope".parse::<IdMatcher>().is_err());
}

// ---- parse errors ----

#[test]
fn empty_pattern_is_rejected() {
    assert_eq!(err(""), PatternError::Empty);
    assert_eq!(err("").position(), None);
}

#[test]
fn missing_or_uppercase_scheme_is_rejected_at_position_zero() {
    for bad in [
        "example.org/a",
        "SPIFFE://example.org/a",
        "https://example.org/a",
        "spiffe:/a",
    ] {
        let e = err(bad);
        assert!(
            matches!(e, PatternError::MissingScheme { .. }),
            "{bad}: {e:?}"
        );
        assert_eq!(e.position(), Some(0));
    }
}

#[test]
fn missing_trust_domain_points_after_the_scheme() {
    let e = err("spiffe:///a");
    assert!(
        matches!(e, PatternError::MissingTrustDomain { position: 9, .. }),
        "{e:?}"
    );
}

#[test]
fn uppercase_trust_domain_is_rejected_not_normalised() {
    let e = err("spiffe://Example.org/a");
    assert_eq!(
        e,
        PatternError::UppercaseTrustDomain {
            pattern: "spiffe://Example.org/a".into(),
            position: 9,
            lowercase: "example.org".into(),
        }
    );
    assert!(e.to_string().contains("write `example.org`"), "{e}");
    let e = err("spiffe://example.ORG/**");
    assert_eq!(e.position(), Some(17));
}

#[test]
fn wildcard_port_and_userinfo_in_trust_domain_are_bad_characters() {
    for (bad, position, ch) in [
        ("spiffe://*.example.org/a", 9, '*'),
        ("spiffe://example.org:443/a", 20, ':'),
        ("spiffe://user@example.org/a", 13, '@'),
        ("spiffe://exämple.org/a", 11, 'ä'),
    ] {
        let e = err(bad);
        assert!(
            matches!(&e, PatternError::BadTrustDomain { position: p, ch: c, .. } if *p == position && *c == ch),
            "{bad}: {e:?}"
        );
    }
}

#[test]
fn pattern_without_path_is_rejected_with_a_suggestion() {
    let e = err("spiffe://example.org");
    assert_eq!(
        e,
        PatternError::MissingPath {
            pattern: "spiffe://example.org".into()
        }
    );
    assert_eq!(e.position(), Some(20));
    assert!(e.to_string().contains("`spiffe://example.org/**`"), "{e}");
}

#[test]
fn empty_segments_are_rejected_with_their_position() {
    assert_eq!(err("spiffe://td/").position(), Some(12));
    assert!(matches!(
        err("spiffe://td/"),
        PatternError::EmptySegment { .. }
    ));
    assert!(matches!(
        err("spiffe://td/a//b"),
        PatternError::EmptySegment { position: 14, .. }
    ));
    assert!(matches!(
        err("spiffe://td/a/"),
        PatternError::EmptySegment { position: 14, .. }
    ));
    assert!(matches!(
        err("spiffe://td/**/"),
        PatternError::EmptySegment { position: 15, .. }
    ));
}

#[test]
fn dot_segments_are_rejected_with_their_position() {
    assert!(matches!(
        err("spiffe://td/a/../b"),
        PatternError::DotSegment { position: 14, .. }
    ));
    assert!(matches!(
        err("spiffe://td/./b"),
        PatternError::DotSegment { position: 12, .. }
    ));
}

#[test]
fn percent_encoding_is_rejected_in_path_and_trust_domain() {
    assert_eq!(
        err("spiffe://bar/%61dmin"),
        PatternError::PercentEncoded {
            pattern: "spiffe://bar/%61dmin".into(),
            position: 13
        }
    );
    assert!(matches!(
        err("spiffe://ex%41mple.org/a"),
        PatternError::PercentEncoded { position: 11, .. }
    ));
}

#[test]
fn partial_wildcard_points_at_the_star() {
    assert!(matches!(
        err("spiffe://example.org/ns/pro*"),
        PatternError::PartialWildcard { position: 27, .. }
    ));
    assert!(matches!(
        err("spiffe://td/*a/b"),
        PatternError::PartialWildcard { position: 12, .. }
    ));
    assert!(matches!(
        err("spiffe://td/***"),
        PatternError::PartialWildcard { position: 12, .. }
    ));
    assert!(matches!(
        err("spiffe://td/a/b**"),
        PatternError::PartialWildcard { position: 15, .. }
    ));
}

#[test]
fn double_star_before_the_end_is_rejected() {
    let e = err("spiffe://td/a/**/b");
    assert_eq!(
        e,
        PatternError::DoubleStarNotLast {
            pattern: "spiffe://td/a/**/b".into(),
            position: 14
        }
    );
    assert!(matches!(
        err("spiffe://td/**/*"),
        PatternError::DoubleStarNotLast { position: 12, .. }
    ));
    assert!(
        e.to_string().contains("may only be the last segment"),
        "{e}"
    );
}

#[test]
fn query_fragment_and_whitespace_are_bad_characters() {
    for (bad, position, ch) in [
        ("spiffe://td/a?x=1", 13, '?'),
        ("spiffe://td/a#frag", 13, '#'),
        ("spiffe://td/a b", 13, ' '),
        ("spiffe://td/a/b ", 15, ' '),
        ("spiffe://td/ü", 12, 'ü'),
    ] {
        let e = err(bad);
        assert!(
            matches!(&e, PatternError::BadCharacter { position: p, ch: c, .. } if *p == position && *c == ch),
            "{bad}: {e:?}"
        );
    }
}

#[test]
fn the_first_error_from_the_left_is_reported() {
    // Uppercase trust domain comes before the partial wildcard in the path.
    assert!(matches!(
        err("spiffe://TD/pro*"),
        PatternError::UppercaseTrustDomain { position: 9, .. }
    ));
    assert!(matches!(
        err("spiffe://td/a?/pro*"),
        PatternError::BadCharacter { position: 13, .. }
    ));
}

#[test]
fn overlong_trust_domain_is_an_invalid_id() {
    let pattern = format!("spiffe://{}/a", "a".repeat(256));
    assert!(matches!(
        IdMatcher::parse(&pattern),
        Err(PatternError::InvalidId { .. })
    ));
}

#[test]
fn error_messages_name_the_pattern_and_the_fix() {
    let e = err("spiffe://example.org/ns/pro*");
    let msg = e.to_string();
    assert!(msg.contains("`spiffe://example.org/ns/pro*`"), "{msg}");
    assert!(msg.contains("byte 27"), "{msg}");
    assert!(msg.contains("`/*` matches exactly one segment"), "{msg}");
}
