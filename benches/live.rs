//! What keeping connections bound to their trust costs, beside what it
//! saves nothing on:
//!
//! - per request: `ZtServer::serve` checks whether the request is gRPC,
//!   clones the connection's end signal and wraps the response body in a
//!   `TrustBoundBody`, whose frames pass through after one atomic load;
//! - per connection: `TrustMonitor::admit` judges the chain again (a warm
//!   verified-chain cache: one SHA-256 of the chain, the pin and the
//!   revocation list) and indexes the connection by ID, serial and trust
//!   domain; dropping the guard removes it.
//!
//! Re-judging on a change of trust runs off the request path and is not
//! timed here.
//!
//! ```text
//! cargo bench -p zt-benches --bench live
//! ```
//!
//! Figures come from paired rounds (`zt_benches::paired`): the bound and
//! the unbound job in turn, round after round, the median of per-round
//! differences.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "bench code"
)]

use std::hint::black_box;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use rustls_pki_types::CertificateDer;
use zt_benches::paired;
use zt_core::live::{EndSignal, TrustMonitor};
use zt_core::peer::PeerVerifier;
use zt_core::revocation::Revocations;
use zt_core::source::SvidSource as _;
use zt_core::x509::Usage;
use zt_dev::{FakeCa, FakeCaSource};
use zt_server::TrustBoundBody;

const ROUNDS: usize = 201;
const PER_ROUND: u32 = 101;
const BATCH: u32 = 1_000;

/// Polls a ready body to its end, counting frames.
fn drain<B: http_body::Body + Unpin>(mut body: B) -> usize {
    let mut cx = Context::from_waker(Waker::noop());
    let mut frames = 0;
    while let Poll::Ready(Some(frame)) = Pin::new(&mut body).poll_frame(&mut cx) {
        frames += usize::from(frame.is_ok());
    }
    frames
}

fn request() -> http::Request<()> {
    http::Request::get("/invoices/1")
        .header("content-type", "application/json")
        .body(())
        .unwrap()
}

fn unbound(request: &http::Request<()>) -> usize {
    let body = Full::new(Bytes::from_static(b"invoice 1"));
    black_box(request);
    drain(body)
}

fn bound(request: &http::Request<()>, signal: &EndSignal) -> usize {
    let grpc = request
        .headers()
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
    let body = Full::new(Bytes::from_static(b"invoice 1"));
    drain(TrustBoundBody::new(body, signal.clone(), grpc))
}

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _entered = runtime.enter();

    let ca = FakeCa::new("example.org".parse().unwrap()).unwrap();
    let ttl = Duration::from_secs(3600);
    let server = FakeCaSource::new(
        ca.clone(),
        "spiffe://example.org/billing".parse().unwrap(),
        ttl,
    )
    .unwrap();
    let caller =
        FakeCaSource::new(ca, "spiffe://example.org/orders".parse().unwrap(), ttl).unwrap();
    let chain: Arc<[CertificateDer<'static>]> = caller.current().unwrap().svid().chain().into();
    let verifier = Arc::new(
        PeerVerifier::new(
            server,
            zt_core::time::system_clock(),
            Usage::ClientAuth,
            None,
        )
        .with_revocations(Revocations::new()),
    );
    let monitor = TrustMonitor::new(verifier.clone());
    // Keeps the watch task started and the chain cached.
    let guard = monitor.admit(chain.clone()).unwrap();
    let signal = guard.signal();
    let req = request();
    assert_eq!(unbound(&req), 1);
    assert_eq!(bound(&req, &signal), 1);

    let mut plain = || {
        paired::timed(&mut || {
            for _ in 0..BATCH {
                black_box(unbound(black_box(&req)));
            }
        })
    };
    let mut trust_bound = || {
        paired::timed(&mut || {
            for _ in 0..BATCH {
                black_box(bound(black_box(&req), &signal));
            }
        })
    };
    let mut verify = || {
        paired::timed(&mut || {
            for _ in 0..BATCH / 10 {
                black_box(verifier.verify(&chain[0], &chain[1..]).unwrap());
            }
        })
    };
    let mut admit = || {
        let start = Instant::now();
        for _ in 0..BATCH / 10 {
            drop(black_box(monitor.admit(chain.clone()).unwrap()));
        }
        start.elapsed()
    };
    let rounds = paired::run(
        ROUNDS,
        PER_ROUND,
        &mut [
            ("unbound", &mut plain),
            ("bound", &mut trust_bound),
            ("verify", &mut verify),
            ("admit", &mut admit),
        ],
    );
    let per = |ns: f64, n: u32| ns / f64::from(n);
    let added = rounds.median(|ns| ns("bound") - ns("unbound")) / f64::from(BATCH);
    let unbound_ns = per(rounds.median_ns("unbound"), BATCH);
    let verify_ns = per(rounds.median_ns("verify"), BATCH / 10);
    let admit_ns = per(rounds.median_ns("admit"), BATCH / 10);
    println!("response body, unbound: {unbound_ns:.0} ns (a 9-byte body polled to its end)");
    println!("trust binding per request = {added:.0} ns");
    println!(
        "connection admission = {:.2} µs (of which the verifier with a warm cache {:.2} µs), once per connection",
        admit_ns / 1e3,
        verify_ns / 1e3
    );
    println!(
        "open connections after the bench: {}",
        monitor.open_connections()
    );
    drop(guard);
}
