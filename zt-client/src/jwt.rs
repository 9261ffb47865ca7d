//! JWT-SVIDs on outgoing requests: a per-audience cache ([`JwtSvids`]), a
//! tower layer ([`JwtSvidLayer`]) and a reqwest helper
//! ([`JwtSvids::send`]).

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderName, HeaderValue, header};
use tower::{Layer, Service};
use zt_core::jwt::JwtSvid;
use zt_core::source::{SourceError, SvidSource};
use zt_core::time::{SharedClock, Timestamp, system_clock};

/// Default shortest remaining lifetime of a token put on a request.
pub const DEFAULT_MIN_REMAINING: Duration = Duration::from_secs(10);

/// Why no JWT-SVID could be attached. The request is not sent.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum JwtAttachError {
    /// The source could not provide a JWT-SVID.
    #[error("fetching a JWT-SVID for `{audience}` failed: {source}")]
    Fetch {
        /// The audience asked for.
        audience: String,
        /// What the source reported.
        #[source]
        source: SourceError,
    },
    /// The source returned a token that expires too soon to be sent.
    #[error(
        "the JWT-SVID fetched for `{audience}` expires at {expires_at}, less than {min_remaining:?} from now ({now}); check the clocks and the source"
    )]
    ExpiresTooSoon {
        /// The audience asked for.
        audience: String,
        /// The token's expiry.
        expires_at: Timestamp,
        /// The time of the check.
        now: Timestamp,
        /// The shortest remaining lifetime accepted.
        min_remaining: Duration,
    },
    /// The source returned a token for another audience.
    #[error("the JWT-SVID fetched for `{audience}` is for {found:?}")]
    WrongAudience {
        /// The audience asked for.
        audience: String,
        /// The token's audience.
        found: Vec<String>,
    },
    /// The token cannot be written into the header.
    #[error("the JWT-SVID is not a valid header value")]
    HeaderValue,
    /// Sending the request failed (reqwest helper).
    #[cfg(feature = "reqwest")]
    #[error("the request failed: {0}")]
    Http(String),
}

struct Cached {
    svid: JwtSvid,
    value: HeaderValue,
    refresh_at: SystemTime,
}

/// How long a failed background refresh waits before the next one.
const REFRESH_RETRY: Duration = Duration::from_secs(1);

#[derive(Default)]
struct Entry {
    current: Mutex<Option<Arc<Cached>>>,
    fetching: tokio::sync::Mutex<()>,
    /// A background refresh is running.
    refreshing: AtomicBool,
    /// No background refresh before this time (after a failed one).
    retry_at: Mutex<Option<SystemTime>>,
}

struct Inner {
    source: Arc<dyn SvidSource>,
    clock: SharedClock,
    header: HeaderName,
    min_remaining: Duration,
    entries: Mutex<HashMap<String, Arc<Entry>>>,
}

/// JWT-SVIDs from a source, cached per audience and refreshed before they
/// expire. Cheap to clone; clones share the cache.
///
/// A token is reused until half its lifetime has passed; then it is fetched
/// again in the background while requests keep using the cached token, so
/// a slow agent (a SPIRE agent whose server is down can take tens of
/// seconds to answer) never holds a request up while a usable token is
/// cached. Only a request with no usable token waits for the fetch, and
/// concurrent requests for one audience share it. A token whose remaining
/// lifetime is under
/// [`min_remaining`](Self::min_remaining) is never put on a request: if
/// the source cannot provide a fresher one, the request fails with a
/// [`JwtAttachError`]. If a refresh fails while the cached token still has
/// enough life, the cached token is used and the failure is logged.
///
/// The header is `Authorization: Bearer <token>` by default; a custom
/// header ([`header`](Self::header)) carries the bare token. Header values
/// are marked sensitive, so HTTP/2 never indexes them.
#[derive(Clone)]
pub struct JwtSvids {
    inner: Arc<Inner>,
}

impl fmt::Debug for JwtSvids {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let audiences: Vec<String> = self.lock_entries().keys().cloned().collect();
        f.debug_struct("JwtSvids")
            .field("header", &self.inner.header)
            .field("min_remaining", &self.inner.min_remaining)
            .field("audiences", &audiences)
            .finish_non_exhaustive()
    }
}

impl JwtSvids {
    /// Tokens from `source`, on the system clock, in `Authorization`.
    pub fn new(source: Arc<dyn SvidSource>) -> Self {
        Self {
            inner: Arc::new(Inner {
                source,
                clock: system_clock(),
                header: header::AUTHORIZATION,
                min_remaining: DEFAULT_MIN_REMAINING,
                entries: Mutex::new(HashMap::new()),
            }),
        }
    }

    fn configure(mut self, f: impl FnOnce(&mut Inner)) -> Self {
        // Configuration happens before the cache is shared; a clone made
        // earlier keeps the old settings and cache.
        match Arc::get_mut(&mut self.inner) {
            Some(inner) => f(inner),
            None => {
                let old = &*self.inner;
                let mut inner = Inner {
                    source: Arc::clone(&old.source),
                    clock: Arc::clone(&old.clock),
                    header: old.header.clone(),
                    min_remaining: old.min_remaining,
                    entries: Mutex::new(HashMap::new()),
                };
                f(&mut inner);
                self.inner = Arc::new(inner);
            }
        }
        self
    }

    /// The clock expiry is judged by. Default: system.
    #[must_use]
    pub fn clock(self, clock: SharedClock) -> Self {
        self.configure(|i| i.clock = clock)
    }

    /// The header tokens go in. `Authorization` gets `Bearer <token>`; any
    /// other header the bare token.
    #[must_use]
    pub fn header(self, name: HeaderName) -> Self {
        self.configure(|i| i.header = name)
    }

    /// The shortest remaining lifetime of a token put on a request
    /// (default [`DEFAULT_MIN_REMAINING`]); covers transit and clock skew.
    #[must_use]
    pub fn min_remaining(self, min: Duration) -> Self {
        self.configure(|i| i.min_remaining = min)
    }

    /// The header tokens go in.
    pub fn header_name(&self) -> &HeaderName {
        &self.inner.header
    }

    fn lock_entries(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Entry>>> {
        self.inner
            .entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn entry(&self, audience: &str) -> Arc<Entry> {
        let mut entries = self.lock_entries();
        if let Some(entry) = entries.get(audience) {
            return Arc::clone(entry);
        }
        let entry = Arc::new(Entry::default());
        entries.insert(audience.to_owned(), Arc::clone(&entry));
        entry
    }

    fn usable(&self, cached: &Cached, now: SystemTime) -> bool {
        now.checked_add(self.inner.min_remaining)
            .is_some_and(|deadline| deadline < cached.svid.expiry())
    }

    /// The cached token for `audience` if it needs no refresh.
    fn fresh(&self, entry: &Entry, now: SystemTime) -> Option<Arc<Cached>> {
        let current = entry.current.lock().unwrap_or_else(PoisonError::into_inner);
        current
            .as_ref()
            .filter(|c| now < c.refresh_at && self.usable(c, now))
            .cloned()
    }

    async fn cached(&self, audience: &str) -> Result<Arc<Cached>, JwtAttachError> {
        let entry = self.entry(audience);
        let now = self.inner.clock.now();
        if let Some(cached) = self.fresh(&entry, now) {
            return Ok(cached);
        }
        if let Some(cached) = self.still_usable(&entry, now) {
            self.refresh_in_background(audience, &entry, now);
            return Ok(cached);
        }
        let _fetching = entry.fetching.lock().await;
        if let Some(cached) = self.fresh(&entry, self.inner.clock.now()) {
            return Ok(cached);
        }
        match self.fetch(audience).await {
            Ok(cached) => {
                *entry.current.lock().unwrap_or_else(PoisonError::into_inner) =
                    Some(Arc::clone(&cached));
                Ok(cached)
            }
            Err(error) => match self.still_usable(&entry, self.inner.clock.now()) {
                Some(cached) => {
                    log_kept(audience, &cached, &error);
                    Ok(cached)
                }
                None => Err(error),
            },
        }
    }

    /// The cached token for `audience` if it can still go on a request,
    /// refresh due or not.
    fn still_usable(&self, entry: &Entry, now: SystemTime) -> Option<Arc<Cached>> {
        entry
            .current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .filter(|c| self.usable(c, now))
    }

    /// Starts one background fetch for `audience` unless one is running or
    /// the last one failed less than [`REFRESH_RETRY`] ago.
    fn refresh_in_background(&self, audience: &str, entry: &Arc<Entry>, now: SystemTime) {
        let retry_at = *entry
            .retry_at
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if retry_at.is_some_and(|at| now < at) {
            return;
        }
        if entry.refreshing.swap(true, Ordering::AcqRel) {
            return;
        }
        let this = self.clone();
        let entry = Arc::clone(entry);
        let audience = audience.to_owned();
        tokio::spawn(async move {
            let _fetching = entry.fetching.lock().await;
            // A request that found no usable token may have fetched one
            // while this task waited for the lock.
            if this.fresh(&entry, this.inner.clock.now()).is_some() {
                entry.refreshing.store(false, Ordering::Release);
                return;
            }
            match this.fetch(&audience).await {
                Ok(cached) => {
                    *entry.current.lock().unwrap_or_else(PoisonError::into_inner) = Some(cached);
                    *entry
                        .retry_at
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner) = None;
                }
                Err(error) => {
                    let now = this.inner.clock.now();
                    *entry
                        .retry_at
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner) = now.checked_add(REFRESH_RETRY);
                    if let Some(cached) = this.still_usable(&entry, now) {
                        log_kept(&audience, &cached, &error);
                    } else {
                        tracing::warn!(target: "zt::client", audience, %error, "JWT-SVID refresh failed");
                    }
                }
            }
            entry.refreshing.store(false, Ordering::Release);
        });
    }

    async fn fetch(&self, audience: &str) -> Result<Arc<Cached>, JwtAttachError> {
        let inner = &*self.inner;
        let audiences = [audience.to_owned()];
        let svid = inner
            .source
            .fetch_jwt_svid(&audiences)
            .await
            .map_err(|source| JwtAttachError::Fetch {
                audience: audience.to_owned(),
                source,
            })?;
        if !svid.audience().iter().any(|a| a == audience) {
            return Err(JwtAttachError::WrongAudience {
                audience: audience.to_owned(),
                found: svid.audience().to_vec(),
            });
        }
        let now = inner.clock.now();
        let remaining = svid.expiry().duration_since(now).unwrap_or_default();
        if remaining <= inner.min_remaining {
            return Err(JwtAttachError::ExpiresTooSoon {
                audience: audience.to_owned(),
                expires_at: Timestamp(svid.expiry()),
                now: Timestamp(now),
                min_remaining: inner.min_remaining,
            });
        }
        // Refresh at half the remaining lifetime, and never later than the
        // last moment the token is still usable.
        let last_usable = svid
            .expiry()
            .checked_sub(inner.min_remaining)
            .unwrap_or(now);
        let refresh_at = (now + remaining / 2).min(last_usable);
        let text = if inner.header == header::AUTHORIZATION {
            format!("Bearer {}", svid.token())
        } else {
            svid.token().to_owned()
        };
        let mut value = HeaderValue::try_from(text).map_err(|_| JwtAttachError::HeaderValue)?;
        value.set_sensitive(true);
        Ok(Arc::new(Cached {
            svid,
            value,
            refresh_at,
        }))
    }

    /// A JWT-SVID for `audience` with at least
    /// [`min_remaining`](Self::min_remaining) of life left.
    ///
    /// # Errors
    ///
    /// [`JwtAttachError`]: the source failed, or returned a token for
    /// another audience or too close to expiry.
    pub async fn token(&self, audience: &str) -> Result<JwtSvid, JwtAttachError> {
        Ok(self.cached(audience).await?.svid.clone())
    }

    /// The header value for `audience` (`Bearer <token>` for
    /// `Authorization`), marked sensitive.
    ///
    /// # Errors
    ///
    /// As [`token`](Self::token).
    pub async fn header_value(&self, audience: &str) -> Result<HeaderValue, JwtAttachError> {
        Ok(self.cached(audience).await?.value.clone())
    }

    /// Sets the token header for `audience` in `headers`.
    ///
    /// # Errors
    ///
    /// As [`token`](Self::token).
    pub async fn attach(
        &self,
        headers: &mut HeaderMap,
        audience: &str,
    ) -> Result<(), JwtAttachError> {
        let value = self.header_value(audience).await?;
        headers.insert(self.inner.header.clone(), value);
        Ok(())
    }

    /// Sends a reqwest request with a JWT-SVID for `audience` attached.
    ///
    /// ```no_run
    /// # async fn run(http: reqwest::Client, tokens: zt_client::JwtSvids) -> Result<(), zt_client::JwtAttachError> {
    /// let response = tokens
    ///     .send(http.get("https://ledger:8443/entries"), "spiffe://example.org/ledger")
    ///     .await?;
    /// # let _ = response; Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`token`](Self::token), and [`JwtAttachError::Http`] if the
    /// request cannot be built or sent.
    #[cfg(feature = "reqwest")]
    pub async fn send(
        &self,
        request: reqwest::RequestBuilder,
        audience: &str,
    ) -> Result<reqwest::Response, JwtAttachError> {
        let (client, request) = request.build_split();
        let mut request = request.map_err(|e| JwtAttachError::Http(e.to_string()))?;
        self.attach(request.headers_mut(), audience).await?;
        client
            .execute(request)
            .await
            .map_err(|e| JwtAttachError::Http(e.to_string()))
    }
}

fn log_kept(audience: &str, cached: &Cached, error: &JwtAttachError) {
    tracing::warn!(
        target: "zt::client",
        audience,
        expires_at = %Timestamp(cached.svid.expiry()),
        %error,
        "JWT-SVID refresh failed; the cached token is still valid and stays in use"
    );
}

/// A tower layer that attaches a JWT-SVID for one audience to every
/// `http::Request`: for a tonic `Channel`, a hyper client, or any other
/// HTTP service.
///
/// ```no_run
/// # fn wrap(channel: tonic::transport::Channel, tokens: zt_client::JwtSvids) {
/// use tower::ServiceBuilder;
/// use zt_client::JwtSvidLayer;
///
/// let channel = ServiceBuilder::new()
///     .layer(JwtSvidLayer::new(tokens, "spiffe://example.org/billing"))
///     .service(channel);
/// // BillingClient::new(channel)
/// # let _ = channel;
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct JwtSvidLayer {
    tokens: JwtSvids,
    audience: Arc<str>,
}

impl JwtSvidLayer {
    /// Attaches tokens from `tokens` for `audience`.
    pub fn new(tokens: JwtSvids, audience: impl AsRef<str>) -> Self {
        Self {
            tokens,
            audience: Arc::from(audience.as_ref()),
        }
    }
}

impl<S> Layer<S> for JwtSvidLayer {
    type Service = AttachJwtSvid<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AttachJwtSvid {
            inner,
            tokens: self.tokens.clone(),
            audience: Arc::clone(&self.audience),
        }
    }
}

/// The service [`JwtSvidLayer`] wraps around another.
#[derive(Clone, Debug)]
pub struct AttachJwtSvid<S> {
    inner: S,
    tokens: JwtSvids,
    audience: Arc<str>,
}

/// The error of [`AttachJwtSvid`]: the inner service's, or a
/// [`JwtAttachError`], boxed.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl<S, B> Service<http::Request<B>> for AttachJwtSvid<S>
where
    S: Service<http::Request<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        // The ready service goes into the future; a clone takes its place.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let tokens = self.tokens.clone();
        let audience = Arc::clone(&self.audience);
        Box::pin(async move {
            tokens.attach(req.headers_mut(), &audience).await?;
            inner.call(req).await.map_err(Into::into)
        })
    }
}
