//! Helpers shared by the end-to-end tests: a `ZtServer` serving on
//! 127.0.0.1, and reading captured audit events.

#![allow(dead_code, reason = "each test binary uses a subset")]

use std::net::SocketAddr;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use zt_server::ZtServer;
use zt_tests::audit_capture::{AuditCapture, Fields};

/// A running server; dropping it shuts it down.
pub(crate) struct Running {
    /// Where it listens.
    pub(crate) addr: SocketAddr,
    stop: oneshot::Sender<()>,
}

impl Running {
    /// The address and the sender that stops the server when sent to or
    /// dropped.
    pub(crate) fn into_parts(self) -> (SocketAddr, oneshot::Sender<()>) {
        (self.addr, self.stop)
    }
}

/// Serves `service` (an axum `Router`, tonic `Routes`, any tower HTTP
/// service) behind `server` on 127.0.0.1, port 0.
pub(crate) async fn serve<S, B>(server: ZtServer, service: S) -> Running
where
    S: tower::Service<http::Request<hyper::body::Incoming>, Response = http::Response<B>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(async move {
        server
            .serve(listener, service, async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
    });
    Running { addr, stop }
}

/// A field of an audit event; panics, naming the event, if it is absent.
pub(crate) fn field<'a>(event: &'a Fields, name: &str) -> &'a str {
    event
        .get(name)
        .unwrap_or_else(|| panic!("no `{name}` in {event:?}"))
}

/// The one audit event captured since the last call; panics unless there
/// is exactly one.
pub(crate) fn single(capture: &AuditCapture) -> Fields {
    let mut events = capture.take();
    assert_eq!(events.len(), 1, "{events:?}");
    events.pop().unwrap()
}
