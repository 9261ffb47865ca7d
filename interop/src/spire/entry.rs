//! Registration entries: what a test asks for ([`EntrySpec`]) and what SPIRE
//! stored ([`Entry`], parsed from `spire-server entry ... -output json`).

use std::fs::{self, File};
use std::io::{Read as _, Seek as _, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use super::{Component, DEFAULT_ENTRY_TIMEOUT, POLL_INTERVAL, Spire};
use crate::error::{Error, Result};
use crate::util::{self, Attempt};

/// A registration entry to create: a SPIFFE ID and the selectors a process
/// must match, plus SPIRE's optional entry fields.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EntrySpec {
    pub(super) spiffe_id: String,
    pub(super) parent_id: Option<String>,
    pub(super) selectors: Vec<String>,
    pub(super) hint: Option<String>,
    pub(super) x509_svid_ttl: Option<Duration>,
    pub(super) jwt_svid_ttl: Option<Duration>,
    pub(super) federates_with: Vec<String>,
    pub(super) dns_names: Vec<String>,
    pub(super) entry_id: Option<String>,
}

impl EntrySpec {
    /// An entry for `spiffe_id` with no selectors yet. The parent defaults to
    /// the harness agent's node alias, so the agent serves it.
    #[must_use]
    pub fn new(spiffe_id: impl Into<String>) -> Self {
        Self {
            spiffe_id: spiffe_id.into(),
            ..Self::default()
        }
    }

    /// An entry matching one executable run by this user: selectors
    /// `unix:path:<canonical path>` and `unix:uid:<current uid>`.
    ///
    /// # Errors
    /// When the path cannot be canonicalized or the uid read.
    pub fn for_executable(spiffe_id: impl Into<String>, path: &Path) -> Result<Self> {
        let canonical = path
            .canonicalize()
            .map_err(|e| Error::io(format!("canonicalize {}", path.display()), &e))?;
        Ok(Self::new(spiffe_id)
            .unix_path(&canonical)
            .unix_uid(util::current_uid()?))
    }

    /// An entry matching the running test binary (`current_exe`) and uid.
    ///
    /// # Errors
    /// As [`EntrySpec::for_executable`].
    pub fn for_current_exe(spiffe_id: impl Into<String>) -> Result<Self> {
        let exe = std::env::current_exe().map_err(|e| Error::io("current_exe", &e))?;
        Self::for_executable(spiffe_id, &exe)
    }

    /// Adds a selector `type:value`, e.g. `unix:uid:1000`.
    #[must_use]
    pub fn selector(mut self, selector: impl Into<String>) -> Self {
        self.selectors.push(selector.into());
        self
    }

    /// Adds `unix:uid:<uid>`.
    #[must_use]
    pub fn unix_uid(self, uid: u32) -> Self {
        self.selector(format!("unix:uid:{uid}"))
    }

    /// Adds `unix:gid:<gid>`.
    #[must_use]
    pub fn unix_gid(self, gid: u32) -> Self {
        self.selector(format!("unix:gid:{gid}"))
    }

    /// Adds `unix:path:<path>` (the agent compares it with the process's
    /// `/proc/<pid>/exe`, a canonical path).
    #[must_use]
    pub fn unix_path(self, path: &Path) -> Self {
        self.selector(format!("unix:path:{}", path.display()))
    }

    /// Adds `unix:sha256:<hex digest of the executable>`.
    #[must_use]
    pub fn unix_sha256(self, hex_digest: impl AsRef<str>) -> Self {
        self.selector(format!("unix:sha256:{}", hex_digest.as_ref()))
    }

    /// The entry's parent SPIFFE ID (default: the harness agent's alias).
    #[must_use]
    pub fn parent_id(mut self, parent: impl Into<String>) -> Self {
        self.parent_id = Some(parent.into());
        self
    }

    /// The entry hint (`-hint`), returned with the SVIDs.
    #[must_use]
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// The X.509-SVID TTL of this entry (`-x509SVIDTTL`, whole seconds).
    #[must_use]
    pub fn x509_svid_ttl(mut self, ttl: Duration) -> Self {
        self.x509_svid_ttl = Some(ttl);
        self
    }

    /// The JWT-SVID TTL of this entry (`-jwtSVIDTTL`, whole seconds).
    #[must_use]
    pub fn jwt_svid_ttl(mut self, ttl: Duration) -> Self {
        self.jwt_svid_ttl = Some(ttl);
        self
    }

    /// A trust domain whose bundle the workload receives (`-federatesWith`);
    /// `example.com` or `spiffe://example.com`.
    #[must_use]
    pub fn federates_with(mut self, trust_domain: impl AsRef<str>) -> Self {
        let td = trust_domain.as_ref();
        let id = if td.starts_with("spiffe://") {
            td.to_string()
        } else {
            format!("spiffe://{td}")
        };
        self.federates_with.push(id);
        self
    }

    /// A DNS SAN for the X.509-SVID (`-dns`).
    #[must_use]
    pub fn dns(mut self, name: impl Into<String>) -> Self {
        self.dns_names.push(name.into());
        self
    }

    /// A fixed entry ID instead of a generated UUID (`-entryID`).
    #[must_use]
    pub fn entry_id(mut self, id: impl Into<String>) -> Self {
        self.entry_id = Some(id.into());
        self
    }

    /// The SPIFFE ID.
    #[must_use]
    pub fn spiffe_id(&self) -> &str {
        &self.spiffe_id
    }

    pub(super) fn cli_args(&self, default_parent: &str) -> Vec<String> {
        let mut args = vec![
            "entry".to_string(),
            "create".to_string(),
            "-spiffeID".to_string(),
            self.spiffe_id.clone(),
            "-parentID".to_string(),
            self.parent_id
                .clone()
                .unwrap_or_else(|| default_parent.to_string()),
        ];
        for s in &self.selectors {
            args.extend(["-selector".to_string(), s.clone()]);
        }
        if let Some(h) = &self.hint {
            args.extend(["-hint".to_string(), h.clone()]);
        }
        if let Some(t) = self.x509_svid_ttl {
            args.extend(["-x509SVIDTTL".to_string(), t.as_secs().to_string()]);
        }
        if let Some(t) = self.jwt_svid_ttl {
            args.extend(["-jwtSVIDTTL".to_string(), t.as_secs().to_string()]);
        }
        for f in &self.federates_with {
            args.extend(["-federatesWith".to_string(), f.clone()]);
        }
        for d in &self.dns_names {
            args.extend(["-dns".to_string(), d.clone()]);
        }
        if let Some(id) = &self.entry_id {
            args.extend(["-entryID".to_string(), id.clone()]);
        }
        args.extend(["-output".to_string(), "json".to_string()]);
        args
    }
}

/// A registration entry as SPIRE stored it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Entry {
    /// The entry ID (a UUID unless one was given).
    pub id: String,
    /// `spiffe://...` of the entry.
    pub spiffe_id: String,
    /// `spiffe://...` of its parent.
    pub parent_id: String,
    /// Selectors as `type:value`.
    pub selectors: Vec<String>,
    /// The hint, when set.
    pub hint: Option<String>,
    /// X.509-SVID TTL in seconds (0: the server default).
    pub x509_svid_ttl: u64,
    /// JWT-SVID TTL in seconds (0: the server default).
    pub jwt_svid_ttl: u64,
    /// Federated trust domains (as SPIRE returns them).
    pub federates_with: Vec<String>,
    /// DNS SANs.
    pub dns_names: Vec<String>,
    /// Revision number (SPIRE bumps it on update).
    pub revision_number: u64,
    /// The entry as SPIRE printed it.
    pub raw: Value,
}

fn id_of(v: &Value) -> Option<String> {
    let td = v.get("trust_domain")?.as_str()?;
    let path = v.get("path").and_then(Value::as_str).unwrap_or("");
    Some(format!("spiffe://{td}{path}"))
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn number(v: Option<&Value>) -> u64 {
    match v {
        Some(Value::Number(n)) => n.as_u64().unwrap_or(0),
        Some(Value::String(s)) => s.parse().unwrap_or(0),
        _ => 0,
    }
}

impl Entry {
    /// Parses one entry object of SPIRE's JSON output.
    ///
    /// # Errors
    /// [`Error::Parse`] when `id` or `spiffe_id` is missing.
    pub fn from_json(v: &Value) -> Result<Self> {
        let bad = |what: &str| Error::Parse(format!("entry JSON without {what}: {v}"));
        let selectors = v
            .get("selectors")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|s| {
                        Some(format!(
                            "{}:{}",
                            s.get("type")?.as_str()?,
                            s.get("value")?.as_str()?
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(Self {
            id: v
                .get("id")
                .and_then(Value::as_str)
                .ok_or_else(|| bad("id"))?
                .to_string(),
            spiffe_id: v
                .get("spiffe_id")
                .and_then(id_of)
                .ok_or_else(|| bad("spiffe_id"))?,
            parent_id: v.get("parent_id").and_then(id_of).unwrap_or_default(),
            selectors,
            hint: v
                .get("hint")
                .and_then(Value::as_str)
                .filter(|h| !h.is_empty())
                .map(str::to_string),
            x509_svid_ttl: number(v.get("x509_svid_ttl")),
            jwt_svid_ttl: number(v.get("jwt_svid_ttl")),
            federates_with: strings(v.get("federates_with")),
            dns_names: strings(v.get("dns_names")),
            revision_number: number(v.get("revision_number")),
            raw: v.clone(),
        })
    }
}

impl Spire {
    /// Creates a registration entry and returns it as SPIRE stored it. It
    /// reaches the agent about one sync later; see [`Spire::wait_for_entry`].
    ///
    /// # Errors
    /// When SPIRE refuses it (the message says why).
    pub fn create_entry(&self, spec: &EntrySpec) -> Result<Entry> {
        let args = spec.cli_args(&self.node_alias_id());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = self.server_cli_json(&args)?;
        let result = first_result(&out, "entry create")?;
        Entry::from_json(result.get("entry").unwrap_or(&Value::Null))
    }

    /// [`Spire::create_entry`], then [`Spire::wait_for_entry`] with
    /// [`DEFAULT_ENTRY_TIMEOUT`].
    ///
    /// # Errors
    /// As both.
    pub fn register(&self, spec: &EntrySpec) -> Result<Entry> {
        let entry = self.create_entry(spec)?;
        self.wait_for_entry(&entry.id, DEFAULT_ENTRY_TIMEOUT)?;
        Ok(entry)
    }

    /// Deletes the entry with this ID.
    ///
    /// # Errors
    /// When SPIRE refuses (e.g. no such entry).
    pub fn delete_entry(&self, id: &str) -> Result<()> {
        let out = self.server_cli_json(&["entry", "delete", "-entryID", id])?;
        first_result(&out, "entry delete").map(|_| ())
    }

    /// Every registration entry, the node alias included.
    ///
    /// # Errors
    /// When the CLI fails or prints something unexpected.
    pub fn entries(&self) -> Result<Vec<Entry>> {
        let out = self.server_cli_json(&["entry", "show"])?;
        out.get("entries")
            .and_then(Value::as_array)
            .map_or(&[][..], Vec::as_slice)
            .iter()
            .map(Entry::from_json)
            .collect()
    }

    /// The agent log's current length: pass it to
    /// [`Spire::wait_for_agent_log`] to wait only for what comes after.
    #[must_use]
    pub fn agent_log_position(&self) -> u64 {
        fs::metadata(self.layout.agent_log())
            .map(|m| m.len())
            .unwrap_or(0)
    }

    /// Waits until the agent logs a JSON line, at or after byte `since`,
    /// that satisfies `pred`, and returns it. Fails at once if the agent
    /// exits.
    ///
    /// # Errors
    /// Timeout (with log tails), or the agent's exit.
    pub fn wait_for_agent_log(
        &self,
        since: u64,
        what: &str,
        timeout: Duration,
        mut pred: impl FnMut(&Value) -> bool,
    ) -> Result<Value> {
        let mut cursor = LogCursor {
            path: self.layout.agent_log(),
            pos: since,
        };
        let result = util::poll(what, timeout, POLL_INTERVAL, || {
            for line in cursor.read_new()? {
                if let Ok(v) = serde_json::from_str::<Value>(&line)
                    && pred(&v)
                {
                    return Ok(Attempt::Done(v));
                }
            }
            self.check_running(Component::Agent)?;
            Ok(Attempt::NotYet(format!(
                "no matching line in {}",
                cursor.path.display()
            )))
        });
        result.map_err(|e| match e {
            Error::Timeout(_) => self.with_logs(e),
            other => other,
        })
    }

    /// Waits until the entry has reached the agent and the agent holds an
    /// X.509-SVID for it (its log says `SVID updated` for the entry ID);
    /// from then on matching processes get that SVID from the Workload API.
    /// Returns at once when that already happened.
    ///
    /// # Errors
    /// Timeout (with log tails), or the agent's exit.
    pub fn wait_for_entry(&self, id: &str, timeout: Duration) -> Result<()> {
        self.wait_for_agent_log(0, &format!("entry {id} reaching the agent"), timeout, |v| {
            v.get("msg").and_then(Value::as_str) == Some("SVID updated")
                && v.get("entry").and_then(Value::as_str) == Some(id)
        })
        .map(|_| ())
    }

    /// Waits until the agent has dropped the entry (its log says `Entry
    /// removed` for the entry ID).
    ///
    /// # Errors
    /// Timeout (with log tails), or the agent's exit.
    pub fn wait_for_entry_removed(&self, id: &str, timeout: Duration) -> Result<()> {
        self.wait_for_agent_log(0, &format!("entry {id} leaving the agent"), timeout, |v| {
            v.get("msg").and_then(Value::as_str) == Some("Entry removed")
                && v.get("entry").and_then(Value::as_str) == Some(id)
        })
        .map(|_| ())
    }
}

/// The first of `results` in a batch answer; an error unless its status
/// code is 0 (OK).
pub(super) fn first_result<'a>(out: &'a Value, what: &str) -> Result<&'a Value> {
    let result = out
        .get("results")
        .and_then(Value::as_array)
        .and_then(|r| r.first())
        .ok_or_else(|| Error::Parse(format!("`{what}` printed no results: {out}")))?;
    let code = result
        .pointer("/status/code")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    if code == 0 {
        Ok(result)
    } else {
        let message = result
            .pointer("/status/message")
            .and_then(Value::as_str)
            .unwrap_or("?");
        Err(Error::Command(format!(
            "`{what}` refused (code {code}): {message}"
        )))
    }
}

/// Reads complete new lines of a growing file.
pub(super) struct LogCursor {
    pub(super) path: PathBuf,
    pub(super) pos: u64,
}

impl LogCursor {
    pub(super) fn read_new(&mut self) -> Result<Vec<String>> {
        let mut file = match File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io(format!("open {}", self.path.display()), &e)),
        };
        file.seek(SeekFrom::Start(self.pos))
            .map_err(|e| Error::io(format!("seek {}", self.path.display()), &e))?;
        let mut buf = Vec::new();
        file.read_to_end(&mut buf)
            .map_err(|e| Error::io(format!("read {}", self.path.display()), &e))?;
        // Only whole lines; a partial last line is read again next time.
        let Some(end) = buf.iter().rposition(|b| *b == b'\n') else {
            return Ok(Vec::new());
        };
        self.pos += end as u64 + 1;
        Ok(String::from_utf8_lossy(&buf[..end])
            .lines()
            .map(str::to_string)
            .collect())
    }
}
