//! A connection raced against the events that end it, where the events are
//! polled only when one of them has woken the task.
//!
//! `tokio::select!` polls every branch each time the task wakes. A
//! connection's task wakes for every frame it reads and writes, while its
//! watchers (shutdown, the peer's expiry, the end of its trust) fire at most
//! once in its life; polling them on every wake-up costs each request more
//! than the rest of the connection task's own work. [`Watched`] gives the
//! watchers a waker of their own that marks them as woken, and polls them
//! only then.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Wake, Waker};

/// Which of the two futures of a [`Watched`] completed first.
#[derive(Debug)]
pub(crate) enum First<C, W> {
    /// The connection ended.
    Conn(C),
    /// A watcher fired.
    Watch(W),
}

/// The watchers' waker: records that they were woken and wakes the task.
#[derive(Debug)]
struct WatchWaker {
    woken: AtomicBool,
    task: Mutex<Option<Waker>>,
}

impl Wake for WatchWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        let task = self.task.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(task) = task.as_ref() {
            task.wake_by_ref();
        }
    }
}

pin_project_lite::pin_project! {
    /// Completes with whichever of `conn` and `watch` completes first;
    /// `watch` is polled on the first poll and afterwards only when it has
    /// woken the task. When both are ready, the watcher wins (an event that
    /// ends the connection is not lost to a frame that arrived with it).
    pub(crate) struct Watched<C, W> {
        #[pin]
        conn: C,
        #[pin]
        watch: W,
        shared: Arc<WatchWaker>,
        waker: Waker,
    }
}

impl<C, W> Watched<C, W> {
    pub(crate) fn new(conn: C, watch: W) -> Self {
        let shared = Arc::new(WatchWaker {
            // Polled on the first poll, which registers its wakers.
            woken: AtomicBool::new(true),
            task: Mutex::new(None),
        });
        let waker = Waker::from(Arc::clone(&shared));
        Self {
            conn,
            watch,
            shared,
            waker,
        }
    }
}

impl<C: Future, W: Future> Future for Watched<C, W> {
    type Output = First<C::Output, W::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        {
            // The task to wake when a watcher fires: kept current, as a
            // future may move between tasks.
            let mut task = this
                .shared
                .task
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            match task.as_ref() {
                Some(waker) if waker.will_wake(cx.waker()) => {}
                _ => *task = Some(cx.waker().clone()),
            }
        }
        // Cleared before polling: a wake-up during the poll is kept for
        // the next one.
        if this.shared.woken.swap(false, Ordering::AcqRel)
            && let Poll::Ready(event) = this.watch.poll(&mut Context::from_waker(this.waker))
        {
            return Poll::Ready(First::Watch(event));
        }
        this.conn.poll(cx).map(First::Conn)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    use tokio::sync::{Notify, oneshot};

    use super::*;

    /// A future that counts its polls and completes once `ready` is set.
    struct Counted<'a> {
        polls: &'a AtomicUsize,
        inner: Pin<Box<dyn Future<Output = ()> + Send + 'a>>,
    }

    impl Future for Counted<'_> {
        type Output = ();

        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            self.polls.fetch_add(1, Ordering::Relaxed);
            self.inner.as_mut().poll(cx)
        }
    }

    #[tokio::test]
    async fn the_watcher_is_polled_only_when_it_woke_the_task() {
        let conn_polls = AtomicUsize::new(0);
        let watch_polls = AtomicUsize::new(0);
        let frames = Notify::new();
        let (fire, fired) = oneshot::channel::<()>();
        let conn = Counted {
            polls: &conn_polls,
            inner: Box::pin(async {
                // Ten wake-ups of the connection, then it waits for good.
                for _ in 0..10 {
                    frames.notified().await;
                }
                std::future::pending::<()>().await;
            }),
        };
        let watch = Counted {
            polls: &watch_polls,
            inner: Box::pin(async {
                let _ = fired.await;
            }),
        };
        let watched = Watched::new(conn, watch);
        let driver = async {
            for _ in 0..10 {
                tokio::task::yield_now().await;
                frames.notify_one();
            }
            tokio::task::yield_now().await;
            let before = watch_polls.load(Ordering::Relaxed);
            let _ = fire.send(());
            before
        };
        let (first, before) = tokio::join!(watched, driver);
        assert!(matches!(first, First::Watch(())));
        // Polled once to register, and once more after it fired: never for
        // the connection's ten wake-ups.
        assert_eq!(
            before, 1,
            "the watcher was polled on the connection's wake-ups"
        );
        assert_eq!(watch_polls.load(Ordering::Relaxed), 2);
        assert!(conn_polls.load(Ordering::Relaxed) >= 11);
    }

    #[tokio::test]
    async fn the_connection_ending_first_is_returned() {
        let watched = Watched::new(async { 7 }, std::future::pending::<()>());
        assert!(matches!(watched.await, First::Conn(7)));
    }

    #[tokio::test]
    async fn a_watcher_ready_with_the_connection_wins() {
        let watched = Watched::new(async { 7 }, async { "ended" });
        assert!(matches!(watched.await, First::Watch("ended")));
    }

    #[tokio::test(start_paused = true)]
    async fn a_timer_watcher_wakes_a_connection_that_never_wakes() {
        let watched = Watched::new(
            std::future::pending::<()>(),
            tokio::time::sleep(Duration::from_secs(30)),
        );
        assert!(matches!(watched.await, First::Watch(())));
    }
}
