//! Errors of ID pattern parsing.

/// Why a string is not a valid ID pattern. Positions are byte offsets into
/// the pattern; the grammar is on [`IdMatcher`](super::IdMatcher).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum PatternError {
    /// The pattern is empty.
    #[error(
        "the ID pattern is empty; write a SPIFFE ID such as `spiffe://example.org/service` \
         or a pattern such as `spiffe://example.org/**`"
    )]
    Empty,
    /// The pattern does not start with lowercase `spiffe://` (position 0).
    #[error(
        "`{pattern}` does not start with lowercase `spiffe://`; ID patterns are SPIFFE URIs \
         such as `spiffe://example.org/ns/*/sa/billing`"
    )]
    MissingScheme {
        /// The offending pattern.
        pattern: String,
    },
    /// Nothing between `spiffe://` and the path.
    #[error(
        "`{pattern}` has no trust domain at byte {position}; write one after `spiffe://`, \
         as in `spiffe://example.org/**`"
    )]
    MissingTrustDomain {
        /// The offending pattern.
        pattern: String,
        /// Where the trust domain should start.
        position: usize,
    },
    /// The trust domain has an uppercase letter; it is rejected rather than
    /// lowercased so that policies say exactly what certificates carry.
    #[error(
        "`{pattern}` has an uppercase letter in its trust domain at byte {position}; \
         SPIFFE trust domains are lowercase: write `{lowercase}`"
    )]
    UppercaseTrustDomain {
        /// The offending pattern.
        pattern: String,
        /// The first uppercase letter.
        position: usize,
        /// The trust domain in lowercase.
        lowercase: String,
    },
    /// The trust domain has a character SPIFFE does not allow there.
    #[error(
        "`{pattern}` has {ch:?} in its trust domain at byte {position}; a trust domain may \
         contain only lowercase letters, digits, `.`, `-` and `_` (no wildcards, ports or \
         user info)"
    )]
    BadTrustDomain {
        /// The offending pattern.
        pattern: String,
        /// The offending character.
        position: usize,
        /// The character.
        ch: char,
    },
    /// The pattern has no path (`spiffe://td`).
    #[error(
        "`{pattern}` has no path, so it would match only the trust domain's own ID, which no \
         workload holds; write `{pattern}/**` to match every workload of the trust domain, \
         or add the workload's path"
    )]
    MissingPath {
        /// The offending pattern.
        pattern: String,
    },
    /// A path segment is empty (`//` or a trailing `/`).
    #[error(
        "`{pattern}` has an empty path segment at byte {position}; remove the doubled or \
         trailing `/`"
    )]
    EmptySegment {
        /// The offending pattern.
        pattern: String,
        /// Where the empty segment starts.
        position: usize,
    },
    /// A path segment is `.` or `..`.
    #[error(
        "`{pattern}` has a `.` or `..` path segment at byte {position}; SPIFFE IDs have no \
         relative segments, write the path out in full"
    )]
    DotSegment {
        /// The offending pattern.
        pattern: String,
        /// Where the segment starts.
        position: usize,
    },
    /// The pattern contains a `%`.
    #[error(
        "`{pattern}` has percent-encoding at byte {position}; SPIFFE IDs allow no escapes, \
         and their characters never need one"
    )]
    PercentEncoded {
        /// The offending pattern.
        pattern: String,
        /// The `%`.
        position: usize,
    },
    /// A path segment has a character SPIFFE does not allow.
    #[error(
        "`{pattern}` has {ch:?} at byte {position}; path segments may contain only ASCII \
         letters, digits, `.`, `-` and `_`, or be exactly `*` or `**` (no query, fragment \
         or whitespace)"
    )]
    BadCharacter {
        /// The offending pattern.
        pattern: String,
        /// The offending character.
        position: usize,
        /// The character.
        ch: char,
    },
    /// A `*` is part of a segment (`pro*`) rather than the whole segment.
    #[error(
        "`{pattern}` has `*` inside a path segment at byte {position}; a wildcard must be a \
         whole segment: `/*` matches exactly one segment, a final `/**` one or more"
    )]
    PartialWildcard {
        /// The offending pattern.
        pattern: String,
        /// The first `*` of the segment.
        position: usize,
    },
    /// `**` is followed by more segments.
    #[error(
        "`{pattern}` has `**` at byte {position} before the end; `**` may only be the last \
         segment (`spiffe://td/a/**`), use `*` for one segment in the middle"
    )]
    DoubleStarNotLast {
        /// The offending pattern.
        pattern: String,
        /// Where the `**` segment starts.
        position: usize,
    },
    /// The `spiffe` crate's parser rejected the ID or trust domain (for
    /// example a trust domain longer than 255 bytes).
    #[error("`{pattern}` is not a valid SPIFFE ID pattern: {source}")]
    InvalidId {
        /// The offending pattern.
        pattern: String,
        /// The parser's reason.
        #[source]
        source: spiffe::SpiffeIdError,
    },
    /// One pattern of a list ([`IdMatcher::one_of_strs`](super::IdMatcher::one_of_strs)) is invalid.
    #[error("pattern {index} of the list (counting from 0) is invalid: {source}")]
    InList {
        /// Index of the bad pattern in the list.
        index: usize,
        /// What is wrong with it.
        #[source]
        source: Box<PatternError>,
    },
}

impl PatternError {
    /// Byte offset of the problem in the pattern, where there is one place to
    /// point at. For [`PatternError::InList`], the offset inside the bad
    /// list item.
    pub fn position(&self) -> Option<usize> {
        match self {
            Self::MissingScheme { .. } => Some(0),
            Self::MissingPath { pattern } => Some(pattern.len()),
            Self::MissingTrustDomain { position, .. }
            | Self::UppercaseTrustDomain { position, .. }
            | Self::BadTrustDomain { position, .. }
            | Self::EmptySegment { position, .. }
            | Self::DotSegment { position, .. }
            | Self::PercentEncoded { position, .. }
            | Self::BadCharacter { position, .. }
            | Self::PartialWildcard { position, .. }
            | Self::DoubleStarNotLast { position, .. } => Some(*position),
            Self::InList { source, .. } => source.position(),
            Self::Empty | Self::InvalidId { .. } => None,
        }
    }
}
