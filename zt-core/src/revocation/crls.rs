//! The CRL half of [`Revocations`]: verified CRLs by source, CRL files,
//! stale-CRL policies.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use sha2::{Digest as _, Sha256};

use super::{Inner, ReloadOutcome, RevocationError, Revocations, Revoked};
use crate::TrustDomain;
use crate::bundle::BundleSet;
use crate::crl::{Crl, CrlError, CrlSet, StaleCrlPolicy};
use crate::source::SvidSource;
use crate::time::{SharedClock, Timestamp};

/// The CRLs in force and the policies that judge them. Immutable; swapped
/// whole.
#[derive(Debug, Default)]
pub(super) struct CrlState {
    by_source: BTreeMap<Arc<str>, Vec<Arc<Crl>>>,
    pub(super) set: CrlSet,
    policies: HashMap<TrustDomain, StaleCrlPolicy>,
    default_policy: StaleCrlPolicy,
    /// `true` if some trust domain refuses the issuers of stale CRLs.
    any_fail_closed: bool,
}

impl CrlState {
    fn with(
        &self,
        by_source: BTreeMap<Arc<str>, Vec<Arc<Crl>>>,
        policies: HashMap<TrustDomain, StaleCrlPolicy>,
        default_policy: StaleCrlPolicy,
    ) -> Self {
        let set = CrlSet::new(by_source.values().flatten().cloned().collect());
        let any_fail_closed = default_policy == StaleCrlPolicy::RefuseIssued
            || policies
                .values()
                .any(|p| *p == StaleCrlPolicy::RefuseIssued);
        Self {
            by_source,
            set,
            policies,
            default_policy,
            any_fail_closed,
        }
    }

    fn policy(&self, trust_domain: &TrustDomain) -> StaleCrlPolicy {
        self.policies
            .get(trust_domain)
            .copied()
            .unwrap_or(self.default_policy)
    }
}

/// Where a CRL file's signer is looked up.
#[derive(Clone)]
enum Trust {
    /// The bundles of a source's current snapshot.
    Source(Arc<dyn SvidSource>),
    /// Fixed bundles.
    Fixed(Arc<BundleSet>),
}

/// A CRL file read again by `reload`.
pub(super) struct CrlFile {
    path: PathBuf,
    name: Arc<str>,
    trust: Trust,
    /// The digest of the bytes and the bundle revision last verified, so an
    /// unchanged file under unchanged bundles is not verified again.
    last: Mutex<Option<([u8; 32], u64)>>,
}

impl Revocations {
    /// Replaces the CRLs from `source` (a file path, a Workload API
    /// address: any name) with `crls`, verified beforehand with
    /// [`Crl::verify`]. An empty `crls` removes the source's CRLs. Bumps
    /// [`changes`](Self::changes) if the CRLs in force differ.
    pub fn set_crls(&self, source: &str, crls: Vec<Crl>) {
        let mut errors = self
            .inner
            .crl_errors
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        errors.remove(source);
        drop(errors);
        self.inner.set_crls(source, crls);
    }

    /// Reads every CRL of `bytes` (PEM or DER, as
    /// [`read_crls`](crate::crl::read_crls)), verifies each against
    /// `bundles` (rules in the [`crl`](crate::crl) module) and, if all are
    /// valid, makes them the CRLs of `source` (as [`set_crls`](Self::set_crls)).
    /// Returns how many CRLs are now in force for `source`.
    ///
    /// # Errors
    ///
    /// [`RevocationError::Crl`] for the first CRL refused; the CRLs in
    /// force stay unchanged, and the error is logged and kept for
    /// [`last_error`](Self::last_error).
    pub fn load_crls(
        &self,
        source: &str,
        bytes: &[u8],
        bundles: &BundleSet,
    ) -> Result<usize, RevocationError> {
        let now = self.inner.now();
        match Crl::verify_all(bytes, bundles, now, source)
            .and_then(|crls| self.inner.not_older(source, crls))
        {
            Ok(crls) => {
                let count = crls.len();
                self.set_crls(source, crls);
                Ok(count)
            }
            Err(error) => Err(self.inner.refused(source, error)),
        }
    }

    /// Verifies each DER CRL of `crls` against `bundles` and, if all are
    /// valid, makes them the CRLs of `source`: the form the Workload API
    /// delivers them in. As [`load_crls`](Self::load_crls).
    ///
    /// # Errors
    ///
    /// As [`load_crls`](Self::load_crls).
    pub fn load_crl_ders(
        &self,
        source: &str,
        crls: &[Vec<u8>],
        bundles: &BundleSet,
    ) -> Result<usize, RevocationError> {
        let now = self.inner.now();
        let verified: Result<Vec<Crl>, CrlError> = crls
            .iter()
            .enumerate()
            .map(|(i, der)| Crl::verify(der, &[], bundles, now, source, i))
            .collect();
        match verified.and_then(|crls| self.inner.not_older(source, crls)) {
            Ok(crls) => {
                let count = crls.len();
                self.set_crls(source, crls);
                Ok(count)
            }
            Err(error) => Err(self.inner.refused(source, error)),
        }
    }

    /// Adds a CRL file (PEM or DER), verified against the bundles of
    /// `source`'s current snapshot, read now and again by
    /// [`reload`](Self::reload) and [`watch`](Self::watch). The file is
    /// verified again when its bytes or the bundles change; a file that
    /// becomes invalid leaves its previous CRLs in force.
    ///
    /// # Errors
    ///
    /// As [`load_crls`](Self::load_crls), or [`CrlError::Io`]. The file
    /// stays registered, so a later reload can still succeed.
    pub fn add_crl_file(
        &self,
        path: impl AsRef<Path>,
        source: Arc<dyn SvidSource>,
    ) -> Result<ReloadOutcome, RevocationError> {
        self.add_file(path.as_ref(), Trust::Source(source))
    }

    /// As [`add_crl_file`](Self::add_crl_file), with fixed bundles.
    ///
    /// # Errors
    ///
    /// As [`add_crl_file`](Self::add_crl_file).
    pub fn add_crl_file_with_bundles(
        &self,
        path: impl AsRef<Path>,
        bundles: Arc<BundleSet>,
    ) -> Result<ReloadOutcome, RevocationError> {
        self.add_file(path.as_ref(), Trust::Fixed(bundles))
    }

    fn add_file(&self, path: &Path, trust: Trust) -> Result<ReloadOutcome, RevocationError> {
        let file = CrlFile {
            path: path.to_path_buf(),
            name: Arc::from(path.display().to_string()),
            trust,
            last: Mutex::new(None),
        };
        let outcome = self.inner.reload_crl_file(&file);
        self.inner
            .crl_files
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(file);
        outcome
    }

    /// The CRLs in force.
    pub fn crls(&self) -> CrlSet {
        self.inner.crls.load().set.clone()
    }

    /// The CRLs in force that are past their `nextUpdate` by this list's
    /// clock.
    pub fn stale_crls(&self) -> Vec<Arc<Crl>> {
        let now = self.inner.now();
        self.inner
            .crls
            .load()
            .set
            .iter()
            .filter(|crl| crl.is_stale(now))
            .cloned()
            .collect()
    }

    /// Sets what stale CRLs of `trust_domain` do (the default is
    /// [`StaleCrlPolicy::KeepEnforcing`]).
    pub fn set_stale_crl_policy(&self, trust_domain: TrustDomain, policy: StaleCrlPolicy) {
        self.inner.update_crls(|_, policies, _| {
            policies.insert(trust_domain, policy);
        });
    }

    /// Sets what stale CRLs do in trust domains without a policy of their
    /// own.
    pub fn set_default_stale_crl_policy(&self, policy: StaleCrlPolicy) {
        self.inner.update_crls(|_, _, default| *default = policy);
    }

    /// Judges CRL staleness, and when a revoked token ID has expired, by
    /// `clock` instead of the system clock.
    pub fn set_clock(&self, clock: SharedClock) {
        self.inner.clock.store(Arc::new(clock));
    }

    pub(super) fn check_crls<'a>(
        &self,
        trust_domain: &TrustDomain,
        certs: impl Iterator<Item = (Option<&'a [u8]>, &'a [u8])>,
    ) -> Option<Revoked> {
        let state = self.inner.crls.load();
        if state.set.is_empty() {
            return None;
        }
        let fail_closed =
            state.any_fail_closed && state.policy(trust_domain) == StaleCrlPolicy::RefuseIssued;
        let now = fail_closed.then(|| self.inner.now());
        for (issuer, serial) in certs {
            if state.set.find(trust_domain, serial, issuer).is_some() {
                return Some(Revoked::Crl);
            }
            if let Some(now) = now
                && state.set.stale(trust_domain, issuer, now).is_some()
            {
                return Some(Revoked::CrlStale);
            }
        }
        None
    }
}

impl Inner {
    pub(super) fn now(&self) -> SystemTime {
        self.clock.load().now()
    }

    pub(super) fn bump(&self) {
        // Always succeeds: `send_modify` updates the value even with no
        // receiver.
        let mut now = 0;
        self.version.send_modify(|version| {
            *version += 1;
            now = *version;
        });
        crate::metrics::revocation_version(Some(&(now - 1).to_string()), &now.to_string());
    }

    /// Applies `change` to the CRL sources and policies under the writer
    /// lock; bumps the version if anything changed.
    fn update_crls(
        &self,
        change: impl FnOnce(
            &mut BTreeMap<Arc<str>, Vec<Arc<Crl>>>,
            &mut HashMap<TrustDomain, StaleCrlPolicy>,
            &mut StaleCrlPolicy,
        ),
    ) {
        let _writer = self.write.lock().unwrap_or_else(PoisonError::into_inner);
        let current = self.crls.load_full();
        let mut by_source = current.by_source.clone();
        let mut policies = current.policies.clone();
        let mut default_policy = current.default_policy;
        change(&mut by_source, &mut policies, &mut default_policy);
        if by_source == current.by_source
            && policies == current.policies
            && default_policy == current.default_policy
        {
            return;
        }
        self.crls
            .store(Arc::new(current.with(by_source, policies, default_policy)));
        self.bump();
    }

    fn set_crls(&self, source: &str, crls: Vec<Crl>) {
        let crls: Vec<Arc<Crl>> = crls.into_iter().map(Arc::new).collect();
        let count = crls.len();
        let revoked: usize = crls.iter().map(|c| c.serials().count()).sum();
        let mut changed = false;
        self.update_crls(|by_source, _, _| {
            let before = by_source.get(source).cloned().unwrap_or_default();
            if crls.is_empty() {
                by_source.remove(source);
            } else {
                by_source.insert(Arc::from(source), crls);
            }
            changed = by_source.get(source).cloned().unwrap_or_default() != before;
        });
        if changed {
            tracing::info!(
                target: "zt::revocation",
                source,
                crls = count,
                revoked,
                "CRLs loaded"
            );
        }
    }

    /// `crls` if none is older than a CRL of the same scope in force from
    /// `source`.
    fn not_older(&self, source: &str, crls: Vec<Crl>) -> Result<Vec<Crl>, CrlError> {
        let state = self.crls.load();
        let Some(in_force) = state.by_source.get(source) else {
            return Ok(crls);
        };
        for crl in &crls {
            if let Some(newer) = in_force
                .iter()
                .find(|old| old.same_scope(crl) && old.this_update() > crl.this_update())
            {
                return Err(CrlError::Older {
                    source_name: source.to_owned(),
                    issuer: crl.issuer_name().to_owned(),
                    this_update: Timestamp(crl.this_update()),
                    in_force: Timestamp(newer.this_update()),
                });
            }
        }
        Ok(crls)
    }

    /// Logs a refused CRL (once while the same error repeats), keeps it for
    /// `last_error`, and returns it.
    fn refused(&self, source: &str, error: CrlError) -> RevocationError {
        let mut errors = self
            .crl_errors
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if errors.get(source) != Some(&error) {
            tracing::error!(
                target: "zt::revocation",
                source,
                %error,
                "CRL refused; the CRLs in force stay unchanged"
            );
            errors.insert(Arc::from(source), error.clone());
        }
        RevocationError::Crl(error)
    }

    fn reload_crl_file(&self, file: &CrlFile) -> Result<ReloadOutcome, RevocationError> {
        let bytes = match std::fs::read(&file.path) {
            Ok(bytes) => bytes,
            Err(e) => {
                let error = CrlError::Io {
                    source_name: file.name.to_string(),
                    reason: e.to_string(),
                };
                return Err(self.refused(&file.name, error));
            }
        };
        let (bundles, revision) = match &file.trust {
            Trust::Fixed(bundles) => (Arc::clone(bundles), 0),
            Trust::Source(source) => match source.current() {
                Ok(snapshot) => (Arc::clone(snapshot.bundles()), snapshot.revision()),
                Err(e) => {
                    let error = CrlError::UntrustedSigner {
                        source_name: file.name.to_string(),
                        index: 0,
                        issuer: String::from("?"),
                        reason: format!("no trust bundle to verify it with: {e}"),
                    };
                    return Err(self.refused(&file.name, error));
                }
            },
        };
        let digest: [u8; 32] = Sha256::digest(&bytes).into();
        let mut last = file.last.lock().unwrap_or_else(PoisonError::into_inner);
        if *last == Some((digest, revision)) {
            return Ok(ReloadOutcome::Unchanged);
        }
        *last = Some((digest, revision));
        drop(last);
        let now = self.now();
        match Crl::verify_all(&bytes, &bundles, now, &file.name)
            .and_then(|crls| self.not_older(&file.name, crls))
        {
            Ok(crls) => {
                self.crl_errors
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .remove(&*file.name);
                self.set_crls(&file.name, crls);
                Ok(ReloadOutcome::Applied)
            }
            Err(error) => Err(self.refused(&file.name, error)),
        }
    }

    pub(super) fn reload_crl_files(&self) -> Result<ReloadOutcome, RevocationError> {
        let files = self
            .crl_files
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut outcome = Ok(ReloadOutcome::Unchanged);
        for file in files.iter() {
            match (self.reload_crl_file(file), &outcome) {
                (Err(e), Ok(_)) => outcome = Err(e),
                (Ok(ReloadOutcome::Applied), Ok(_)) => outcome = Ok(ReloadOutcome::Applied),
                _ => {}
            }
        }
        outcome
    }

    /// The first refused CRL source's error, else the first stale CRL.
    pub(super) fn crl_error(&self) -> Option<RevocationError> {
        let errors = self
            .crl_errors
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(error) = errors.values().next() {
            return Some(RevocationError::Crl(error.clone()));
        }
        drop(errors);
        let now = self.now();
        self.crls
            .load()
            .set
            .iter()
            .find(|crl| crl.is_stale(now))
            .map(|crl| RevocationError::Crl(crl.stale_error()))
    }

    /// Logs each CRL that became stale, once; bumps the version when a
    /// trust domain refuses the issuers of stale CRLs, since what `check`
    /// answers changed.
    pub(super) fn report_stale(&self) {
        let now = self.now();
        let state = self.crls.load();
        let mut reported = self
            .stale_reported
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut bump = false;
        for crl in state.set.iter().filter(|crl| crl.is_stale(now)) {
            let key = (Arc::from(crl.source()), Box::from(crl.issuer()));
            if reported.insert(key) {
                tracing::warn!(
                    target: "zt::revocation",
                    error = %crl.stale_error(),
                    "stale CRL"
                );
                bump |= crl
                    .trust_domains()
                    .any(|td| state.policy(td) == StaleCrlPolicy::RefuseIssued);
            }
        }
        reported.retain(|(source, issuer)| {
            state
                .set
                .iter()
                .any(|c| c.source() == &**source && c.issuer() == &**issuer && c.is_stale(now))
        });
        drop(reported);
        if bump {
            self.bump();
        }
    }
}
