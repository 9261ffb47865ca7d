//! The decision counter of an `Authorizer`, with one handle per label set
//! registered once, so that a decision costs an atomic increment and no
//! label allocation.

use std::sync::{Arc, OnceLock};

use metrics::{Counter, SharedString};
use zt_core::metrics::{AUTHZ_DECISIONS_TOTAL, label};

use crate::audit::Verdict;
use crate::policy::DecisionReason;

const VERDICTS: usize = 3;
const REASONS: usize = 9;

/// `zt_authz_decisions_total` handles of one target, by verdict and reason.
pub(crate) struct DecisionCounters {
    target: Arc<str>,
    handles: [OnceLock<Counter>; VERDICTS * REASONS],
}

impl DecisionCounters {
    pub(crate) fn new(target: Arc<str>) -> Self {
        Self {
            target,
            handles: std::array::from_fn(|_| OnceLock::new()),
        }
    }

    /// Counts one decision. The handle of a label set is registered with
    /// the recorder in force at its first decision.
    pub(crate) fn record(&self, verdict: Verdict, reason: DecisionReason) {
        let slot = verdict_index(verdict) * REASONS + reason_index(reason);
        // `slot` < VERDICTS * REASONS: both indices are below their bound.
        if let Some(handle) = self.handles.get(slot) {
            handle
                .get_or_init(|| {
                    metrics::counter!(
                        AUTHZ_DECISIONS_TOTAL,
                        label::DECISION => verdict.as_str(),
                        label::REASON => reason.as_str(),
                        label::TARGET => SharedString::from(Arc::clone(&self.target)),
                    )
                })
                .increment(1);
        }
    }
}

fn verdict_index(verdict: Verdict) -> usize {
    match verdict {
        Verdict::Allow => 0,
        Verdict::Deny => 1,
        Verdict::WouldDeny => 2,
    }
}

fn reason_index(reason: DecisionReason) -> usize {
    match reason {
        DecisionReason::MatchedAllow => 0,
        DecisionReason::MatchedDeny => 1,
        DecisionReason::NoMatchingRule => 2,
        DecisionReason::Unauthenticated => 3,
        DecisionReason::Revoked => 4,
        DecisionReason::Expired => 5,
        DecisionReason::CallerNotDeclared => 6,
        DecisionReason::Undeclared => 7,
        DecisionReason::ConditionNotMet => 8,
    }
}
