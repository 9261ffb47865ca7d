//! Handshake metrics, recorded where a handshake is awaited (the server's
//! accept loop, the client's connectors): `zt_handshakes_total` and
//! `zt_handshake_duration_seconds` of `zt_core::metrics`.

use std::io;
use std::time::Instant;

use zt_core::metrics::{HandshakeResult, PeerRefusal, handshake};

use crate::error::{PeerRejected, Side};

/// Records a handshake that `side` started at `started` and that ended
/// with `result` (what tokio-rustls's `accept` or `connect` returned, its
/// stream left out).
///
/// A refusal by zt is counted as `refused` with its [`PeerRefusal`]
/// reason; a TLS protocol error (`InvalidData`) as `failed` / `tls`, any
/// other I/O error as `failed` / `io`.
pub fn record_handshake(side: Side, started: Instant, result: Result<(), &io::Error>) {
    let (outcome, reason) = match result {
        Ok(()) => (HandshakeResult::Ok, "none"),
        Err(e) => match PeerRejected::find(e) {
            Some(rejected) => (
                HandshakeResult::Refused,
                PeerRefusal::of(rejected.error()).as_str(),
            ),
            None if e.kind() == io::ErrorKind::InvalidData => (HandshakeResult::Failed, "tls"),
            None => (HandshakeResult::Failed, "io"),
        },
    };
    handshake(side.metrics_side(), outcome, reason, started.elapsed());
}

/// Records a handshake that `side` started at `started` and gave up on
/// when its timeout elapsed.
pub fn record_handshake_timeout(side: Side, started: Instant) {
    handshake(
        side.metrics_side(),
        HandshakeResult::Timeout,
        "timeout",
        started.elapsed(),
    );
}
