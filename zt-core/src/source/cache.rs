//! Values derived from a snapshot, computed once per revision.

use std::sync::{Arc, Mutex, PoisonError};

use super::Snapshot;

/// Caches one value derived from a [`Snapshot`], recomputed only when the
/// snapshot's revision changes.
///
/// TLS layers use it to turn the current SVID into a signing key once per
/// rotation rather than once per handshake.
#[derive(Debug)]
pub struct DerivedCache<T> {
    slot: Mutex<Option<(u64, Arc<T>)>>,
}

impl<T> Default for DerivedCache<T> {
    fn default() -> Self {
        Self {
            slot: Mutex::new(None),
        }
    }
}

impl<T> DerivedCache<T> {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// Returns the value for `snapshot`, deriving it with `derive` if the
    /// cached one belongs to another revision.
    ///
    /// # Errors
    ///
    /// Whatever `derive` returns; nothing is cached then.
    pub fn get_or_derive<E>(
        &self,
        snapshot: &Snapshot,
        derive: impl FnOnce(&Snapshot) -> Result<T, E>,
    ) -> Result<Arc<T>, E> {
        let mut slot = self.slot.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((revision, value)) = slot.as_ref()
            && *revision == snapshot.revision()
        {
            return Ok(value.clone());
        }
        let value = Arc::new(derive(snapshot)?);
        *slot = Some((snapshot.revision(), value.clone()));
        Ok(value)
    }
}
