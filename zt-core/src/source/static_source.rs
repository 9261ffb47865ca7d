//! A source with fixed material.

use std::sync::Arc;

use super::{Snapshot, SourceState, SvidSource};
use crate::bundle::BundleSet;
use crate::svid::X509Svid;
use crate::time::{SharedClock, system_clock};

/// Serves one SVID and bundle set until the SVID expires; [`StaticSource::set`]
/// replaces them.
#[derive(Debug)]
pub struct StaticSource {
    state: SourceState,
}

impl StaticSource {
    /// A source serving `svid` and `bundles`, checking expiry with the
    /// system clock.
    pub fn new(svid: X509Svid, bundles: BundleSet) -> Self {
        Self::with_clock(svid, bundles, system_clock())
    }

    /// As [`StaticSource::new`], with an injected clock.
    pub fn with_clock(svid: X509Svid, bundles: BundleSet, clock: SharedClock) -> Self {
        let state = SourceState::new(clock).with_metrics_name("static");
        state.publish(svid, bundles);
        Self { state }
    }

    /// Replaces the material; subscribers see a new snapshot.
    pub fn set(&self, svid: X509Svid, bundles: BundleSet) -> Arc<Snapshot> {
        self.state.publish(svid, bundles)
    }
}

impl SvidSource for StaticSource {
    fn state(&self) -> &SourceState {
        &self.state
    }
}
