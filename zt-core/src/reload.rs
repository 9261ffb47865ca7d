//! What the file-backed holders (`zt_authz::policy::PolicyStore`,
//! [`Revocations`](crate::revocation::Revocations)) share: change detection
//! and the outcome of a reload.

use std::sync::{Mutex, PoisonError};

use sha2::{Digest as _, Sha256};

/// What a reload of a watched file did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReloadOutcome {
    /// The file is unchanged since the last load; nothing was swapped.
    Unchanged,
    /// The file changed, was valid, and now is in force.
    Applied,
}

/// Remembers a file's last content, so an unchanged file is not parsed
/// again and a rejected one is not reported at every poll.
#[derive(Debug, Default)]
pub struct FileDigest(Mutex<Option<[u8; 32]>>);

impl FileDigest {
    /// `true` if `bytes` differ from the last content seen; records them.
    pub fn update(&self, bytes: &[u8]) -> bool {
        let digest: [u8; 32] = Sha256::digest(bytes).into();
        let mut last = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if *last == Some(digest) {
            return false;
        }
        *last = Some(digest);
        true
    }
}
