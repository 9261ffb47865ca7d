//! A source reading PEM files that another process keeps fresh.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::{SourceError, SourceState, SvidSource};
use crate::TrustDomain;
use crate::bundle::{BundleSet, TrustBundle};
use crate::svid::X509Svid;
use crate::time::{SharedClock, system_clock};

/// Where the SVID, key and bundle files live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileLayout {
    /// The certificate chain, leaf first (PEM).
    pub cert: PathBuf,
    /// The leaf's private key (PEM).
    pub key: PathBuf,
    /// The bundle of the SVID's own trust domain (PEM, or SPIFFE bundle JSON).
    pub bundle: PathBuf,
    /// Bundles of federated trust domains.
    pub federated: Vec<(TrustDomain, PathBuf)>,
}

impl FileLayout {
    /// Explicit paths.
    pub fn new(
        cert: impl Into<PathBuf>,
        key: impl Into<PathBuf>,
        bundle: impl Into<PathBuf>,
    ) -> Self {
        Self {
            cert: cert.into(),
            key: key.into(),
            bundle: bundle.into(),
            federated: Vec::new(),
        }
    }

    /// The layout spiffe-helper writes: `svid.pem`, `svid_key.pem`,
    /// `svid_bundle.pem` in `dir`.
    pub fn spiffe_helper(dir: impl AsRef<Path>) -> Self {
        let dir = dir.as_ref();
        Self::new(
            dir.join("svid.pem"),
            dir.join("svid_key.pem"),
            dir.join("svid_bundle.pem"),
        )
    }

    /// The layout cert-manager's csi-driver-spiffe writes: `tls.crt`,
    /// `tls.key`, `ca.crt` in `dir`.
    pub fn csi_driver_spiffe(dir: impl AsRef<Path>) -> Self {
        let dir = dir.as_ref();
        Self::new(dir.join("tls.crt"), dir.join("tls.key"), dir.join("ca.crt"))
    }

    /// Adds a federated trust domain's bundle file.
    #[must_use]
    pub fn with_federated(mut self, trust_domain: TrustDomain, path: impl Into<PathBuf>) -> Self {
        self.federated.push((trust_domain, path.into()));
        self
    }
}

/// Serves an SVID from PEM files, reloading them when their content changes.
///
/// The files are read together; a reload that finds them unreadable, torn
/// mid-write, or breaking an SVID rule keeps the last good snapshot and
/// reports the failure through [`SvidSource::health`].
///
/// ```no_run
/// # async fn run() -> Result<(), zt_core::source::SourceError> {
/// use std::time::Duration;
/// use zt_core::source::{FileLayout, FileSource, SvidSource};
///
/// let source = FileSource::open(FileLayout::spiffe_helper("/run/spiffe"))?;
/// let _watcher = source.watch(Duration::from_secs(5));
/// println!("serving {}", source.current()?.svid().id());
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct FileSource {
    layout: FileLayout,
    state: SourceState,
    last_digest: Mutex<Option<[u8; 32]>>,
}

impl FileSource {
    /// Reads the files once.
    ///
    /// # Errors
    ///
    /// [`SourceError::Io`] if a file cannot be read, [`SourceError::Svid`] or
    /// [`SourceError::Bundle`] if its content is invalid.
    pub fn open(layout: FileLayout) -> Result<Arc<Self>, SourceError> {
        Self::open_with_clock(layout, system_clock())
    }

    /// As [`FileSource::open`], with an injected clock.
    ///
    /// # Errors
    ///
    /// As [`FileSource::open`].
    pub fn open_with_clock(
        layout: FileLayout,
        clock: SharedClock,
    ) -> Result<Arc<Self>, SourceError> {
        let source = Arc::new(Self {
            layout,
            state: SourceState::new(clock),
            last_digest: Mutex::new(None),
        });
        source.reload()?;
        Ok(source)
    }

    /// The file layout.
    pub fn layout(&self) -> &FileLayout {
        &self.layout
    }

    /// Re-reads the files; publishes a snapshot if their content changed.
    ///
    /// Returns whether a new snapshot was published.
    ///
    /// # Errors
    ///
    /// As [`FileSource::open`]. On error the last good snapshot keeps
    /// serving and the failure is recorded in [`SvidSource::health`].
    pub fn reload(&self) -> Result<bool, SourceError> {
        match self.load() {
            Ok(None) => Ok(false),
            Ok(Some((svid, bundles, digest))) => {
                self.state.publish(svid, bundles);
                *self
                    .last_digest
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = Some(digest);
                Ok(true)
            }
            Err(e) => {
                self.state.report_failure(e.to_string());
                Err(e)
            }
        }
    }

    /// Starts a task that calls [`FileSource::reload`] every `interval`.
    ///
    /// The task stops when the returned [`WatchHandle`] is dropped or the
    /// source is dropped. Must be called within a Tokio runtime.
    pub fn watch(self: &Arc<Self>, interval: Duration) -> WatchHandle {
        WatchHandle::poll(Arc::downgrade(self), interval, |source: &Self| {
            // Failures are recorded in the source's health.
            let _ = source.reload();
        })
    }

    fn load(&self) -> Result<Option<(X509Svid, BundleSet, [u8; 32])>, SourceError> {
        let cert = read(&self.layout.cert)?;
        let key = read(&self.layout.key)?;
        let bundle = read(&self.layout.bundle)?;
        let mut federated = Vec::with_capacity(self.layout.federated.len());
        for (td, path) in &self.layout.federated {
            federated.push((td.clone(), read(path)?));
        }

        let mut hasher = Sha256::new();
        for part in [&cert, &key, &bundle] {
            hasher.update((part.len() as u64).to_be_bytes());
            hasher.update(part);
        }
        for (td, bytes) in &federated {
            hasher.update(td.as_str().as_bytes());
            hasher.update(bytes);
        }
        let digest: [u8; 32] = hasher.finalize().into();
        if *self
            .last_digest
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            == Some(digest)
        {
            return Ok(None);
        }

        let svid = X509Svid::from_pem(&cert, &key)?;
        let own_td = svid.id().trust_domain().clone();
        let mut bundles = BundleSet::new();
        bundles.insert(TrustBundle::from_bytes(own_td, &bundle)?);
        for (td, bytes) in federated {
            bundles.insert(TrustBundle::from_bytes(td, &bytes)?);
        }
        Ok(Some((svid, bundles, digest)))
    }
}

fn read(path: &Path) -> Result<Vec<u8>, SourceError> {
    std::fs::read(path).map_err(|e| SourceError::Io {
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

/// Stops a file watcher task when dropped: that of a [`FileSource`], a
/// `zt_authz::policy::PolicyStore` or a
/// [`Revocations`](crate::revocation::Revocations) list.
#[derive(Debug)]
pub struct WatchHandle {
    task: tokio::task::JoinHandle<()>,
}

impl WatchHandle {
    /// Calls `tick` on `target` every `interval` (the first call at once)
    /// until `target` is dropped or the handle is. Must be called within a
    /// Tokio runtime.
    pub fn poll<T: Send + Sync + 'static>(
        target: std::sync::Weak<T>,
        interval: Duration,
        tick: fn(&T),
    ) -> Self {
        let task = tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                let Some(target) = target.upgrade() else {
                    break;
                };
                tick(&target);
            }
        });
        Self { task }
    }
}

impl Drop for WatchHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl SvidSource for FileSource {
    fn state(&self) -> &SourceState {
        &self.state
    }
}
