//! A cache of validated JWT-SVIDs, so a caller that reuses its token pays
//! for one signature check, not one per request.

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use super::{JwtError, JwtSvidClaims, MAX_LEEWAY, numeric_date, validate_jwt_svid};
use crate::bundle::BundleSet;
use crate::jose::PublicKey;

/// Entries a [`JwtSvidCache::default`] holds.
pub const DEFAULT_CAPACITY: usize = 4096;

/// Validated JWT-SVIDs, keyed by their exact token text.
///
/// [`validate`](Self::validate) gives the same answer as
/// [`validate_jwt_svid`] for the same inputs; a token seen before is answered
/// without its signature being checked again, under these rules:
///
/// - only tokens that passed every check are stored; a failure is never
///   cached, so a bad token costs a full validation each time;
/// - a stored token is answered only while the key that signed it is still
///   in `bundles`, under the same key ID and trust domain, with the same key
///   material: removing or replacing a JWT authority takes effect on the next
///   request;
/// - `exp`, `nbf` and the audience are checked on every hit against the
///   caller's clock, leeway and audience, exactly as a full validation
///   would;
/// - the cache holds at most `capacity` tokens; when full, expired tokens
///   are dropped first, then an arbitrary one.
///
/// The cache is shared between threads (`&self` methods); clone the `Arc`
/// that holds it.
pub struct JwtSvidCache {
    capacity: usize,
    /// foldhash, seeded at random for each cache. Only tokens that passed a
    /// full validation are stored, and the hashed tail is their signature,
    /// which nobody but the signing authority chooses; the seed keeps even
    /// that authority from aiming its tokens at one slot.
    hasher: foldhash::fast::RandomState,
    /// Keyed by a hash of the token's signature tail; the entry keeps the
    /// whole text, so two tokens with the same hash (a collision, or a
    /// token that differs only before its tail) are told apart: the other
    /// one is a miss and replaces the entry when it validates.
    entries: Mutex<Entries>,
}

/// The stored tokens by the keyed hash of their tail. The keys are hashes
/// already, unpredictable without the cache's random key, so the map uses
/// them as they are rather than hashing them a second time.
type Entries = HashMap<u64, Entry, BuildHasherDefault<KeyIsHash>>;

/// A [`Hasher`] for keys that are hashes: the `u64` itself.
#[derive(Default)]
struct KeyIsHash(u64);

impl Hasher for KeyIsHash {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write_u64(&mut self, hash: u64) {
        self.0 = hash;
    }

    // Only `u64` keys are hashed; any other input is folded in, so the
    // map stays correct (if slower) were that to change.
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
}

struct Entry {
    token: Box<str>,
    claims: Arc<JwtSvidClaims>,
    key: PublicKey,
    not_before: Option<SystemTime>,
}

/// Bytes of the token's end that are hashed. The end of a compact JWS is its
/// signature, which differs between any two tokens that verify.
const HASHED_TAIL: usize = 32;

impl JwtSvidCache {
    /// A cache holding at most `capacity` tokens (at least one).
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            hasher: foldhash::fast::RandomState::default(),
            entries: Mutex::new(Entries::default()),
        }
    }

    /// The most tokens the cache holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Tokens held now.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether the cache holds no token.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Drops every stored token.
    pub fn clear(&self) {
        self.lock().clear();
    }

    /// Validates `token` as [`validate_jwt_svid`] does, answering from the
    /// cache when the token was validated before and the rules in the type's
    /// documentation allow it.
    ///
    /// # Errors
    ///
    /// The [`JwtError`] a full validation gives.
    pub fn validate(
        &self,
        token: &str,
        bundles: &BundleSet,
        audience: &str,
        now: SystemTime,
        leeway: Duration,
    ) -> Result<Arc<JwtSvidClaims>, JwtError> {
        let hash = self.hash_of(token.as_bytes());
        if let Some(claims) = self.lookup(hash, token.as_bytes(), bundles, audience, now, leeway) {
            return Ok(claims);
        }
        let claims = Arc::new(validate_jwt_svid(token, bundles, audience, now, leeway)?);
        // The authority was found by the validation just done; a bundle that
        // lost it in between cannot happen (`bundles` is borrowed), so this
        // only skips storing when the key is absent.
        let key = bundles
            .get(claims.subject().trust_domain())
            .and_then(|b| b.jwt_authority(claims.key_id()))
            .map(|a| a.public_key().clone());
        if let Some(key) = key {
            let not_before = numeric_date(claims.claims(), "nbf").ok().flatten();
            self.insert(
                hash,
                Entry {
                    token: token.into(),
                    claims: Arc::clone(&claims),
                    key,
                    not_before,
                },
                now,
            );
        }
        Ok(claims)
    }

    /// The claims of `token` if it is stored and every per-request rule in
    /// the type's documentation still holds for it; `None` otherwise, and
    /// then only [`validate`](Self::validate) can tell why.
    ///
    /// It takes the token's bytes as they arrived (an HTTP header's value,
    /// say): a stored token passed a full validation, so bytes equal to it
    /// need no further check of their own.
    pub fn cached(
        &self,
        token: &[u8],
        bundles: &BundleSet,
        audience: &str,
        now: SystemTime,
        leeway: Duration,
    ) -> Option<Arc<JwtSvidClaims>> {
        self.lookup(self.hash_of(token), token, bundles, audience, now, leeway)
    }

    fn hash_of(&self, bytes: &[u8]) -> u64 {
        let tail = &bytes[bytes.len().saturating_sub(HASHED_TAIL)..];
        let mut h = self.hasher.build_hasher();
        h.write(tail);
        h.write_usize(bytes.len());
        h.finish()
    }

    /// The stored claims of `token` when every per-request rule still holds.
    fn lookup(
        &self,
        hash: u64,
        token: &[u8],
        bundles: &BundleSet,
        audience: &str,
        now: SystemTime,
        leeway: Duration,
    ) -> Option<Arc<JwtSvidClaims>> {
        let entries = self.lock();
        let entry = entries.get(&hash).filter(|e| e.token.as_bytes() == token)?;
        let claims = &entry.claims;
        let leeway = leeway.min(MAX_LEEWAY);
        let current = bundles
            .get(claims.subject().trust_domain())?
            .jwt_authority(claims.key_id())?;
        let fresh = current.public_key() == &entry.key
            && claims.expiry().checked_add(leeway).is_none_or(|d| now <= d)
            && entry.not_before.is_none_or(|nbf| now + leeway >= nbf)
            && claims.audience().iter().any(|a| a == audience);
        // A stale hit falls through to a full validation, which gives the
        // error (or stores the token again under its current key).
        fresh.then(|| Arc::clone(claims))
    }

    fn insert(&self, hash: u64, entry: Entry, now: SystemTime) {
        let mut entries = self.lock();
        if entries.len() >= self.capacity && !entries.contains_key(&hash) {
            entries.retain(|_, e| e.claims.expiry() >= now);
            if entries.len() >= self.capacity
                && let Some(victim) = entries.keys().next().copied()
            {
                entries.remove(&victim);
            }
        }
        entries.insert(hash, entry);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        // The map is consistent after every statement that changes it, so a
        // panic elsewhere while the lock was held leaves it usable.
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Default for JwtSvidCache {
    /// A cache of [`DEFAULT_CAPACITY`] tokens.
    fn default() -> Self {
        Self::new(DEFAULT_CAPACITY)
    }
}

impl fmt::Debug for JwtSvidCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtSvidCache")
            .field("capacity", &self.capacity)
            .field("len", &self.len())
            .finish()
    }
}
