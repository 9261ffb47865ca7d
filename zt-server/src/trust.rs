//! Responses bound to their connection's trust: a streaming response ends
//! as soon as the connection's peer is no longer trusted.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Buf;
use http::{HeaderMap, HeaderValue};
use http_body::{Body, Frame, SizeHint};
use tokio_util::sync::WaitForCancellationFutureOwned;
use zt_core::live::EndSignal;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// gRPC status `PERMISSION_DENIED`.
const GRPC_PERMISSION_DENIED: &str = "7";
/// gRPC status `UNAUTHENTICATED`.
const GRPC_UNAUTHENTICATED: &str = "16";

pin_project_lite::pin_project! {
    /// A response body that ends when its connection's trust ends.
    ///
    /// Frames pass through unchanged while the peer is trusted, and frames
    /// the service has ready are delivered. Once the connection's
    /// [`EndSignal`] has fired and the body would wait for more, a gRPC
    /// response ends with trailers
    /// carrying `PERMISSION_DENIED` (peer revoked, or no longer accepted by
    /// the pin) or `UNAUTHENTICATED` (its chain expired or no longer
    /// verifies), and any other response ends with a [`TrustEnded`](zt_core::live::TrustEnded) error,
    /// which resets the HTTP/2 stream or closes the HTTP/1 connection. The
    /// caller sees the status, never the reason: that goes to the audit log.
    pub struct TrustBoundBody<B> {
        #[pin]
        inner: B,
        signal: EndSignal,
        // Created the first time the inner body is pending: a body that is
        // ready at once (most unary responses) never allocates it.
        wait: Option<Pin<Box<WaitForCancellationFutureOwned>>>,
        grpc: bool,
        done: bool,
    }
}

impl<B> TrustBoundBody<B> {
    /// Binds `inner`, the response to a request on the connection of
    /// `signal`, to that connection's trust. `grpc` selects how it ends:
    /// with gRPC trailers, or with an error. [`ZtServer::serve`](crate::ZtServer::serve)
    /// binds every response; use this in an accept loop of your own built
    /// on a [`TrustMonitor`](zt_core::live::TrustMonitor).
    pub fn new(inner: B, signal: EndSignal, grpc: bool) -> Self {
        Self {
            inner,
            signal,
            wait: None,
            grpc,
            done: false,
        }
    }
}

impl<B> std::fmt::Debug for TrustBoundBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrustBoundBody")
            .field("grpc", &self.grpc)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

fn end_frame<D: Buf>(signal: &EndSignal, grpc: bool) -> Result<Frame<D>, BoxError> {
    let permission = signal
        .reason()
        .is_some_and(|ended| ended.reason().is_permission());
    if grpc {
        let mut trailers = HeaderMap::with_capacity(2);
        let (status, message) = if permission {
            (GRPC_PERMISSION_DENIED, "the caller is no longer authorized")
        } else {
            (
                GRPC_UNAUTHENTICATED,
                "the caller's identity is no longer valid",
            )
        };
        trailers.insert("grpc-status", HeaderValue::from_static(status));
        trailers.insert("grpc-message", HeaderValue::from_static(message));
        Ok(Frame::trailers(trailers))
    } else {
        Err(match signal.reason() {
            Some(ended) => Box::new(ended.clone()),
            None => Box::new(ConnectionEnded),
        })
    }
}

/// The connection ended before a reason was recorded (never expected: the
/// reason is set before the signal fires).
#[derive(Debug, thiserror::Error)]
#[error("the connection's peer is no longer trusted")]
struct ConnectionEnded;

impl<B> Body for TrustBoundBody<B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    type Data = B::Data;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        if *this.done {
            return Poll::Ready(None);
        }
        // What the service has ready is delivered (a refusal the
        // authorization layer wrote, the last message of a stream); the end
        // of trust is acted on when the body would wait for more.
        match this.inner.poll_frame(cx) {
            Poll::Ready(frame) => Poll::Ready(frame.map(|f| f.map_err(Into::into))),
            Poll::Pending => {
                if this.signal.is_ended() {
                    *this.done = true;
                    return Poll::Ready(Some(end_frame(this.signal, *this.grpc)));
                }
                let wait = this
                    .wait
                    .get_or_insert_with(|| Box::pin(this.signal.cancelled()));
                match wait.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        *this.done = true;
                        Poll::Ready(Some(end_frame(this.signal, *this.grpc)))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Whether a request is a gRPC call (`content-type: application/grpc...`).
pub(crate) fn is_grpc<T>(request: &http::Request<T>) -> bool {
    request
        .headers()
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}
