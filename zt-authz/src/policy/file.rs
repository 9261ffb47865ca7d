//! The TOML policy file format (documented on the [module](super)).

use std::ops::Range;
use std::sync::Arc;

use serde::Deserialize;
use toml::Spanned;

use super::Policy;
use super::condition::{Condition, Test, ValueGlob};
use super::error::{Origin, PolicyError};
use super::rule::{Effect, Rule};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDoc {
    version: Option<Spanned<String>>,
    #[serde(default)]
    rule: Vec<Spanned<FileRule>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRule {
    id: Spanned<String>,
    effect: Spanned<String>,
    #[serde(default)]
    callers: Vec<Spanned<String>>,
    #[serde(default)]
    http: Vec<Spanned<FileHttp>>,
    #[serde(default)]
    grpc: Vec<Spanned<String>>,
    #[serde(default)]
    scopes: Vec<Spanned<String>>,
    #[serde(default)]
    when: std::collections::BTreeMap<Spanned<String>, Spanned<toml::Value>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileHttp {
    method: Option<Spanned<String>>,
    path: Spanned<String>,
}

/// A lenient reading of the same text, only to tell which rule a shape
/// error is in.
#[derive(Deserialize)]
struct LooseDoc {
    #[serde(default)]
    rule: Vec<Spanned<LooseRule>>,
}

#[derive(Deserialize)]
struct LooseRule {
    id: Option<String>,
}

pub(super) fn parse(text: &str, source_name: &str) -> Result<Policy, PolicyError> {
    let source: Arc<str> = Arc::from(source_name);
    let at = |span: Range<usize>| Origin::at(&source, text, span.start);
    let doc: FileDoc = toml::from_str(text).map_err(|e| {
        let offset = e.span().map_or(0, |s| s.start);
        PolicyError::File {
            origin: match e.span() {
                Some(span) => at(span),
                None => Origin::at(&source, "", 0),
            },
            rule_id: rule_around(text, offset),
            message: e.message().trim_end().to_owned(),
        }
    })?;

    let mut builder = Policy::builder();
    if let Some(version) = doc.version {
        let origin = at(version.span());
        builder = builder.version_at(version.into_inner(), origin);
    }
    for spanned in doc.rule {
        let rule_origin = at(spanned.span());
        let file_rule = spanned.into_inner();
        let id_origin = at(file_rule.id.span());
        let id = file_rule.id.into_inner();
        let Some(effect) = Effect::parse(file_rule.effect.get_ref()) else {
            return Err(PolicyError::UnknownEffect {
                origin: at(file_rule.effect.span()),
                rule_id: id,
                effect: file_rule.effect.into_inner(),
            });
        };
        let mut rule = Rule::new(&id, effect);
        rule.set_origin(if id.is_empty() {
            rule_origin
        } else {
            id_origin
        });
        for caller in file_rule.callers {
            rule = rule.caller(caller.get_ref()).map_err(|e| {
                let origin = at(caller_offset(text, &caller, &e));
                e.at(origin)
            })?;
        }
        for http in file_rule.http {
            let entry_origin = at(http.span());
            let entry = http.into_inner();
            let method = entry.method.as_ref().map_or("*", |m| m.get_ref().as_str());
            rule =
                rule.http(method, entry.path.get_ref())
                    .map_err(|e| match (&e, &entry.method) {
                        (PolicyError::BadMethod { .. }, Some(m)) => e.at(at(m.span())),
                        (PolicyError::BadPath { .. }, _) => e.at(at(entry.path.span())),
                        _ => e.at(entry_origin),
                    })?;
        }
        for grpc in file_rule.grpc {
            rule = rule
                .grpc(grpc.get_ref())
                .map_err(|e| e.at(at(grpc.span())))?;
        }
        for scope in file_rule.scopes {
            rule = rule
                .scope(scope.get_ref())
                .map_err(|e| e.at(at(scope.span())))?;
        }
        // In file order: the first condition that fails is the one reported.
        let mut when: Vec<_> = file_rule.when.into_iter().collect();
        when.sort_by_key(|(key, _)| key.span().start);
        for (key, value) in when {
            let condition = condition(key.get_ref(), value.get_ref()).map_err(|reason| {
                PolicyError::BadCondition {
                    origin: at(value.span()),
                    rule_id: id.clone(),
                    key: key.get_ref().clone(),
                    reason,
                }
            })?;
            rule = rule.when(condition);
        }
        builder = builder.rule(rule);
    }
    builder.build()
}

/// The id of the `[[rule]]` that contains byte `offset`, if the text reads
/// leniently enough to tell.
fn rule_around(text: &str, offset: usize) -> Option<String> {
    let loose: LooseDoc = toml::from_str(text).ok()?;
    loose
        .rule
        .iter()
        .rfind(|r| r.span().start <= offset)
        .and_then(|r| r.get_ref().id.clone())
}

/// The span of a bad caller, narrowed to the offending character when the
/// pattern is a plain string (no escapes) and the error knows its position.
fn caller_offset(text: &str, caller: &Spanned<String>, error: &PolicyError) -> Range<usize> {
    let span = caller.span();
    let position = match error {
        PolicyError::BadCaller { source, .. } => source.position(),
        _ => None,
    };
    let plain = text
        .get(span.clone())
        .is_some_and(|raw| raw.len() == caller.get_ref().len() + 2);
    match position {
        Some(p) if plain => {
            let start = span.start + 1 + p;
            start..start
        }
        _ => span,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WhenDoc {
    when: std::collections::BTreeMap<Spanned<String>, Spanned<toml::Value>>,
}

/// The conditions of a `when` table written alone, `{ ns = "prod" }`: what
/// `#[callers(when = "...")]` holds. Errors name the key and what is wrong.
pub(super) fn parse_when(text: &str) -> Result<Vec<Condition>, (String, String)> {
    let doc: WhenDoc = toml::from_str(&format!("when = {text}")).map_err(|e| {
        (
            String::new(),
            format!("is not a TOML inline table: {}", e.message().trim_end()),
        )
    })?;
    let mut when: Vec<_> = doc.when.into_iter().collect();
    when.sort_by_key(|(key, _)| key.span().start);
    when.into_iter()
        .map(|(key, value)| {
            condition(key.get_ref(), value.get_ref()).map_err(|e| (key.into_inner(), e))
        })
        .collect()
}

/// One `when` entry: `key = "v"`, `key = true`, or
/// `key = { one_of = [..] | glob = ".." | present = bool | same_as = ".." }`.
fn condition(key: &str, value: &toml::Value) -> Result<Condition, String> {
    use toml::Value;
    if key.is_empty() {
        return Err("has an empty key; name a context key or a caller capture".into());
    }
    let test = match value {
        Value::String(s) => Test::Equals(s.as_str().into()),
        Value::Boolean(b) => Test::IsBool(*b),
        Value::Table(table) => {
            let mut entries = table.iter();
            let (Some((kind, arg)), None) = (entries.next(), entries.next()) else {
                return Err(
                    "must be a table with exactly one of `one_of`, `glob`, `present`, `same_as`"
                        .into(),
                );
            };
            match (kind.as_str(), arg) {
                ("one_of", Value::Array(items)) => {
                    if items.is_empty() {
                        return Err("has an empty `one_of`, which no value satisfies; list at \
                                    least one value"
                            .into());
                    }
                    let options = items
                        .iter()
                        .map(|item| match item {
                            Value::String(s) => Ok(s.as_str().into()),
                            other => Err(format!(
                                "has `one_of` with a {}; list strings",
                                other.type_str()
                            )),
                        })
                        .collect::<Result<Vec<Box<str>>, String>>()?;
                    Test::OneOf(options)
                }
                ("glob", Value::String(s)) => {
                    Test::Glob(ValueGlob::parse(s).map_err(|e| format!("has glob `{s}` that {e}"))?)
                }
                ("present", Value::Boolean(b)) => Test::Present(*b),
                ("same_as", Value::String(s)) if !s.is_empty() => Test::SameAs(s.as_str().into()),
                ("one_of" | "glob" | "present" | "same_as", other) => {
                    return Err(format!(
                        "has `{kind}` = a {}; write {}",
                        other.type_str(),
                        match kind.as_str() {
                            "one_of" => "a list of strings",
                            "present" => "true or false",
                            _ => "a non-empty string",
                        }
                    ));
                }
                (other, _) => {
                    return Err(format!(
                        "has unknown test `{other}`; write `one_of`, `glob`, `present` or `same_as` (a dotted claim key must be quoted: `\"kubernetes.io.namespace\" = ..`)"
                    ));
                }
            }
        }
        other => {
            return Err(format!(
                "is a {}; write a string, a boolean, or a table such as \
                 {{ one_of = [\"a\", \"b\"] }}",
                other.type_str()
            ));
        }
    };
    Ok(Condition::new(key, test))
}
