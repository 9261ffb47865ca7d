//! The running policy: an atomically swapped [`Policy`], optionally read
//! from a file and reloaded when it changes.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::watch;

use super::error::Origin;
use super::{Decision, DecisionRef, Policy, PolicyEngine, PolicyError, Request};
use zt_core::metrics::ReloadResult;
use zt_core::reload::{FileDigest, ReloadOutcome};
use zt_core::source::WatchHandle;

/// The policy in force, swappable at any time without a lock on the
/// request path.
///
/// Every [`evaluate`](PolicyEngine::evaluate) reads the current policy once
/// and decides with it, so a request that started under one policy finishes
/// under it even if a reload lands meanwhile. Cheap to clone: clones share
/// the policy.
///
/// A store read from a file ([`from_file`](Self::from_file)) re-reads it on
/// [`reload`](Self::reload), or every interval after
/// [`watch`](Self::watch). A new file is validated completely before it is
/// swapped in; an invalid one leaves the running policy in force, is logged
/// at `ERROR` (target `zt::policy`) and is kept for
/// [`last_error`](Self::last_error).
///
/// # Examples
///
/// ```
/// use zt_core::SpiffeId;
/// use zt_authz::policy::{Policy, PolicyEngine, PolicyStore, Request, Rule};
///
/// let store = PolicyStore::new(Policy::builder().version("v1").build()?);
/// let billing = SpiffeId::new("spiffe://example.org/billing")?;
/// let request = Request::new(Some(&billing), "GET", "/invoices");
/// assert!(!store.evaluate(&request).allowed);
///
/// store.replace(
///     Policy::builder()
///         .version("v2")
///         .rule(Rule::allow("billing").caller("spiffe://example.org/billing")?)
///         .build()?,
/// );
/// let decision = store.evaluate(&request);
/// assert!(decision.allowed);
/// assert_eq!(&*decision.policy_version, "v2");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct PolicyStore {
    inner: Arc<Inner>,
}

struct Inner {
    current: ArcSwap<Policy>,
    file: Option<PathBuf>,
    digest: FileDigest,
    last_error: Mutex<Option<PolicyError>>,
    versions: watch::Sender<Arc<str>>,
}

impl fmt::Debug for PolicyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PolicyStore")
            .field("version", &self.inner.current.load().version())
            .field("file", &self.inner.file)
            .finish()
    }
}

impl PolicyStore {
    /// A store holding `policy`, changed only by [`replace`](Self::replace).
    pub fn new(policy: Policy) -> Self {
        Self::with_file(policy, None)
    }

    fn with_file(policy: Policy, file: Option<PathBuf>) -> Self {
        let (versions, _) = watch::channel(PolicyEngine::version(&policy));
        zt_core::metrics::policy_version(None, policy.version());
        Self {
            inner: Arc::new(Inner {
                current: ArcSwap::from_pointee(policy),
                file,
                digest: FileDigest::default(),
                last_error: Mutex::new(None),
                versions,
            }),
        }
    }

    /// A store holding the policy in the TOML file at `path`, which
    /// [`reload`](Self::reload) and [`watch`](Self::watch) read again.
    ///
    /// # Errors
    ///
    /// [`PolicyError::Io`] if the file cannot be read, or the first error
    /// in it (see [`Policy::from_toml_str`]).
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, PolicyError> {
        let path = path.as_ref().to_path_buf();
        let bytes = read(&path)?;
        let policy = parse(&path, &bytes)?;
        tracing::info!(
            target: "zt::policy",
            file = %path.display(),
            version = %policy.version(),
            "policy loaded"
        );
        let store = Self::with_file(policy, Some(path));
        store.inner.digest.update(&bytes);
        Ok(store)
    }

    /// The policy in force now.
    pub fn current(&self) -> Policy {
        Policy::clone(&self.inner.current.load())
    }

    /// Swaps in `policy`; requests already being decided finish under the
    /// old one, which is returned.
    pub fn replace(&self, policy: Policy) -> Policy {
        self.inner.replace(policy)
    }

    /// Re-reads the file and, if it changed and is valid, swaps it in. A
    /// store without a file reports [`ReloadOutcome::Unchanged`].
    ///
    /// An invalid file is rejected as a whole: the running policy stays,
    /// the error is logged and kept for [`last_error`](Self::last_error),
    /// and it is reported once (a later reload of the same content returns
    /// `Unchanged`).
    ///
    /// # Errors
    ///
    /// As [`from_file`](Self::from_file).
    pub fn reload(&self) -> Result<ReloadOutcome, PolicyError> {
        self.inner.reload()
    }

    /// The error of the last reload, if it was rejected; cleared by the
    /// next good one.
    pub fn last_error(&self) -> Option<PolicyError> {
        self.inner
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Notified with the new version at every swap (by
    /// [`replace`](Self::replace) or a reload).
    pub fn subscribe(&self) -> watch::Receiver<Arc<str>> {
        self.inner.versions.subscribe()
    }

    /// Reloads the file every `interval` in a background task until the
    /// handle or every clone of this store is dropped. Must be called within
    /// a Tokio runtime.
    pub fn watch(&self, interval: Duration) -> WatchHandle {
        WatchHandle::poll(Arc::downgrade(&self.inner), interval, |inner: &Inner| {
            // Failures are logged and kept for `last_error`.
            let _ = inner.reload();
        })
    }
}

impl PolicyEngine for PolicyStore {
    fn evaluate(&self, request: &Request<'_>) -> Decision {
        self.inner.current.load().evaluate(request)
    }

    fn evaluate_with(&self, request: &Request<'_>, with: &mut dyn FnMut(DecisionRef<'_>)) {
        self.inner.current.load().evaluate_with(request, with);
    }

    fn version(&self) -> Arc<str> {
        PolicyEngine::version(&**self.inner.current.load())
    }

    fn rules_snapshot(&self) -> Option<Policy> {
        Some(self.current())
    }
}

fn read(path: &Path) -> Result<Vec<u8>, PolicyError> {
    std::fs::read(path).map_err(|e| PolicyError::Io {
        origin: Origin::file(&path.display().to_string()),
        reason: e.to_string(),
    })
}

fn parse(path: &Path, bytes: &[u8]) -> Result<Policy, PolicyError> {
    let name = path.display().to_string();
    let text = std::str::from_utf8(bytes).map_err(|e| PolicyError::Io {
        origin: Origin::file(&name),
        reason: format!("not UTF-8 text ({e})"),
    })?;
    Policy::from_toml_str(text, &name)
}

impl Inner {
    fn replace(&self, policy: Policy) -> Policy {
        let version = PolicyEngine::version(&policy);
        let old = self.current.swap(Arc::new(policy));
        zt_core::metrics::policy_version(Some(old.version()), &version);
        if old.version() != &*version {
            tracing::info!(
                target: "zt::policy",
                from = %old.version(),
                to = %version,
                "policy swapped"
            );
        }
        self.versions.send_replace(version);
        Policy::clone(&old)
    }

    fn reload(&self) -> Result<ReloadOutcome, PolicyError> {
        let Some(path) = &self.file else {
            return Ok(ReloadOutcome::Unchanged);
        };
        let result = read(path).and_then(|bytes| {
            if self.digest.update(&bytes) {
                parse(path, &bytes).map(Some)
            } else {
                Ok(None)
            }
        });
        let mut last_error = self
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match result {
            Ok(None) => Ok(ReloadOutcome::Unchanged),
            Ok(Some(policy)) => {
                self.replace(policy);
                *last_error = None;
                zt_core::metrics::policy_reload(ReloadResult::Applied);
                Ok(ReloadOutcome::Applied)
            }
            Err(error) => {
                // A file that stays unreadable is reported once.
                if last_error.as_ref() == Some(&error) {
                    return Err(error);
                }
                tracing::error!(
                    target: "zt::policy",
                    file = %path.display(),
                    %error,
                    running = %self.current.load().version(),
                    "policy file rejected; the running policy stays in force"
                );
                *last_error = Some(error.clone());
                zt_core::metrics::policy_reload(ReloadResult::Rejected);
                Err(error)
            }
        }
    }
}
