//! Revocation: a deny-list of SPIFFE IDs and leaf certificate serials that
//! takes effect at once, without a restart.
//!
//! A [`RevocationSet`] is an immutable list. [`Revocations`] is a shared,
//! hot-updatable handle to one: the TLS layers check it at every handshake
//! (through [`PeerVerifier`](crate::peer::PeerVerifier)) and the
//! authorization layer checks it on every request, so a revoked caller on an
//! open keep-alive connection is refused at its next request. Updates come
//! from the API ([`Revocations::revoke_id`], [`Revocations::revoke_serial`],
//! …) or from a file ([`Revocations::from_file`], [`Revocations::reload`],
//! [`Revocations::watch`]). Readers never take a lock: the list sits behind
//! an atomically swapped pointer.
//!
//! Revoking an ID refuses every SVID with that ID; revoking a serial
//! refuses one certificate (a leaked key) while the workload's next SVID,
//! with a new serial, is accepted.
//!
//! # File format
//!
//! ```toml
//! ids = ["spiffe://example.org/ns/prod/sa/compromised"]
//! serials = ["3a:9f:01", "0x5c22", "1234567890"]
//! ```
//!
//! Serials are written as [`parse_serial`] reads them: decimal digits (as
//! SPIRE prints serials), `0x`-prefixed hex, or colon-separated hex pairs
//! (as openssl prints them). Bare hex with letters is refused as ambiguous.
//!
//! Unknown fields are errors; an invalid file leaves the list in force
//! unchanged.
//!
//! # Examples
//!
//! ```
//! use zt_core::SpiffeId;
//! use zt_core::revocation::{Revocations, Revoked};
//!
//! let revocations = Revocations::new();
//! let billing = SpiffeId::new("spiffe://example.org/ns/prod/sa/billing")?;
//! assert_eq!(revocations.check(&billing, &[0x01]), None);
//!
//! revocations.revoke_id(billing.clone());
//! assert_eq!(revocations.check(&billing, &[0x01]), Some(Revoked::Id));
//!
//! revocations.reinstate_id(&billing);
//! revocations.revoke_serial(&[0x01]);
//! assert_eq!(revocations.check(&billing, &[0x01]), Some(Revoked::Serial));
//! assert_eq!(revocations.check(&billing, &[0x02]), None);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use serde::Deserialize;
use toml::Spanned;

use crate::SpiffeId;
use crate::crl::{CertRef, CrlError};
use crate::id::parse_canonical;
use crate::origin::Origin;
use crate::reload::FileDigest;
pub use crate::reload::ReloadOutcome;
use crate::serial::{SerialError, parse_serial};
use crate::source::WatchHandle;
use crate::time::{SharedClock, system_clock};
use crate::x509::VerifiedSvid;

mod crls;

/// Why a caller is refused by a [`RevocationSet`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Revoked {
    /// The caller's SPIFFE ID is revoked.
    Id,
    /// The caller's leaf certificate serial is revoked.
    Serial,
    /// A certificate of the caller's chain (the leaf or an intermediate) is
    /// listed by a verified [CRL](crate::crl) of its issuer.
    Crl,
    /// A CRL of the issuer of the caller's chain is past its `nextUpdate`
    /// and the trust domain's policy is
    /// [`RefuseIssued`](crate::crl::StaleCrlPolicy::RefuseIssued).
    CrlStale,
}

impl Revoked {
    /// A short, stable name for logs and audit records.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Id => "revoked-id",
            Self::Serial => "revoked-serial",
            Self::Crl => "revoked-by-crl",
            Self::CrlStale => "crl-stale",
        }
    }
}

impl fmt::Display for Revoked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An immutable deny-list of SPIFFE IDs and leaf serials.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RevocationSet {
    ids: HashSet<SpiffeId>,
    serials: HashSet<Box<[u8]>>,
}

/// A serial in canonical form: big-endian, no leading zero bytes (as
/// [`VerifiedSvid::serial`](crate::x509::VerifiedSvid::serial) gives it).
fn canonical_serial(serial: &[u8]) -> &[u8] {
    let start = serial.iter().position(|&b| b != 0).unwrap_or(serial.len());
    &serial[start..]
}

impl RevocationSet {
    /// An empty list.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a revoked SPIFFE ID.
    #[must_use]
    pub fn with_id(mut self, id: SpiffeId) -> Self {
        self.ids.insert(id);
        self
    }

    /// Adds a revoked leaf serial (big-endian bytes; leading zeros are
    /// ignored).
    #[must_use]
    pub fn with_serial(mut self, serial: &[u8]) -> Self {
        self.serials.insert(canonical_serial(serial).into());
        self
    }

    /// Why `id` with leaf `serial` is revoked, or `None` if it is not.
    pub fn check(&self, id: &SpiffeId, serial: &[u8]) -> Option<Revoked> {
        if !self.ids.is_empty() && self.ids.contains(id) {
            return Some(Revoked::Id);
        }
        if !self.serials.is_empty() && self.serials.contains(canonical_serial(serial)) {
            return Some(Revoked::Serial);
        }
        None
    }

    /// `true` if `id` is revoked as a whole.
    pub fn is_id_revoked(&self, id: &SpiffeId) -> bool {
        self.ids.contains(id)
    }

    /// The revoked IDs.
    pub fn ids(&self) -> impl Iterator<Item = &SpiffeId> {
        self.ids.iter()
    }

    /// The revoked serials, canonical (no leading zero bytes).
    pub fn serials(&self) -> impl Iterator<Item = &[u8]> {
        self.serials.iter().map(|s| &**s)
    }

    /// How many IDs and serials are revoked.
    pub fn len(&self) -> usize {
        self.ids.len() + self.serials.len()
    }

    /// `true` if nothing is revoked.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty() && self.serials.is_empty()
    }

    /// Reads a list from TOML text (format in the [module docs](self));
    /// `source_name` names it in errors.
    ///
    /// # Errors
    ///
    /// [`RevocationError::File`] for text that is not the format,
    /// [`RevocationError::BadId`] or [`RevocationError::BadSerial`] for an
    /// entry that does not parse. Nothing is returned unless every entry is
    /// valid.
    pub fn from_toml_str(text: &str, source_name: &str) -> Result<Self, RevocationError> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Doc {
            #[serde(default)]
            ids: Vec<Spanned<String>>,
            #[serde(default)]
            serials: Vec<Spanned<String>>,
        }
        let source: Arc<str> = Arc::from(source_name);
        let doc: Doc = toml::from_str(text).map_err(|e| RevocationError::File {
            origin: Origin::at(&source, text, e.span().map_or(0, |s| s.start)),
            reason: e.message().to_owned(),
        })?;
        let mut set = Self::new();
        for id in doc.ids {
            let parsed = parse_canonical(id.get_ref()).map_err(|e| RevocationError::BadId {
                origin: Origin::at(&source, text, id.span().start),
                id: id.get_ref().clone(),
                reason: e.to_string(),
            })?;
            set.ids.insert(parsed);
        }
        for serial in doc.serials {
            let bytes =
                parse_serial(serial.get_ref()).map_err(|reason| RevocationError::BadSerial {
                    origin: Origin::at(&source, text, serial.span().start),
                    serial: serial.get_ref().clone(),
                    reason,
                })?;
            set.serials.insert(bytes.into());
        }
        Ok(set)
    }
}

/// Why a revocation list could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RevocationError {
    /// The file could not be read.
    #[error("cannot read revocation list {path}: {reason}")]
    Io {
        /// The file.
        path: String,
        /// The I/O error.
        reason: String,
    },
    /// The text is not TOML of the expected shape (unknown field, wrong
    /// type).
    #[error("{origin}: {reason}")]
    File {
        /// Where.
        origin: Origin,
        /// What was wrong.
        reason: String,
    },
    /// An entry of `ids` is not a canonical SPIFFE ID.
    #[error("{origin}: revoked ID `{id}` is not a SPIFFE ID: {reason}")]
    BadId {
        /// Where.
        origin: Origin,
        /// The entry.
        id: String,
        /// Why it does not parse.
        reason: String,
    },
    /// An entry of `serials` is not a serial in an accepted form
    /// ([`parse_serial`]).
    #[error("{origin}: revoked serial `{serial}` {reason}")]
    BadSerial {
        /// Where.
        origin: Origin,
        /// The entry.
        serial: String,
        /// Why it does not parse.
        reason: SerialError,
    },
    /// A CRL was refused (it changed nothing), or one in force is stale.
    #[error(transparent)]
    Crl(#[from] CrlError),
}

/// A shared, hot-updatable revocation list. Cheap to clone: clones share
/// the list, so a revocation through one is seen by all at once.
#[derive(Clone, Default)]
pub struct Revocations {
    inner: Arc<Inner>,
}

/// A stale CRL, by source and issuer name.
type StaleKey = (Arc<str>, Box<[u8]>);

struct Inner {
    current: ArcSwap<RevocationSet>,
    file: Option<PathBuf>,
    digest: FileDigest,
    /// Serialises writers (API calls and reloads) so that no update is lost
    /// between a read and a swap. Readers never take it.
    write: Mutex<()>,
    last_error: Mutex<Option<RevocationError>>,
    /// The version of the list, bumped on every effective change.
    version: tokio::sync::watch::Sender<u64>,
    /// The CRLs in force, by source, and the stale-CRL policies.
    crls: ArcSwap<crls::CrlState>,
    /// CRL files read again by `reload`.
    crl_files: Mutex<Vec<crls::CrlFile>>,
    /// The time CRL staleness is judged at.
    clock: ArcSwap<SharedClock>,
    /// The last refused CRL of each source, until one is accepted.
    crl_errors: Mutex<BTreeMap<Arc<str>, CrlError>>,
    /// Stale CRLs already reported, by source and issuer.
    stale_reported: Mutex<HashSet<StaleKey>>,
    /// Revoked token IDs (`jti`), each with the time after which the token
    /// has expired anyway and the entry can go. Kept apart from the
    /// deny-list, so a reload of the list file does not lift them.
    token_ids: ArcSwap<HashMap<Box<str>, SystemTime>>,
}

impl Default for Inner {
    fn default() -> Self {
        Self {
            current: ArcSwap::default(),
            file: None,
            digest: FileDigest::default(),
            write: Mutex::new(()),
            last_error: Mutex::new(None),
            version: tokio::sync::watch::Sender::new(0),
            crls: ArcSwap::default(),
            crl_files: Mutex::new(Vec::new()),
            crl_errors: Mutex::new(BTreeMap::new()),
            clock: ArcSwap::from_pointee(system_clock()),
            stale_reported: Mutex::new(HashSet::new()),
            token_ids: ArcSwap::default(),
        }
    }
}

impl fmt::Debug for Revocations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Revocations")
            .field("file", &self.inner.file)
            .field("revoked", &self.inner.current.load().len())
            .field("crls", &self.inner.crls.load().set.iter().count())
            .finish()
    }
}

impl Revocations {
    /// An empty list, updated through the API.
    pub fn new() -> Self {
        Self::default()
    }

    /// A list holding `set`.
    pub fn from_set(set: RevocationSet) -> Self {
        let revocations = Self::new();
        revocations.inner.current.store(Arc::new(set));
        revocations
    }

    /// A list read from `path` (format in the [module docs](self)), which
    /// [`reload`](Self::reload) and [`watch`](Self::watch) read again.
    ///
    /// # Errors
    ///
    /// As [`RevocationSet::from_toml_str`], or [`RevocationError::Io`].
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, RevocationError> {
        let path = path.as_ref().to_path_buf();
        let inner = Inner {
            file: Some(path),
            ..Inner::default()
        };
        let revocations = Self {
            inner: Arc::new(inner),
        };
        revocations.reload()?;
        Ok(revocations)
    }

    /// The list in force now.
    pub fn current(&self) -> Arc<RevocationSet> {
        self.inner.current.load_full()
    }

    /// Why `id` with leaf `serial` is revoked, or `None`. Lock-free.
    ///
    /// Besides the deny-list, a serial listed by a verified CRL of `id`'s
    /// trust domain counts ([`Revoked::Crl`]). This check does not see the
    /// leaf's issuer, so a CRL of any issuer of the trust domain counts (a
    /// serial is unique only per issuer; if two CAs of one trust domain
    /// ever drew the same serial, this errs on refusal). Callers that hold
    /// the verified chain use [`check_svid`](Self::check_svid) or
    /// [`check_chain`](Self::check_chain), which scope CRLs by issuer and
    /// also catch a revoked intermediate.
    pub fn check(&self, id: &SpiffeId, serial: &[u8]) -> Option<Revoked> {
        if let Some(why) = self.inner.current.load().check(id, serial) {
            return Some(why);
        }
        self.check_crls(id.trust_domain(), std::iter::once((None, serial)))
    }

    /// Why the peer `id`, whose verified path (leaf first, as
    /// [`VerifiedSvid::path`] gives it) is `path`, is revoked, or `None`:
    /// the deny-list for `id` and the leaf's serial, then the CRLs of `id`'s
    /// trust domain for every certificate of the path, each scoped by its
    /// issuer. Lock-free.
    pub fn check_chain(&self, id: &SpiffeId, path: &[CertRef]) -> Option<Revoked> {
        let leaf_serial = path.first().map_or(&[][..], CertRef::serial);
        if let Some(why) = self.inner.current.load().check(id, leaf_serial) {
            return Some(why);
        }
        self.check_crls(
            id.trust_domain(),
            path.iter().map(|c| (Some(c.issuer()), c.serial())),
        )
    }

    /// Why `id` with a leaf of serial `serial` issued by the CA named
    /// `issuer` (DER contents of the `Name`) is revoked, or `None`: the
    /// deny-list, then the CRLs of `id`'s trust domain from that issuer.
    /// For callers that hold the leaf but not the chain (the authorization
    /// layer); a revoked intermediate is seen by
    /// [`check_chain`](Self::check_chain) only. Lock-free.
    pub fn check_issued(&self, id: &SpiffeId, issuer: &[u8], serial: &[u8]) -> Option<Revoked> {
        if let Some(why) = self.inner.current.load().check(id, serial) {
            return Some(why);
        }
        self.check_crls(id.trust_domain(), std::iter::once((Some(issuer), serial)))
    }

    /// [`check_chain`](Self::check_chain) for a verified SVID: what the TLS
    /// verifiers call at every handshake.
    pub fn check_svid(&self, svid: &VerifiedSvid) -> Option<Revoked> {
        self.check_chain(svid.id(), svid.path())
    }

    /// A receiver of the list's version, a counter bumped on every
    /// effective change of what [`check`](Self::check) answers: an ID or
    /// serial revoked or reinstated through the API, a
    /// [`replace`](Self::replace) with a different list, a file reload that
    /// changed the entries. An update that leaves the entries as they were
    /// (revoking what is already revoked, reloading an edited file with the
    /// same entries) does not bump it.
    ///
    /// Holders of long-lived state judged against the list (open
    /// connections) wait on [`changed`](tokio::sync::watch::Receiver::changed)
    /// and re-check when it fires, instead of polling. The version starts
    /// at 0; several changes in quick succession may be seen as one. Works
    /// with or without a Tokio runtime; waiting needs one.
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.version.subscribe()
    }

    fn update(&self, change: impl FnOnce(&mut RevocationSet)) {
        self.inner.update(change);
    }

    /// Revokes every SVID with this ID, from the next handshake or request
    /// on.
    pub fn revoke_id(&self, id: SpiffeId) {
        tracing::warn!(target: "zt::revocation", id = %id, "SPIFFE ID revoked");
        self.update(|set| {
            set.ids.insert(id);
        });
    }

    /// Revokes one leaf certificate by serial (big-endian bytes).
    pub fn revoke_serial(&self, serial: &[u8]) {
        let canonical = canonical_serial(serial);
        tracing::warn!(target: "zt::revocation", serial = %hex::encode(canonical), "certificate serial revoked");
        self.update(|set| {
            set.serials.insert(canonical.into());
        });
    }

    /// Revokes one token by its token ID (the JWT `jti` claim), from the
    /// next request on, in every validator that checks this list (the
    /// user-context checks of `zt_server::JwtAuthLayer`). `expires` is the
    /// token's `exp`: once it has passed (by the list's clock, plus
    /// [`MAX_LEEWAY`](crate::jwt::MAX_LEEWAY)) the token is refused as
    /// expired anyway, and the entry is dropped at a later revocation.
    ///
    /// Token revocations are kept apart from the ID and serial deny-list:
    /// a [`reload`](Self::reload) or [`replace`](Self::replace) does not
    /// lift them. Bumps the [`version`](Self::version) when the token was
    /// not revoked already.
    pub fn revoke_token_id(&self, token_id: &str, expires: SystemTime) {
        tracing::info!(target: "zt::revocation", token_id, "token revoked");
        let _writer = self
            .inner
            .write
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let current = self.inner.token_ids.load_full();
        if current.contains_key(token_id) {
            return;
        }
        let now = self.inner.now();
        let mut next: HashMap<Box<str>, SystemTime> = current
            .iter()
            .filter(|(_, until)| {
                until
                    .checked_add(crate::jwt::MAX_LEEWAY)
                    .is_none_or(|end| end >= now)
            })
            .map(|(id, until)| (id.clone(), *until))
            .collect();
        next.insert(token_id.into(), expires);
        self.inner.token_ids.store(Arc::new(next));
        self.inner.bump();
    }

    /// `true` if the token with ID `token_id` (its `jti`) is revoked.
    /// Lock-free.
    pub fn is_token_revoked(&self, token_id: &str) -> bool {
        let ids = self.inner.token_ids.load();
        !ids.is_empty() && ids.contains_key(token_id)
    }

    /// How many token IDs are held as revoked (expired entries are dropped
    /// at the next revocation).
    pub fn revoked_token_ids(&self) -> usize {
        self.inner.token_ids.load().len()
    }

    /// Lifts the revocation of an ID.
    pub fn reinstate_id(&self, id: &SpiffeId) {
        tracing::info!(target: "zt::revocation", id = %id, "SPIFFE ID reinstated");
        self.update(|set| {
            set.ids.remove(id);
        });
    }

    /// Lifts the revocation of a serial.
    pub fn reinstate_serial(&self, serial: &[u8]) {
        let canonical = canonical_serial(serial);
        self.update(|set| {
            set.serials.remove(canonical);
        });
    }

    /// Replaces the whole list.
    pub fn replace(&self, set: RevocationSet) {
        self.update(|current| *current = set);
    }

    /// Reads the file again and, if it changed and is valid, swaps it in.
    /// An invalid file leaves the list in force unchanged; the error is
    /// logged (target `zt::revocation`), kept for
    /// [`last_error`](Self::last_error) and returned. A list without a file
    /// reports [`ReloadOutcome::Unchanged`].
    ///
    /// A file reload replaces entries added through the API.
    ///
    /// # Errors
    ///
    /// As [`from_file`](Self::from_file).
    ///
    /// CRL files added with [`add_crl_file`](Self::add_crl_file) are read
    /// again as well; the first error is returned.
    pub fn reload(&self) -> Result<ReloadOutcome, RevocationError> {
        self.inner.reload_all()
    }

    /// The version of the list in force: 0 for the list as created,
    /// increased by one with every change of what it answers (the value
    /// [`changes`](Self::changes) carries).
    pub fn version(&self) -> u64 {
        *self.inner.version.borrow()
    }

    /// What is wrong now, if anything: the error of the last reload of the
    /// list file if it failed, else the last refused CRL of a source that
    /// has not delivered a valid one since, else a CRL in force that is
    /// stale ([`CrlError::Stale`]).
    pub fn last_error(&self) -> Option<RevocationError> {
        let list = self
            .inner
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        list.or_else(|| self.inner.crl_error())
    }

    /// Reloads the file and the CRL files every `interval` in a background
    /// task until the handle or every clone of this list is dropped, and
    /// reports CRLs that became stale. Must be called within a Tokio
    /// runtime.
    pub fn watch(&self, interval: Duration) -> WatchHandle {
        WatchHandle::poll(Arc::downgrade(&self.inner), interval, |inner: &Inner| {
            // Failures are logged and kept for `last_error`.
            let _ = inner.reload_all();
            inner.report_stale();
        })
    }
}

impl Inner {
    fn update(&self, change: impl FnOnce(&mut RevocationSet)) {
        let _writer = self.write.lock().unwrap_or_else(PoisonError::into_inner);
        let current = self.current.load_full();
        let mut next = RevocationSet::clone(&current);
        change(&mut next);
        if next == *current {
            return;
        }
        self.current.store(Arc::new(next));
        self.bump();
    }

    fn reload_all(&self) -> Result<ReloadOutcome, RevocationError> {
        let list = self.reload();
        let crls = self.reload_crl_files();
        match (list, crls) {
            (Err(e), _) | (Ok(_), Err(e)) => Err(e),
            (Ok(ReloadOutcome::Applied), _) | (_, Ok(ReloadOutcome::Applied)) => {
                Ok(ReloadOutcome::Applied)
            }
            (Ok(outcome), Ok(_)) => Ok(outcome),
        }
    }

    fn reload(&self) -> Result<ReloadOutcome, RevocationError> {
        let Some(path) = &self.file else {
            return Ok(ReloadOutcome::Unchanged);
        };
        let result = std::fs::read(path)
            .map_err(|e| RevocationError::Io {
                path: path.display().to_string(),
                reason: e.to_string(),
            })
            .and_then(|bytes| {
                if !self.digest.update(&bytes) {
                    return Ok(None);
                }
                let text = String::from_utf8(bytes).map_err(|e| RevocationError::Io {
                    path: path.display().to_string(),
                    reason: format!("not UTF-8 text ({})", e.utf8_error()),
                })?;
                RevocationSet::from_toml_str(&text, &path.display().to_string()).map(Some)
            });
        let mut last_error = self
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match result {
            Ok(None) => Ok(ReloadOutcome::Unchanged),
            Ok(Some(set)) => {
                tracing::info!(
                    target: "zt::revocation",
                    file = %path.display(),
                    revoked = set.len(),
                    "revocation list loaded"
                );
                self.update(|current| *current = set);
                *last_error = None;
                crate::metrics::revocation_reload(crate::metrics::ReloadResult::Applied);
                Ok(ReloadOutcome::Applied)
            }
            Err(error) => {
                // A file that stays unreadable is reported once.
                if last_error.as_ref() == Some(&error) {
                    return Err(error);
                }
                tracing::error!(
                    target: "zt::revocation",
                    file = %path.display(),
                    %error,
                    "revocation list rejected; the previous list stays in force"
                );
                *last_error = Some(error.clone());
                crate::metrics::revocation_reload(crate::metrics::ReloadResult::Rejected);
                Err(error)
            }
        }
    }
}

#[cfg(test)]
mod tests;
