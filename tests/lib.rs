//! Helpers shared by zt's cross-crate integration tests.
#![forbid(unsafe_code)]

/// Renders an error and all its sources on one line, `a / b / c`, so the
/// refusal reason nested inside a TLS or HTTP error is visible.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(" / ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}

/// Captures `zt::audit` events for tests: each event's fields, rendered as
/// strings.
pub mod audit_capture {
    use std::collections::BTreeMap;
    use std::fmt;
    use std::sync::{Arc, Mutex, PoisonError};

    use tracing::field::{Field, Visit};
    use tracing_subscriber::layer::{Context, SubscriberExt as _};

    /// One captured event: field name → value.
    pub type Fields = BTreeMap<String, String>;

    /// The events captured so far; cheap to clone.
    #[derive(Clone, Default)]
    pub struct AuditCapture {
        events: Arc<Mutex<Vec<Fields>>>,
        connections: Arc<Mutex<Vec<Fields>>>,
    }

    impl fmt::Debug for AuditCapture {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_list().entries(self.events().iter()).finish()
        }
    }

    thread_local! {
        /// The capture events on this thread go to, if any.
        static CURRENT: std::cell::RefCell<Option<AuditCapture>> =
            const { std::cell::RefCell::new(None) };
    }

    /// Routes every event to the capture installed on the thread that
    /// emits it. Installed once as the process-wide subscriber: a global
    /// subscriber is always interested, whereas per-thread subscribers
    /// (`set_default`) race with each other over tracing's global
    /// callsite-interest and max-level caches when tests run in parallel,
    /// and an event can be filtered out before any subscriber sees it.
    struct Router;

    impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Router {
        fn on_event(&self, event: &tracing::Event<'_>, ctx: Context<'_, S>) {
            CURRENT.with(|current| {
                if let Some(capture) = &*current.borrow() {
                    capture.on_event(event, ctx);
                }
            });
        }
    }

    /// Uninstalls the thread's capture when dropped.
    #[must_use = "the capture stops when the guard is dropped"]
    pub struct CaptureGuard(());

    impl Drop for CaptureGuard {
        fn drop(&mut self) {
            CURRENT.with(|current| current.borrow_mut().take());
        }
    }

    impl AuditCapture {
        /// Captures the `zt::audit` events emitted on the current thread
        /// (use a current-thread runtime so server tasks run on it) until
        /// the guard is dropped.
        pub fn install() -> (Self, CaptureGuard) {
            static GLOBAL: std::sync::Once = std::sync::Once::new();
            GLOBAL.call_once(|| {
                let subscriber = tracing_subscriber::registry().with(Router);
                // Another global subscriber (none in these tests) would
                // keep this one from installing; captures then stay empty
                // and the tests that read them fail.
                let _ = tracing::subscriber::set_global_default(subscriber);
            });
            let capture = Self::default();
            CURRENT.with(|current| *current.borrow_mut() = Some(capture.clone()));
            (capture, CaptureGuard(()))
        }

        /// The `zt::audit` decision events captured so far.
        pub fn events(&self) -> Vec<Fields> {
            self.events
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone()
        }

        /// The `zt::audit` connection events (`event = "connection-ended"`)
        /// captured so far.
        pub fn connection_events(&self) -> Vec<Fields> {
            self.connections
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone()
        }

        /// Removes and returns the events captured so far.
        pub fn take(&self) -> Vec<Fields> {
            std::mem::take(&mut *self.events.lock().unwrap_or_else(PoisonError::into_inner))
        }
    }

    struct Visitor<'a>(&'a mut Fields);

    impl Visit for Visitor<'_> {
        fn record_str(&mut self, field: &Field, value: &str) {
            self.0.insert(field.name().to_owned(), value.to_owned());
        }

        fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
            self.0.insert(field.name().to_owned(), format!("{value:?}"));
        }
    }

    impl AuditCapture {
        fn on_event<S: tracing::Subscriber>(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
            let meta = event.metadata();
            if meta.target() != "zt::audit" {
                return;
            }
            let has = |name: &str| meta.fields().iter().any(|f| f.name() == name);
            let into = if has("decision") {
                &self.events
            } else if has("event") {
                &self.connections
            } else {
                return;
            };
            let mut fields = Fields::new();
            fields.insert("level".into(), meta.level().to_string());
            event.record(&mut Visitor(&mut fields));
            into.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(fields);
        }
    }
}
