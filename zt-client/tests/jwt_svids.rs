//! JwtSvids: one fetch per audience until half life, a background refresh
//! before expiry that never holds a request up, never an expired (or nearly
//! expired) token on a request, and the tower layer putting the header on
//! requests. Time is a ManualClock.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code"
)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{HeaderName, Request, Response};
use tower::{Layer as _, ServiceExt as _};
use zt_client::{JwtAttachError, JwtSvidLayer, JwtSvids};
use zt_core::jwt::JwtSvid;
use zt_core::source::{BoxFuture, SourceError, SourceState, SvidSource};
use zt_core::time::{Clock as _, ManualClock};
use zt_core::{SpiffeId, TrustDomain};
use zt_dev::{FakeCa, FakeCaSource};

const LEDGER: &str = "spiffe://example.org/ledger";
const BILLING: &str = "spiffe://example.org/billing";

/// A fake-CA source that counts JWT-SVID fetches and can be told to fail
/// or to issue short-lived tokens.
#[derive(Debug)]
struct Counting {
    inner: Arc<FakeCaSource>,
    fetches: AtomicUsize,
    fail: Mutex<bool>,
    /// Fetches never answer (an agent whose server is down).
    hang: Mutex<bool>,
    ttl: Mutex<Duration>,
}

impl SvidSource for Counting {
    fn state(&self) -> &SourceState {
        self.inner.state()
    }

    fn fetch_jwt_svid<'a>(
        &'a self,
        audience: &'a [String],
    ) -> BoxFuture<'a, Result<JwtSvid, SourceError>> {
        Box::pin(async move {
            self.fetches.fetch_add(1, Ordering::SeqCst);
            if *self.hang.lock().unwrap() {
                std::future::pending::<()>().await;
            }
            if *self.fail.lock().unwrap() {
                return Err(SourceError::WorkloadApi {
                    reason: "agent unavailable".into(),
                });
            }
            let ttl = *self.ttl.lock().unwrap();
            self.inner
                .ca()
                .issue_jwt_svid(self.inner.id(), audience, ttl)
                .map_err(|e| SourceError::Issuer {
                    reason: e.to_string(),
                })
        })
    }
}

fn setup() -> (Arc<Counting>, ManualClock, JwtSvids) {
    let clock = ManualClock::starting_now();
    let ca = FakeCa::builder(TrustDomain::new("example.org").unwrap())
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap();
    let inner = FakeCaSource::new(
        ca,
        SpiffeId::new(BILLING).unwrap(),
        Duration::from_secs(3600),
    )
    .unwrap();
    let source = Arc::new(Counting {
        inner,
        fetches: AtomicUsize::new(0),
        fail: Mutex::new(false),
        hang: Mutex::new(false),
        ttl: Mutex::new(Duration::from_secs(120)),
    });
    let tokens = JwtSvids::new(source.clone())
        .clock(Arc::new(clock.clone()))
        .min_remaining(Duration::from_secs(10));
    (source, clock, tokens)
}

fn fetches(source: &Counting) -> usize {
    source.fetches.load(Ordering::SeqCst)
}

/// Polls until `tokens` hands out a token other than `old` for `LEDGER`, or
/// fails after 5 s.
async fn next_token(tokens: &JwtSvids, old: &JwtSvid) -> JwtSvid {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let token = tokens.token(LEDGER).await.unwrap();
        if token != *old {
            return token;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no refreshed token within 5 s"
        );
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn a_token_is_fetched_once_per_audience_and_reused() {
    let (source, _, tokens) = setup();
    let first = tokens.token(LEDGER).await.unwrap();
    for _ in 0..10 {
        assert_eq!(tokens.token(LEDGER).await.unwrap(), first);
    }
    assert_eq!(fetches(&source), 1);
    assert_eq!(first.audience(), [LEDGER]);
    assert_eq!(first.subject().to_string(), BILLING);

    let other = tokens.token("spiffe://example.org/orders").await.unwrap();
    assert_eq!(other.audience(), ["spiffe://example.org/orders"]);
    assert_eq!(fetches(&source), 2);
}

#[tokio::test]
async fn a_token_is_refreshed_at_half_life() {
    let (source, clock, tokens) = setup();
    let first = tokens.token(LEDGER).await.unwrap();
    clock.advance(Duration::from_secs(59));
    assert_eq!(tokens.token(LEDGER).await.unwrap(), first);
    assert_eq!(fetches(&source), 1);
    clock.advance(Duration::from_secs(1));
    // The request past half life gets the cached token at once; the refresh
    // runs in the background.
    assert_eq!(tokens.token(LEDGER).await.unwrap(), first);
    let second = next_token(&tokens, &first).await;
    assert_eq!(fetches(&source), 2);
    assert!(second.expiry() > first.expiry());
}

#[tokio::test]
async fn a_hanging_agent_never_holds_up_a_request_while_the_cached_token_is_usable() {
    let (source, clock, tokens) = setup();
    let first = tokens.token(LEDGER).await.unwrap();
    *source.hang.lock().unwrap() = true;
    clock.advance(Duration::from_secs(70));
    // Each request answers from the cache; one refresh is under way.
    for _ in 0..20 {
        let token = tokio::time::timeout(Duration::from_secs(2), tokens.token(LEDGER))
            .await
            .expect("a request waited on the hanging agent")
            .unwrap();
        assert_eq!(token, first);
        tokio::task::yield_now().await;
    }
    assert_eq!(
        fetches(&source),
        2,
        "one initial fetch, one background refresh"
    );
}

#[tokio::test]
async fn no_token_close_to_expiry_is_handed_out_when_refresh_fails() {
    let (source, clock, tokens) = setup();
    let first = tokens.token(LEDGER).await.unwrap();
    *source.fail.lock().unwrap() = true;

    // Past half life, the background refresh fails; the cached token still
    // has over `min_remaining` left and stays in use.
    clock.advance(Duration::from_secs(100));
    assert_eq!(tokens.token(LEDGER).await.unwrap(), first);
    while fetches(&source) < 2 {
        tokio::task::yield_now().await;
    }
    assert_eq!(tokens.token(LEDGER).await.unwrap(), first);

    // With less than `min_remaining` left, it is never put on a request.
    clock.advance(Duration::from_secs(10));
    let err = tokens.token(LEDGER).await.unwrap_err();
    assert!(
        matches!(&err, JwtAttachError::Fetch { audience, source: SourceError::WorkloadApi { .. } } if audience == LEDGER),
        "{err:?}"
    );

    // The source recovers: a fresh token, with no restart.
    *source.fail.lock().unwrap() = false;
    let fresh = tokens.token(LEDGER).await.unwrap();
    assert!(fresh.expiry() > clock.now() + Duration::from_secs(100));
}

#[tokio::test]
async fn a_token_that_is_too_short_lived_is_refused() {
    let (source, _, tokens) = setup();
    *source.ttl.lock().unwrap() = Duration::from_secs(5);
    let err = tokens.token(LEDGER).await.unwrap_err();
    assert!(
        matches!(&err, JwtAttachError::ExpiresTooSoon { min_remaining, .. } if *min_remaining == Duration::from_secs(10)),
        "{err:?}"
    );
}

#[tokio::test]
async fn every_request_through_the_layer_carries_an_unexpired_token() {
    let (source, clock, tokens) = setup();
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let recorded = seen.clone();
    let service = JwtSvidLayer::new(tokens.clone(), LEDGER).layer(tower::service_fn(
        move |req: Request<()>| {
            let recorded = recorded.clone();
            async move {
                let value = req.headers()["authorization"].clone();
                assert!(value.is_sensitive());
                recorded
                    .lock()
                    .unwrap()
                    .push(value.to_str().unwrap().to_owned());
                Ok::<_, std::convert::Infallible>(Response::new(()))
            }
        },
    ));
    // One request every 7 s over 10 minutes.
    for _ in 0..90 {
        service.clone().oneshot(Request::new(())).await.unwrap();
        let header = seen.lock().unwrap().last().unwrap().clone();
        let token = header.strip_prefix("Bearer ").unwrap();
        let svid = JwtSvid::from_trusted_token(token).unwrap();
        assert!(svid.expiry() > clock.now() + Duration::from_secs(10));
        // Let a background refresh, if one started, run.
        for _ in 0..4 {
            tokio::task::yield_now().await;
        }
        clock.advance(Duration::from_secs(7));
    }
    // A refresh at the first request past each 60 s half life: at 0, 63,
    // 126, … 567 s (in the background after the first). Ten fetches for
    // ninety requests.
    assert_eq!(fetches(&source), 10);
}

#[tokio::test]
async fn a_custom_header_carries_the_bare_token() {
    let (_, _, tokens) = setup();
    let tokens = tokens.header(HeaderName::from_static("x-jwt-svid"));
    let mut headers = http::HeaderMap::new();
    tokens.attach(&mut headers, LEDGER).await.unwrap();
    let token = headers["x-jwt-svid"].to_str().unwrap();
    assert_eq!(
        JwtSvid::from_trusted_token(token).unwrap().audience(),
        [LEDGER]
    );
    assert!(!headers.contains_key("authorization"));
}
