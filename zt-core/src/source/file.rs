//! A source reading PEM files that another process keeps fresh.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use rustls_pki_types::CertificateDer;
use sha2::{Digest, Sha256};

use super::{SourceError, SourceState, SvidSource};
use crate::TrustDomain;
use crate::bundle::{BundleError, BundleSet, TrustBundle, authority_trust_domain};
use crate::svid::X509Svid;
use crate::time::{SharedClock, system_clock};
use crate::x509::{SvidError, Usage, verify_x509_svid};

/// How soon [`FileSource::watch`] reads the files again after a read that
/// found them inconsistent (at most the watch interval).
pub const FILE_RETRY_INTERVAL: Duration = Duration::from_millis(250);

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
/// The files are read together and published only when consistent: the
/// key is the leaf's, and the chain verifies against the bundle of the
/// SVID's trust domain as of now. A reload that finds them unreadable, torn
/// mid-write (a new certificate beside the old key), not verifying, or
/// breaking an SVID rule keeps the last good snapshot, reports why through
/// [`SvidSource::health`], and [`watch`](FileSource::watch) tries again
/// after [`FILE_RETRY_INTERVAL`].
///
/// The bundle file holds authorities of the SVID's own trust domain. A CA
/// certificate in it that names another trust domain (spiffe-helper with
/// `include_federated_domains` appends federated CAs there) is moved to
/// that trust domain's bundle when the layout federates with it
/// ([`FileLayout::with_federated`]), and refused otherwise.
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
    failing: Mutex<bool>,
    last_failure: Mutex<Option<String>>,
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
            state: SourceState::new(clock).with_metrics_name("file"),
            last_digest: Mutex::new(None),
            failing: Mutex::new(false),
            last_failure: Mutex::new(None),
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
        let result = self.load();
        *self.failing.lock().unwrap_or_else(PoisonError::into_inner) = result.is_err();
        if result.is_ok() {
            *self
                .last_failure
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = None;
        }
        match result {
            Ok(None) => {
                // The files are back to the snapshot in force.
                self.state.clear_failure();
                Ok(false)
            }
            Ok(Some((svid, bundles, digest))) => {
                self.state.publish(svid, bundles);
                *self
                    .last_digest
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = Some(digest);
                Ok(true)
            }
            Err(e) => {
                let reason = e.to_string();
                // A retry that finds the same failure reports it once.
                let mut last = self
                    .last_failure
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                if last.as_deref() != Some(reason.as_str()) {
                    self.state.report_failure(reason.clone());
                    *last = Some(reason);
                }
                Err(e)
            }
        }
    }

    /// Starts a task that calls [`FileSource::reload`] every `interval`,
    /// and again after [`FILE_RETRY_INTERVAL`] (or `interval`, if shorter)
    /// while the last read failed, so a half-written rotation is picked up
    /// once its writer finishes rather than a full interval later.
    ///
    /// The task stops when the returned [`WatchHandle`] is dropped or the
    /// source is dropped. Must be called within a Tokio runtime.
    pub fn watch(self: &Arc<Self>, interval: Duration) -> WatchHandle {
        self.watch_with_retry(interval, FILE_RETRY_INTERVAL)
    }

    /// As [`FileSource::watch`], retrying after `retry` (at most
    /// `interval`) while the files are unreadable or inconsistent.
    pub fn watch_with_retry(self: &Arc<Self>, interval: Duration, retry: Duration) -> WatchHandle {
        let retry = retry.min(interval).max(Duration::from_millis(1));
        let source = Arc::downgrade(self);
        let task = tokio::spawn(async move {
            let mut last_read: Option<tokio::time::Instant> = None;
            loop {
                let Some(source) = source.upgrade() else {
                    break;
                };
                let due = last_read.is_none_or(|at| at.elapsed() >= interval);
                if due || source.is_failing() {
                    last_read = Some(tokio::time::Instant::now());
                    // Failures are recorded in the source's health.
                    let _ = source.reload();
                }
                let failing = source.is_failing();
                drop(source);
                tokio::time::sleep(if failing { retry } else { retry.min(interval) }).await;
            }
        });
        WatchHandle { task }
    }

    /// `true` while the last read failed (the last good snapshot serves).
    fn is_failing(&self) -> bool {
        *self.failing.lock().unwrap_or_else(PoisonError::into_inner)
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
        // Certificate and key are written one after the other; a read
        // between the two writes pairs a new certificate with the old key.
        svid.check_key_matches_leaf()?;
        let own_td = svid.id().trust_domain().clone();
        let bundles = assemble_bundles(own_td, &bundle, federated)?;
        verify_own_svid(&svid, &bundles, self.state.clock().now())?;
        Ok(Some((svid, bundles, digest)))
    }
}

/// Builds the bundle set from the own bundle file and the federated ones.
///
/// A CA certificate in the own bundle file that names another trust domain
/// in its URI SAN (spiffe-helper appends federated CAs to that file when
/// `include_federated_domains` is on) goes to that trust domain's bundle
/// when the layout federates with it; otherwise it is refused, since it
/// could mint SVIDs with our IDs.
fn assemble_bundles(
    own_td: TrustDomain,
    own: &[u8],
    federated: Vec<(TrustDomain, Vec<u8>)>,
) -> Result<BundleSet, SourceError> {
    let mut foreign: Vec<(TrustDomain, CertificateDer<'static>)> = Vec::new();
    let own_bundle = if own.windows(10).any(|w| w == b"-----BEGIN")
        && own.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{')
    {
        let blocks = pem::parse_many(own).map_err(|e| BundleError::Pem {
            reason: e.to_string(),
        })?;
        let mut bundle = TrustBundle::new(own_td.clone());
        for block in blocks.into_iter().filter(|b| b.tag() == "CERTIFICATE") {
            let cert = CertificateDer::from(block.into_contents());
            match authority_trust_domain(&cert) {
                Ok(Some(td)) if td != own_td && federated.iter().any(|(f, _)| *f == td) => {
                    foreign.push((td, cert));
                }
                // Our own, unnamed, or refused (with its position) by the bundle.
                _ => bundle.add_x509_authority(cert)?,
            }
        }
        if bundle.x509_authorities().is_empty() {
            return Err(BundleError::NoAuthorities {
                trust_domain: own_td.to_string(),
            }
            .into());
        }
        bundle
    } else {
        TrustBundle::from_bytes(own_td, own)?
    };
    let mut bundles = BundleSet::new();
    bundles.insert(own_bundle);
    for (td, bytes) in federated {
        let mut bundle = TrustBundle::from_bytes(td.clone(), &bytes)?;
        for (_, cert) in foreign.iter().filter(|(f, _)| *f == td) {
            bundle.add_x509_authority(cert.clone())?;
        }
        bundles.insert(bundle);
    }
    Ok(bundles)
}

/// Refuses an SVID that peers would refuse: one whose chain does not verify
/// against the bundle of its own trust domain as of `now` (the bundle file
/// written after the certificate, or not yet), or that has expired. An SVID
/// not yet valid by our clock is checked as of its start, so a clock behind
/// the issuer's does not refuse fresh SVIDs.
fn verify_own_svid(svid: &X509Svid, bundles: &BundleSet, now: SystemTime) -> Result<(), SvidError> {
    let at = now.max(svid.not_before());
    // SVIDs usually carry both TLS usages; accept one that carries either.
    match verify_x509_svid(svid.chain(), bundles, at, Usage::ClientAuth) {
        Err(SvidError::WrongExtendedKeyUsage { .. }) => {
            verify_x509_svid(svid.chain(), bundles, at, Usage::ServerAuth).map(drop)
        }
        other => other.map(drop),
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
