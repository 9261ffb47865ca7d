//! SPIFFE ID matchers: who a peer must be.
//!
//! An [`IdMatcher`] answers one question, "is this SPIFFE ID acceptable?", for
//! peer pinning in `zt-client` / `zt-server` and for the principals of a
//! policy. It is built from a pattern string ([`IdMatcher::parse`], grammar on
//! the type) or from typed values ([`IdMatcher::exact`],
//! [`IdMatcher::one_of`], [`IdMatcher::in_trust_domain`],
//! [`IdMatcher::prefix`], [`IdMatcher::from_fn`], [`IdMatcher::any_of`]).
//!
//! Matching never allocates for the parseable kinds: patterns are validated and
//! split into segments once, at construction. [`IdMatcher::kind`] exposes what
//! a matcher is, so an index can put exact IDs and trust domains in hash maps
//! instead of trying every matcher in turn.

use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use crate::{SpiffeId, TrustDomain};

mod error;
mod parse;
#[cfg(test)]
mod tests;

pub use error::PatternError;
use parse::parse;

const SCHEME: &str = "spiffe://";

/// How many IDs of a one-of matcher `Display` lists before it abbreviates;
/// the alternate form (`{:#}`) lists them all.
const DISPLAY_LIMIT: usize = 16;

/// Decides whether a SPIFFE ID is acceptable.
///
/// # Kinds
///
/// | pattern | kind | matches | does not match |
/// |---|---|---|---|
/// | `spiffe://example.org/ns/prod/sa/billing` | exact | that ID | anything else |
/// | `spiffe://example.org/**` | trust domain | every ID of `example.org` with a path | `spiffe://example.org`, `spiffe://other.org/a` |
/// | `spiffe://example.org/ns/prod/**` | prefix | `…/ns/prod/x`, `…/ns/prod/x/y` | `…/ns/prod`, `…/ns/production` |
/// | `spiffe://example.org/ns/*/sa/billing` | glob | `…/ns/prod/sa/billing` | `…/ns/a/b/sa/billing`, `…/ns/sa/billing` |
/// | `spiffe://example.org/ns/prod/*` | glob | `…/ns/prod/x` | `…/ns/prod/x/y`, `…/ns/prod` |
/// | `spiffe://example.org/ns/*/sa/**` | glob | `…/ns/prod/sa/billing`, `…/ns/dev/sa/a/b` | `…/ns/prod/sa` |
///
/// Not parseable from one string: one of a set of IDs ([`IdMatcher::one_of`],
/// [`IdMatcher::one_of_strs`]), any of several matchers
/// ([`IdMatcher::any_of`]) and a closure ([`IdMatcher::from_fn`]).
///
/// # Pattern syntax
///
/// ```text
/// pattern      = "spiffe://" trust-domain "/" path-pattern
/// path-pattern = "**"                          ; any ID in the trust domain
///              | segments [ "/**" ]            ; "/**": one or more further segments
/// segments     = segment-pat *( "/" segment-pat )
/// segment-pat  = "*"                           ; exactly one whole segment
///              | segment
/// segment      = 1*( ALPHA / DIGIT / "." / "-" / "_" )   ; but not "." or ".."
/// trust-domain = 1*( %x61-7A / DIGIT / "." / "-" / "_" ) ; lowercase, at most 255 bytes
/// ```
///
/// - `*` is a whole segment and matches exactly one segment, wherever it
///   stands; a trailing `/*` is no exception (`…/prod/*` does not match
///   `…/prod/x/y`). `*` inside a segment (`pro*`) is an error.
/// - `**` may only be the last segment. It matches **one or more** further
///   segments, on segment boundaries: `spiffe://td/ns/prod/**` matches IDs
///   strictly below `/ns/prod`, never `/ns/prod` itself and never
///   `/ns/production`. Add the base ID with [`IdMatcher::any_of`] if it should
///   match too. `spiffe://td/**` therefore matches every ID of `td` except the
///   trust domain's own ID `spiffe://td`, which no workload holds.
/// - Everything else follows the SPIFFE ID rules and is rejected, not
///   normalised: the scheme and the trust domain must be lowercase; no
///   percent-encoding, empty segments, `.`/`..` segments, trailing `/`,
///   query, fragment, port or user info; no surrounding whitespace. Path
///   segments are case-sensitive.
/// - A pattern without a path (`spiffe://td`) is an error that suggests
///   `spiffe://td/**`: as an exact ID it could never match a workload.
///
/// Errors are [`PatternError`]s that name the byte offset of the problem.
/// `Display` writes the pattern back in this syntax, so for parsed matchers
/// `m.to_string().parse()` gives an equal matcher.
///
/// # Examples
///
/// ```
/// use zt_core::SpiffeId;
/// use zt_core::matcher::{IdMatcher, PatternError};
///
/// let billing: IdMatcher = "spiffe://example.org/ns/*/sa/billing".parse()?;
/// let prod = IdMatcher::parse("spiffe://example.org/ns/prod/**")?;
///
/// let id = SpiffeId::new("spiffe://example.org/ns/prod/sa/billing")?;
/// assert!(billing.matches(&id));
/// assert!(prod.matches(&id));
/// assert!(!prod.matches(&SpiffeId::new("spiffe://example.org/ns/production/sa/billing")?));
/// assert_eq!(prod.to_string(), "spiffe://example.org/ns/prod/**");
/// assert_eq!(prod.trust_domain().map(|td| td.as_str()), Some("example.org"));
///
/// // Bad patterns say where and what.
/// let err = IdMatcher::parse("spiffe://example.org/ns/pro*").unwrap_err();
/// assert_eq!(err.position(), Some(27));
/// assert!(matches!(err, PatternError::PartialWildcard { .. }));
///
/// // Anything else is a closure with a description for logs and errors.
/// let short = IdMatcher::from_fn("IDs with at most two segments", |id: &SpiffeId| {
///     id.path().split('/').count() <= 3
/// });
/// assert!(!short.matches(&id));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct IdMatcher {
    repr: Repr,
}

type MatchFn = Arc<dyn Fn(&SpiffeId) -> bool + Send + Sync>;

#[derive(Clone)]
enum Repr {
    Exact(SpiffeId),
    OneOf(Arc<IdSet>),
    TrustDomain(TrustDomain),
    Prefix {
        trust_domain: TrustDomain,
        /// The base path, `/a/b`: never empty, no trailing `/`.
        path: Box<str>,
    },
    Glob {
        trust_domain: TrustDomain,
        /// At least one segment, at least one of them `Any`.
        segments: Arc<[SegmentPattern]>,
        tail: bool,
    },
    AnyOf(Arc<[IdMatcher]>),
    Custom {
        description: Arc<str>,
        f: MatchFn,
    },
}

/// One path segment of a glob pattern.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SegmentPattern {
    /// The segment must be exactly this string.
    Literal(String),
    /// `*`: any single segment.
    Any,
}

/// The set of IDs of a one-of matcher.
#[derive(Debug, Clone, Default)]
pub struct IdSet {
    ids: HashSet<SpiffeId>,
    /// The trust domain every ID shares, if there is one (and any IDs).
    trust_domain: Option<TrustDomain>,
}

impl IdSet {
    fn new(ids: HashSet<SpiffeId>) -> Self {
        let mut tds = ids.iter().map(SpiffeId::trust_domain);
        let trust_domain = match tds.next() {
            Some(first) if tds.all(|td| td == first) => Some(first.clone()),
            _ => None,
        };
        Self { ids, trust_domain }
    }

    /// Number of IDs.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// `true` if the set has no IDs (and so matches nothing).
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// `true` if `id` is in the set.
    pub fn contains(&self, id: &SpiffeId) -> bool {
        self.ids.contains(id)
    }

    /// The IDs, in no particular order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &SpiffeId> + '_ {
        self.ids.iter()
    }

    /// The trust domain all IDs share, if they share one.
    pub fn trust_domain(&self) -> Option<&TrustDomain> {
        self.trust_domain.as_ref()
    }

    fn sorted(&self) -> Vec<&SpiffeId> {
        let mut ids: Vec<_> = self.ids.iter().collect();
        ids.sort_unstable();
        ids
    }
}

/// What an [`IdMatcher`] is, for code that indexes matchers (a policy engine
/// puts exact IDs and trust domains in hash maps).
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum MatcherKind<'a> {
    /// Exactly this ID.
    Exact(&'a SpiffeId),
    /// Any ID of the set.
    OneOf(&'a IdSet),
    /// Any ID of this trust domain that has a path (`spiffe://td/**`).
    TrustDomain(&'a TrustDomain),
    /// Any ID of `trust_domain` strictly below `path`, on a segment boundary
    /// (`spiffe://td/a/b/**` has `path` `/a/b`).
    Prefix {
        /// The trust domain.
        trust_domain: &'a TrustDomain,
        /// The base path, starting with `/`, without a trailing `/`.
        path: &'a str,
    },
    /// Segment-by-segment pattern with at least one `*`.
    Glob {
        /// The trust domain.
        trust_domain: &'a TrustDomain,
        /// The segments to match one by one.
        segments: &'a [SegmentPattern],
        /// `true` if the pattern ends in `/**`: one or more further segments.
        tail: bool,
    },
    /// Any of these matchers.
    AnyOf(&'a [IdMatcher]),
    /// A closure.
    Custom {
        /// The closure's description.
        description: &'a str,
    },
}

/// Iterator over the IDs of an exact or one-of matcher, from
/// [`IdMatcher::exact_ids`].
#[derive(Debug, Clone)]
pub struct ExactIds<'a> {
    inner: ExactIdsInner<'a>,
}

#[derive(Debug, Clone)]
enum ExactIdsInner<'a> {
    One(std::option::IntoIter<&'a SpiffeId>),
    Set(std::collections::hash_set::Iter<'a, SpiffeId>),
}

impl<'a> Iterator for ExactIds<'a> {
    type Item = &'a SpiffeId;

    fn next(&mut self) -> Option<Self::Item> {
        match &mut self.inner {
            ExactIdsInner::One(it) => it.next(),
            ExactIdsInner::Set(it) => it.next(),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match &self.inner {
            ExactIdsInner::One(it) => it.size_hint(),
            ExactIdsInner::Set(it) => it.size_hint(),
        }
    }
}

impl ExactSizeIterator for ExactIds<'_> {}

impl IdMatcher {
    /// Parses a pattern (grammar on [`IdMatcher`]).
    ///
    /// # Errors
    ///
    /// The [`PatternError`] for the first rule the pattern breaks, reading
    /// left to right.
    pub fn parse(pattern: &str) -> Result<Self, PatternError> {
        parse(pattern)
    }

    /// Parses a list of patterns into one matcher that accepts an ID if any
    /// of them does. Exact IDs are gathered into one set, so a list of IDs
    /// becomes a [`MatcherKind::OneOf`] (see [`IdMatcher::any_of`]).
    ///
    /// # Errors
    ///
    /// [`PatternError::InList`] with the index of the first bad pattern.
    pub fn one_of_strs<I>(patterns: I) -> Result<Self, PatternError>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let matchers = patterns
            .into_iter()
            .enumerate()
            .map(|(index, p)| {
                parse(p.as_ref()).map_err(|e| PatternError::InList {
                    index,
                    source: Box::new(e),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self::any_of(matchers))
    }

    /// Matches exactly `id`.
    pub fn exact(id: SpiffeId) -> Self {
        Self {
            repr: Repr::Exact(id),
        }
    }

    /// Matches any of `ids` (a hash set: lookup does not depend on how many).
    /// An empty set matches nothing.
    pub fn one_of(ids: impl IntoIterator<Item = SpiffeId>) -> Self {
        Self {
            repr: Repr::OneOf(Arc::new(IdSet::new(ids.into_iter().collect()))),
        }
    }

    /// Matches every ID of `trust_domain` that has a path, like the pattern
    /// `spiffe://td/**`.
    pub fn in_trust_domain(trust_domain: TrustDomain) -> Self {
        Self {
            repr: Repr::TrustDomain(trust_domain),
        }
    }

    /// Matches every ID strictly below `base` on a segment boundary, like the
    /// pattern `spiffe://td/a/b/**` for a base of `spiffe://td/a/b`: not
    /// `base` itself and not `spiffe://td/a/bc`. A base without a path gives
    /// [`IdMatcher::in_trust_domain`].
    pub fn prefix(base: SpiffeId) -> Self {
        if base.path().is_empty() {
            return Self::in_trust_domain(base.trust_domain().clone());
        }
        Self {
            repr: Repr::Prefix {
                path: base.path().into(),
                trust_domain: base.trust_domain().clone(),
            },
        }
    }

    /// Matches the IDs for which `f` returns `true`. `description` stands in
    /// for a pattern in `Display` and `Debug`, so in error messages and
    /// audit records ("only {description} is accepted").
    pub fn from_fn<F>(description: impl Into<String>, f: F) -> Self
    where
        F: Fn(&SpiffeId) -> bool + Send + Sync + 'static,
    {
        Self {
            repr: Repr::Custom {
                description: description.into().into(),
                f: Arc::new(f),
            },
        }
    }

    /// Matches an ID if any of `matchers` does; an empty list matches
    /// nothing.
    ///
    /// Nested any-of lists are flattened and exact and one-of matchers are
    /// gathered into a single [`IdSet`], so the result is a
    /// [`MatcherKind::OneOf`] when every alternative names exact IDs, the
    /// alternative itself when there is only one, and otherwise a
    /// [`MatcherKind::AnyOf`] whose first member is the set (if any).
    pub fn any_of(matchers: impl IntoIterator<Item = IdMatcher>) -> Self {
        fn gather(m: IdMatcher, ids: &mut HashSet<SpiffeId>, rest: &mut Vec<IdMatcher>) {
            match m.repr {
                Repr::Exact(id) => {
                    ids.insert(id);
                }
                Repr::OneOf(set) => ids.extend(set.ids.iter().cloned()),
                Repr::AnyOf(list) => {
                    for m in list.iter() {
                        gather(m.clone(), ids, rest);
                    }
                }
                repr => rest.push(IdMatcher { repr }),
            }
        }
        let mut ids = HashSet::new();
        let mut rest = Vec::new();
        for m in matchers {
            gather(m, &mut ids, &mut rest);
        }
        if rest.is_empty() {
            return Self::one_of(ids);
        }
        if ids.is_empty()
            && rest.len() == 1
            && let Some(only) = rest.pop()
        {
            return only;
        }
        if !ids.is_empty() {
            rest.insert(0, Self::one_of(ids));
        }
        Self {
            repr: Repr::AnyOf(rest.into()),
        }
    }

    /// `true` if `id` is acceptable. Does not allocate, except inside a
    /// closure given to [`IdMatcher::from_fn`].
    pub fn matches(&self, id: &SpiffeId) -> bool {
        match &self.repr {
            Repr::Exact(want) => want == id,
            Repr::OneOf(set) => set.contains(id),
            Repr::TrustDomain(td) => id.trust_domain() == td && !id.path().is_empty(),
            Repr::Prefix { trust_domain, path } => {
                id.trust_domain() == trust_domain
                    && id
                        .path()
                        .strip_prefix(&**path)
                        .is_some_and(|rest| rest.len() > 1 && rest.starts_with('/'))
            }
            Repr::Glob {
                trust_domain,
                segments,
                tail,
            } => id.trust_domain() == trust_domain && glob_matches(id.path(), segments, *tail),
            Repr::AnyOf(list) => list.iter().any(|m| m.matches(id)),
            Repr::Custom { f, .. } => f(id),
        }
    }

    /// What kind of matcher this is.
    pub fn kind(&self) -> MatcherKind<'_> {
        match &self.repr {
            Repr::Exact(id) => MatcherKind::Exact(id),
            Repr::OneOf(set) => MatcherKind::OneOf(set),
            Repr::TrustDomain(td) => MatcherKind::TrustDomain(td),
            Repr::Prefix { trust_domain, path } => MatcherKind::Prefix { trust_domain, path },
            Repr::Glob {
                trust_domain,
                segments,
                tail,
            } => MatcherKind::Glob {
                trust_domain,
                segments,
                tail: *tail,
            },
            Repr::AnyOf(list) => MatcherKind::AnyOf(list),
            Repr::Custom { description, .. } => MatcherKind::Custom { description },
        }
    }

    /// The one trust domain every matching ID belongs to, if the matcher is
    /// confined to one. `None` for closures, for an empty set and for
    /// alternatives spanning several trust domains.
    pub fn trust_domain(&self) -> Option<&TrustDomain> {
        match &self.repr {
            Repr::Exact(id) => Some(id.trust_domain()),
            Repr::OneOf(set) => set.trust_domain(),
            Repr::TrustDomain(trust_domain)
            | Repr::Prefix { trust_domain, .. }
            | Repr::Glob { trust_domain, .. } => Some(trust_domain),
            Repr::AnyOf(list) => {
                let mut tds = list.iter().map(IdMatcher::trust_domain);
                let first = tds.next()??;
                tds.all(|td| td == Some(first)).then_some(first)
            }
            Repr::Custom { .. } => None,
        }
    }

    /// The IDs of an exact or one-of matcher, the only IDs it accepts;
    /// `None` for every other kind.
    pub fn exact_ids(&self) -> Option<ExactIds<'_>> {
        let inner = match &self.repr {
            Repr::Exact(id) => ExactIdsInner::One(Some(id).into_iter()),
            Repr::OneOf(set) => ExactIdsInner::Set(set.ids.iter()),
            _ => return None,
        };
        Some(ExactIds { inner })
    }
}

fn glob_matches(path: &str, segments: &[SegmentPattern], tail: bool) -> bool {
    let Some(path) = path.strip_prefix('/') else {
        return false;
    };
    let mut parts = path.split('/');
    for want in segments {
        match (want, parts.next()) {
            (_, None) => return false,
            (SegmentPattern::Literal(lit), Some(got)) if lit != got => return false,
            _ => {}
        }
    }
    parts.next().is_some() == tail
}

impl FromStr for IdMatcher {
    type Err = PatternError;

    fn from_str(pattern: &str) -> Result<Self, Self::Err> {
        parse(pattern)
    }
}

impl TryFrom<&str> for IdMatcher {
    type Error = PatternError;

    fn try_from(pattern: &str) -> Result<Self, Self::Error> {
        parse(pattern)
    }
}

impl From<SpiffeId> for IdMatcher {
    /// Same as [`IdMatcher::exact`].
    fn from(id: SpiffeId) -> Self {
        Self::exact(id)
    }
}

impl From<TrustDomain> for IdMatcher {
    /// Same as [`IdMatcher::in_trust_domain`].
    fn from(trust_domain: TrustDomain) -> Self {
        Self::in_trust_domain(trust_domain)
    }
}

/// Writes the pattern syntax for the parseable kinds (it parses back to an
/// equal matcher), `one of [...]` / `any of [...]` for lists and the
/// description for closures. A one-of set lists its IDs sorted and stops
/// after 16 unless the alternate flag (`{:#}`) is set.
impl fmt::Display for IdMatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.repr {
            Repr::Exact(id) => write!(f, "{id}"),
            Repr::OneOf(set) => {
                f.write_str("one of [")?;
                write_set(set, f)?;
                f.write_str("]")
            }
            Repr::TrustDomain(td) => write!(f, "{SCHEME}{td}/**"),
            Repr::Prefix { trust_domain, path } => write!(f, "{SCHEME}{trust_domain}{path}/**"),
            Repr::Glob {
                trust_domain,
                segments,
                tail,
            } => {
                write!(f, "{SCHEME}{trust_domain}")?;
                for segment in segments.iter() {
                    match segment {
                        SegmentPattern::Literal(lit) => write!(f, "/{lit}")?,
                        SegmentPattern::Any => f.write_str("/*")?,
                    }
                }
                if *tail {
                    f.write_str("/**")?;
                }
                Ok(())
            }
            Repr::AnyOf(list) => {
                f.write_str("any of [")?;
                for (i, m) in list.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    match &m.repr {
                        // Members of the gathered set are alternatives too.
                        Repr::OneOf(set) => write_set(set, f)?,
                        _ => fmt::Display::fmt(m, f)?,
                    }
                }
                f.write_str("]")
            }
            Repr::Custom { description, .. } => f.write_str(description),
        }
    }
}

fn write_set(set: &IdSet, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let ids = set.sorted();
    let shown = if f.alternate() {
        ids.len()
    } else {
        ids.len().min(DISPLAY_LIMIT)
    };
    for (i, id) in ids.iter().take(shown).enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        write!(f, "{id}")?;
    }
    if shown < ids.len() {
        write!(f, ", … {} more", ids.len() - shown)?;
    }
    Ok(())
}

impl fmt::Debug for IdMatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.repr {
            Repr::Custom { description, .. } => f
                .debug_struct("IdMatcher")
                .field("custom", description)
                .finish(),
            _ => f
                .debug_tuple("IdMatcher")
                .field(&format_args!("{self}"))
                .finish(),
        }
    }
}
