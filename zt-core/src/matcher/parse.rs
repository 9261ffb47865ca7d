//! The ID pattern parser (grammar on [`IdMatcher`]).

use super::{IdMatcher, PatternError, Repr, SCHEME, SegmentPattern};
use crate::{SpiffeId, TrustDomain};

pub(super) fn parse(pattern: &str) -> Result<IdMatcher, PatternError> {
    let owned = || pattern.to_owned();
    if pattern.is_empty() {
        return Err(PatternError::Empty);
    }
    if !pattern.starts_with(SCHEME) {
        return Err(PatternError::MissingScheme { pattern: owned() });
    }
    let td_start = SCHEME.len();
    let td_end = pattern[td_start..]
        .find('/')
        .map_or(pattern.len(), |i| td_start + i);
    let td = &pattern[td_start..td_end];
    if td.is_empty() {
        return Err(PatternError::MissingTrustDomain {
            pattern: owned(),
            position: td_start,
        });
    }
    for (i, ch) in td.char_indices() {
        let position = td_start + i;
        match ch {
            'a'..='z' | '0'..='9' | '.' | '-' | '_' => {}
            'A'..='Z' => {
                return Err(PatternError::UppercaseTrustDomain {
                    pattern: owned(),
                    position,
                    lowercase: td.to_ascii_lowercase(),
                });
            }
            '%' => {
                return Err(PatternError::PercentEncoded {
                    pattern: owned(),
                    position,
                });
            }
            ch => {
                return Err(PatternError::BadTrustDomain {
                    pattern: owned(),
                    position,
                    ch,
                });
            }
        }
    }
    let trust_domain = TrustDomain::new(td).map_err(|source| PatternError::InvalidId {
        pattern: owned(),
        source,
    })?;
    if td_end == pattern.len() {
        return Err(PatternError::MissingPath { pattern: owned() });
    }

    let mut segments = Vec::new();
    let mut has_any = false;
    // Start of the `**` segment once seen: anything after it is an error.
    let mut tail_at: Option<usize> = None;
    let mut start = td_end + 1;
    for segment in pattern[start..].split('/') {
        let position = start;
        start += segment.len() + 1;
        if segment.is_empty() {
            return Err(PatternError::EmptySegment {
                pattern: owned(),
                position,
            });
        }
        if let Some(position) = tail_at {
            return Err(PatternError::DoubleStarNotLast {
                pattern: owned(),
                position,
            });
        }
        match segment {
            "." | ".." => {
                return Err(PatternError::DotSegment {
                    pattern: owned(),
                    position,
                });
            }
            "**" => tail_at = Some(position),
            "*" => {
                has_any = true;
                segments.push(SegmentPattern::Any);
            }
            literal => {
                check_literal(literal, position, pattern)?;
                segments.push(SegmentPattern::Literal(literal.to_owned()));
            }
        }
    }

    let repr = match (tail_at, has_any) {
        (None, false) => {
            let id = SpiffeId::new(pattern).map_err(|source| PatternError::InvalidId {
                pattern: owned(),
                source,
            })?;
            Repr::Exact(id)
        }
        (Some(_), false) if segments.is_empty() => Repr::TrustDomain(trust_domain),
        (Some(tail), false) => Repr::Prefix {
            trust_domain,
            // Everything between the trust domain and the `/` before `**`.
            path: pattern[td_end..tail - 1].into(),
        },
        (tail, true) => Repr::Glob {
            trust_domain,
            segments: segments.into(),
            tail: tail.is_some(),
        },
    };
    Ok(IdMatcher { repr })
}

/// Checks one non-wildcard path segment against the SPIFFE character set.
fn check_literal(segment: &str, start: usize, pattern: &str) -> Result<(), PatternError> {
    for (i, ch) in segment.char_indices() {
        let position = start + i;
        match ch {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '.' | '-' | '_' => {}
            '*' => {
                return Err(PatternError::PartialWildcard {
                    pattern: pattern.to_owned(),
                    position,
                });
            }
            '%' => {
                return Err(PatternError::PercentEncoded {
                    pattern: pattern.to_owned(),
                    position,
                });
            }
            ch => {
                return Err(PatternError::BadCharacter {
                    pattern: pattern.to_owned(),
                    position,
                    ch,
                });
            }
        }
    }
    Ok(())
}
