//! Helpers shared by zt's runnable examples, integration tests and
//! benchmarks. Not a public API: the crates users depend on are `zt-core`,
//! `zt-client` and `zt-server`.
#![forbid(unsafe_code)]

/// Installs a compact `tracing` subscriber for examples, honouring
/// `RUST_LOG` (default: warnings only, and no `zt::audit` events, which the
/// examples print as JSON lines themselves, so their own output stays
/// readable).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,zt::audit=off"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(true)
        .compact()
        .try_init();
}

/// The example `billing` gRPC service (client and server stubs), generated
/// from `examples/proto/billing.proto` by `tools/gen-proto`.
#[path = "../examples/pb/billing.rs"]
#[allow(
    missing_docs,
    unreachable_pub,
    clippy::all,
    clippy::pedantic,
    rust_2018_idioms,
    reason = "generated code"
)]
pub mod billing;

/// The median time per iteration, in nanoseconds, that criterion
/// estimated for `group/name` in `criterion_dir`; the benches print their
/// ratios from it.
///
/// # Panics
///
/// If the estimate file is missing or malformed (the bench did not run).
#[allow(
    clippy::panic,
    clippy::unwrap_used,
    reason = "bench support: a missing estimate is a broken bench"
)]
pub fn criterion_median_ns(criterion_dir: &std::path::Path, group: &str, name: &str) -> f64 {
    let path = criterion_dir
        .join(group)
        .join(name)
        .join("new/estimates.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    json["median"]["point_estimate"]
        .as_f64()
        .unwrap_or_else(|| panic!("no median in {}", path.display()))
}

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
    }

    impl fmt::Debug for AuditCapture {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_list().entries(self.events().iter()).finish()
        }
    }

    impl AuditCapture {
        /// Installs a capturing subscriber for the current thread (use a
        /// current-thread runtime so server tasks run on it) until the
        /// guard is dropped.
        pub fn install() -> (Self, tracing::subscriber::DefaultGuard) {
            let capture = Self::default();
            let subscriber = tracing_subscriber::registry().with(capture.clone());
            let guard = tracing::subscriber::set_default(subscriber);
            (capture, guard)
        }

        /// The `zt::audit` decision events captured so far.
        pub fn events(&self) -> Vec<Fields> {
            self.events
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

    impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for AuditCapture {
        fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
            let meta = event.metadata();
            if meta.target() != "zt::audit" || !meta.fields().iter().any(|f| f.name() == "decision")
            {
                return;
            }
            let mut fields = Fields::new();
            fields.insert("level".into(), meta.level().to_string());
            event.record(&mut Visitor(&mut fields));
            self.events
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(fields);
        }
    }
}
