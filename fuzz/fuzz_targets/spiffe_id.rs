//! SPIFFE ID and ID pattern parsing.
//!
//! Input: UTF-8 text. The first line is parsed both as a canonical SPIFFE ID
//! and as an [`IdMatcher`] pattern; the second line (if any) as a canonical
//! ID to match against. Every line is also parsed as one list of patterns.
//!
//! Properties checked, besides "no panic":
//! - a canonical ID displays as the exact input;
//! - a pattern that parses displays as text that parses again, to a matcher
//!   with the same display and the same answer for every ID tried.

#![no_main]

use libfuzzer_sys::fuzz_target;
use zt_core::SpiffeId;
use zt_core::id::parse_canonical;
use zt_core::matcher::IdMatcher;

/// IDs every parsed matcher is tried against, besides the input's own.
const FIXED_IDS: &[&str] = &[
    "spiffe://example.org/ns/prod/sa/billing",
    "spiffe://example.org/ns/prod",
    "spiffe://example.org/a",
    "spiffe://example.org",
    "spiffe://other.example/ns/prod/sa/billing",
];

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (first, second) = text.split_once('\n').unwrap_or((text, ""));

    let mut ids: Vec<SpiffeId> = FIXED_IDS
        .iter()
        .filter_map(|s| parse_canonical(s).ok())
        .collect();
    for candidate in [first, second] {
        if let Ok(id) = parse_canonical(candidate) {
            assert_eq!(
                id.to_string(),
                candidate,
                "a canonical ID displays as itself"
            );
            ids.push(id);
        }
    }

    if let Ok(matcher) = IdMatcher::parse(first) {
        let shown = matcher.to_string();
        let again = IdMatcher::parse(&shown)
            .unwrap_or_else(|e| panic!("display {shown:?} of {first:?} does not parse: {e}"));
        assert_eq!(again.to_string(), shown, "display round trip of {first:?}");
        for id in &ids {
            assert_eq!(
                matcher.matches(id),
                again.matches(id),
                "{first:?} and its display {shown:?} disagree on {id}"
            );
        }
        let _ = matcher.kind();
        let _ = matcher.trust_domain();
        let _ = matcher.exact_ids().map(Iterator::count);
    }

    if let Ok(list) = IdMatcher::one_of_strs(text.lines()) {
        for id in &ids {
            let _ = list.matches(id);
        }
        let _ = list.to_string();
        let _ = list.exact_ids().map(Iterator::count);
    }
});
