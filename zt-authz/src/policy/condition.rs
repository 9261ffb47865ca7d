//! Context conditions: what a rule requires of the request's [`Context`]
//! (the verified claims of a token) and of the segments its caller
//! patterns capture.
//!
//! A rule's conditions all must hold for the rule to match. A rule without
//! conditions pays nothing for them: the engine reads one empty list.

use std::fmt;
use std::sync::Arc;

use serde_json::Value;

use zt_core::SpiffeId;

/// The verified context of a request, which rule conditions read: string
/// keys to [`ContextValue`]s.
///
/// A token validator puts the claims of the credential it verified here,
/// one entry per claim; nested objects are flattened to dotted paths, so
/// the claim `{"kubernetes.io": {"namespace": "prod"}}` is the key
/// `kubernetes.io.namespace` ([`Context::from_claims`]). Numbers are kept
/// as their JSON text (`42`, `1.5`), so a condition compares them as
/// strings.
///
/// A context is inserted into the request extensions by the layer that
/// verified the credential and read from there by the authorization
/// layer; in code it is passed with
/// [`Request::with_context`](super::Request::with_context). Keys are kept
/// sorted: a lookup is a binary search, and building one allocates once
/// per entry.
///
/// # Examples
///
/// ```
/// use zt_authz::policy::{Context, ContextValue};
///
/// let context = Context::new()
///     .with("repository", "org/app")
///     .with("ref", "refs/heads/main")
///     .with("groups", vec!["deployers", "admins"])
///     .with("pull_request", false);
/// assert_eq!(context.get("repository"), Some(&ContextValue::from("org/app")));
/// assert!(context.get("environment").is_none());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Context {
    /// Sorted by key, keys unique.
    entries: Vec<(Box<str>, ContextValue)>,
}

/// One value of a [`Context`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ContextValue {
    /// A string (numbers are kept as their decimal text).
    String(Box<str>),
    /// A list of strings; a condition holds when it holds for one element.
    List(Vec<Box<str>>),
    /// A boolean.
    Bool(bool),
}

impl From<&str> for ContextValue {
    fn from(value: &str) -> Self {
        Self::String(value.into())
    }
}

impl From<String> for ContextValue {
    fn from(value: String) -> Self {
        Self::String(value.into())
    }
}

impl From<bool> for ContextValue {
    fn from(value: bool) -> Self {
        Self::Bool(value)
    }
}

impl From<Vec<&str>> for ContextValue {
    fn from(value: Vec<&str>) -> Self {
        Self::List(value.into_iter().map(Box::from).collect())
    }
}

impl From<Vec<String>> for ContextValue {
    fn from(value: Vec<String>) -> Self {
        Self::List(value.into_iter().map(Box::from).collect())
    }
}

impl fmt::Display for ContextValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::String(s) => write!(f, "{:?}", &**s),
            Self::Bool(b) => write!(f, "{b}"),
            Self::List(items) => {
                f.write_str("[")?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{:?}", &**item)?;
                }
                f.write_str("]")
            }
        }
    }
}

impl Context {
    /// An empty context.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `key` to `value`, replacing an earlier value.
    pub fn insert(&mut self, key: impl AsRef<str>, value: impl Into<ContextValue>) -> &mut Self {
        let key = key.as_ref();
        let value = value.into();
        match self.entries.binary_search_by(|(k, _)| (**k).cmp(key)) {
            Ok(at) => {
                if let Some(entry) = self.entries.get_mut(at) {
                    entry.1 = value;
                }
            }
            Err(at) => self.entries.insert(at, (key.into(), value)),
        }
        self
    }

    /// The context with `key` set to `value`.
    pub fn with(mut self, key: impl AsRef<str>, value: impl Into<ContextValue>) -> Self {
        self.insert(key, value);
        self
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&ContextValue> {
        self.entries
            .binary_search_by(|(k, _)| (**k).cmp(key))
            .ok()
            .and_then(|at| self.entries.get(at))
            .map(|(_, v)| v)
    }

    /// The entries, sorted by key.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &ContextValue)> + '_ {
        self.entries.iter().map(|(k, v)| (&**k, v))
    }

    /// How many entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// `true` if there are none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The context of a verified token's claims (a JWT payload). Strings,
    /// booleans and numbers become entries (numbers as their JSON text);
    /// arrays of strings, numbers and booleans become lists; objects are
    /// flattened with dotted keys (`kubernetes.io` → `namespace` is
    /// `kubernetes.io.namespace`). `null`, and arrays holding objects or
    /// arrays, are left out: no condition can name them.
    pub fn from_claims(claims: &serde_json::Map<String, Value>) -> Self {
        let mut context = Self::new();
        flatten(&mut context, None, claims);
        context
    }
}

fn flatten(context: &mut Context, prefix: Option<&str>, object: &serde_json::Map<String, Value>) {
    for (key, value) in object {
        let key = match prefix {
            Some(prefix) => format!("{prefix}.{key}"),
            None => key.clone(),
        };
        match value {
            Value::String(s) => {
                context.insert(&key, s.as_str());
            }
            Value::Bool(b) => {
                context.insert(&key, *b);
            }
            Value::Number(n) => {
                context.insert(&key, n.to_string());
            }
            Value::Array(items) => {
                let list: Option<Vec<String>> = items
                    .iter()
                    .map(|item| match item {
                        Value::String(s) => Some(s.clone()),
                        Value::Number(n) => Some(n.to_string()),
                        Value::Bool(b) => Some(b.to_string()),
                        _ => None,
                    })
                    .collect();
                if let Some(list) = list {
                    context.insert(&key, list);
                }
            }
            Value::Object(inner) => flatten(context, Some(&key), inner),
            Value::Null => {}
        }
    }
}

/// A glob over a `/`-separated value, matched on segment boundaries:
/// `refs/heads/*`, `refs/tags/v*`, `org/**`.
///
/// - `*` as a whole segment matches exactly one non-empty segment;
/// - a segment ending in `*` (`v*`) matches one segment that starts with
///   the text before it (`v1.2`, and `v` itself);
/// - `**` as the last segment matches one or more further segments, so
///   `org/**` matches `org/app` and `org/app/x`, never `org` or
///   `organisation/app`;
/// - any other segment matches itself. `*` elsewhere in a segment, and `**`
///   before the last segment, are errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueGlob {
    text: Box<str>,
    segments: Vec<GlobSegment>,
    rest: bool,
}

/// One segment of a [`ValueGlob`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum GlobSegment {
    /// `*`: one non-empty segment.
    Any,
    /// `v*`: one segment starting with this text.
    Prefix(Box<str>),
    /// This segment exactly.
    Literal(Box<str>),
}

impl ValueGlob {
    /// Parses a glob.
    ///
    /// # Errors
    ///
    /// Why the pattern is not a glob, and what to write instead.
    pub fn parse(pattern: &str) -> Result<Self, String> {
        if pattern.is_empty() {
            return Err("is empty; write a value or a glob such as `refs/heads/*`".into());
        }
        let parts: Vec<&str> = pattern.split('/').collect();
        let mut segments = Vec::with_capacity(parts.len());
        let mut rest = false;
        for (i, part) in parts.iter().enumerate() {
            let last = i + 1 == parts.len();
            if *part == "**" {
                if !last || i == 0 {
                    return Err(
                        "has `**` that is not the last segment after another; `**` matches the \
                         segments after a fixed start, as in `org/**`"
                            .into(),
                    );
                }
                rest = true;
            } else if *part == "*" {
                segments.push(GlobSegment::Any);
            } else if let Some(prefix) = part.strip_suffix('*') {
                if prefix.contains('*') {
                    return Err(format!(
                        "has segment `{part}` with more than one `*`; write `*` once, at the end \
                         of a segment"
                    ));
                }
                segments.push(GlobSegment::Prefix(prefix.into()));
            } else if part.contains('*') {
                return Err(format!(
                    "has `*` inside segment `{part}`; `*` may stand only at the end of a segment"
                ));
            } else {
                segments.push(GlobSegment::Literal((*part).into()));
            }
        }
        Ok(Self {
            text: pattern.into(),
            segments,
            rest,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The fixed segments, and whether a final `**` follows them.
    #[cfg(feature = "cedar")]
    pub(crate) fn segments(&self) -> (&[GlobSegment], bool) {
        (&self.segments, self.rest)
    }

    /// `true` if `value` matches.
    pub fn matches(&self, value: &str) -> bool {
        let mut parts = value.split('/');
        for segment in &self.segments {
            let Some(part) = parts.next() else {
                return false;
            };
            let ok = match segment {
                GlobSegment::Any => !part.is_empty(),
                GlobSegment::Prefix(prefix) => part.starts_with(&**prefix),
                GlobSegment::Literal(literal) => part == &**literal,
            };
            if !ok {
                return false;
            }
        }
        let mut remaining = parts.peekable();
        if self.rest {
            remaining.peek().is_some()
        } else {
            remaining.peek().is_none()
        }
    }
}

/// What a [`Condition`] requires of its value.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Test {
    /// Equal to this string (file: `key = "value"`).
    Equals(Box<str>),
    /// Equal to this boolean (file: `key = true`).
    IsBool(bool),
    /// Equal to one of these strings (file: `key = { one_of = [..] }`).
    OneOf(Vec<Box<str>>),
    /// Matching this glob (file: `key = { glob = "refs/tags/v*" }`).
    Glob(ValueGlob),
    /// Present (`true`) or absent (`false`) (file: `key = { present = true }`).
    Present(bool),
    /// Equal to the value of another key: a context key or a capture (file:
    /// `key = { same_as = "kubernetes.io.namespace" }`).
    SameAs(Arc<str>),
}

/// One condition of a rule: a key and what its value must be.
///
/// The key names a capture of the rule's caller patterns (`ns` of
/// `spiffe://example.org/ns/{ns}/sa/{sa}`) when one of them declares it;
/// otherwise it names a [`Context`] entry. A value that is absent fails
/// every test except `present = false`. A list value passes a test when
/// one of its elements does (`Present` needs only the list).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    key: Arc<str>,
    test: Test,
}

/// A value a condition reads: a capture, or a context entry.
#[derive(Clone, Copy)]
pub(crate) enum Subject<'a> {
    Str(&'a str),
    Value(&'a ContextValue),
}

impl<'a> Subject<'a> {
    fn any(self, mut f: impl FnMut(&str) -> bool) -> bool {
        match self {
            Self::Str(s) => f(s),
            Self::Value(ContextValue::String(s)) => f(s),
            Self::Value(ContextValue::List(items)) => items.iter().any(|i| f(i)),
            Self::Value(ContextValue::Bool(_)) => false,
        }
    }

    fn same(self, other: Subject<'_>) -> bool {
        match (self, other) {
            (Self::Value(ContextValue::Bool(a)), Subject::Value(ContextValue::Bool(b))) => a == b,
            _ => self.any(|a| other.any(|b| a == b)),
        }
    }
}

impl Condition {
    /// A condition on `key`.
    pub fn new(key: impl AsRef<str>, test: Test) -> Self {
        Self {
            key: Arc::from(key.as_ref()),
            test,
        }
    }

    /// The conditions of a `when` table in the policy file syntax, written
    /// alone: `{ ns = "prod", ref = { one_of = ["refs/heads/main"] } }`, in
    /// the order written. The syntax `#[callers(when = "...")]` takes.
    ///
    /// # Errors
    ///
    /// The key of the bad condition (empty when the text is not a table)
    /// and what is wrong with it.
    pub fn parse_table(text: &str) -> Result<Vec<Self>, (String, String)> {
        super::file::parse_when(text)
    }

    /// The key: a capture name or a context key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The test.
    pub fn test(&self) -> &Test {
        &self.test
    }

    /// `true` if the condition holds; `lookup` finds a key's value.
    pub(crate) fn holds<'a>(&self, lookup: &impl Fn(&str) -> Option<Subject<'a>>) -> bool {
        let value = lookup(&self.key);
        match (&self.test, value) {
            (Test::Present(want), value) => value.is_some() == *want,
            (_, None) => false,
            (Test::Equals(expected), Some(v)) => v.any(|s| s == &**expected),
            (Test::IsBool(expected), Some(Subject::Value(ContextValue::Bool(b)))) => b == expected,
            (Test::IsBool(_), Some(_)) => false,
            (Test::OneOf(options), Some(v)) => v.any(|s| options.iter().any(|o| &**o == s)),
            (Test::Glob(glob), Some(v)) => v.any(|s| glob.matches(s)),
            (Test::SameAs(other), Some(v)) => lookup(other).is_some_and(|o| v.same(o)),
        }
    }

    /// How the condition failed, for the audit record: the condition, and
    /// whether the value was absent or different. Never the value itself.
    pub(crate) fn failure<'a>(&self, lookup: &impl Fn(&str) -> Option<Subject<'a>>) -> String {
        let state = match (&self.test, lookup(&self.key)) {
            (Test::Present(false), Some(_)) => "present",
            (_, None) => "absent",
            (Test::SameAs(other), Some(_)) if lookup(other).is_none() => "other absent",
            _ => "differs",
        };
        format!("{self} ({state})")
    }
}

impl fmt::Display for Condition {
    /// The file syntax: `ref = { one_of = ["refs/heads/main"] }`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} = ", toml_key(&self.key))?;
        match &self.test {
            Test::Equals(s) => f.write_str(&super::declare::toml_string(s)),
            Test::IsBool(b) => write!(f, "{b}"),
            Test::OneOf(options) => {
                let list: Vec<String> = options
                    .iter()
                    .map(|o| super::declare::toml_string(o))
                    .collect();
                write!(f, "{{ one_of = [{}] }}", list.join(", "))
            }
            Test::Glob(glob) => write!(
                f,
                "{{ glob = {} }}",
                super::declare::toml_string(glob.as_str())
            ),
            Test::Present(p) => write!(f, "{{ present = {p} }}"),
            Test::SameAs(other) => {
                write!(f, "{{ same_as = {} }}", super::declare::toml_string(other))
            }
        }
    }
}

/// A TOML key: bare when it can be, quoted otherwise (dotted claim paths
/// are quoted, so they stay one key).
pub(crate) fn toml_key(key: &str) -> String {
    if !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        key.to_owned()
    } else {
        super::declare::toml_string(key)
    }
}

/// The named captures of one caller pattern: `{ns}` segments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Captures {
    /// The caller (index into the rule's callers) that declares them.
    pub(crate) caller: usize,
    /// The pattern as written, with its `{name}` segments.
    pub(crate) pattern: Arc<str>,
    /// Each name and the index of its path segment.
    pub(crate) names: CaptureNames,
}

impl Captures {
    /// The segment named `name` of `id`, if this pattern declares it.
    pub(crate) fn get<'a>(&self, id: &'a SpiffeId, name: &str) -> Option<&'a str> {
        let (_, at) = self.names.iter().find(|(n, _)| &**n == name)?;
        id.path().strip_prefix('/')?.split('/').nth(*at)
    }
}

/// Capture names and the index of the path segment each captures.
pub(crate) type CaptureNames = Vec<(Arc<str>, usize)>;

/// Splits a caller pattern with `{name}` segments into the plain pattern
/// (each capture a `*` segment) and the capture names with their segment
/// positions. `Ok(None)` for a pattern without captures.
pub(crate) fn split_captures(pattern: &str) -> Result<Option<(String, CaptureNames)>, String> {
    if !pattern.contains('{') && !pattern.contains('}') {
        return Ok(None);
    }
    let Some(rest) = pattern.strip_prefix("spiffe://") else {
        return Err("captures need a `spiffe://` pattern".into());
    };
    let Some((trust_domain, path)) = rest.split_once('/') else {
        return Err("has no path to capture from".into());
    };
    if trust_domain.contains(['{', '}']) {
        return Err("captures in the trust domain; capture path segments only".into());
    }
    let mut plain = format!("spiffe://{trust_domain}");
    let mut names: CaptureNames = Vec::new();
    for (i, segment) in path.split('/').enumerate() {
        plain.push('/');
        if let Some(name) = segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            let valid = !name.is_empty()
                && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                && !name.starts_with(|c: char| c.is_ascii_digit());
            if !valid {
                return Err(format!(
                    "has capture `{{{name}}}`; a capture name is letters, digits and `_`, not \
                     starting with a digit"
                ));
            }
            if names.iter().any(|(n, _)| &**n == name) {
                return Err(format!(
                    "captures `{name}` twice; give each capture its own name"
                ));
            }
            names.push((Arc::from(name), i));
            plain.push('*');
        } else if segment.contains('{') || segment.contains('}') {
            return Err(format!(
                "has segment `{segment}` with `{{` or `}}`; a capture is a whole segment, such as \
                 `{{ns}}`"
            ));
        } else {
            plain.push_str(segment);
        }
    }
    Ok(Some((plain, names)))
}

#[cfg(test)]
mod tests;
