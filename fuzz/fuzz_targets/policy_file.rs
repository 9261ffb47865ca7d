//! Policy and revocation list parsing from TOML.
//!
//! Input: UTF-8 text, parsed as a policy file and as a revocation list. A
//! policy that parses decides a few fixed requests; a revocation list that
//! parses is checked against fixed IDs.
//!
//! Properties checked, besides "no panic": a request without a caller is denied;
//! a decision that allows names the rule that allowed it, and that rule
//! exists in the policy.

#![no_main]

use libfuzzer_sys::fuzz_target;
use zt_core::SpiffeId;
use zt_authz::policy::{Policy, PolicyEngine, Request};
use zt_core::revocation::RevocationSet;

mod common;

const CALLERS: &[&str] = &[
    "spiffe://example.org/ns/prod/sa/billing",
    "spiffe://partner.example/api",
];

const HTTP: &[(&str, &str)] = &[
    ("GET", "/invoices/42"),
    ("POST", "/admin/users"),
    ("GET", "/health"),
    ("DELETE", "/"),
];

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let callers: Vec<SpiffeId> = CALLERS
        .iter()
        .filter_map(|s| SpiffeId::new(s).ok())
        .collect();

    if let Ok(policy) = Policy::from_toml_str(text, "fuzz.toml") {
        let _ = policy.version();
        for caller in callers.iter().map(Some).chain([None]) {
            for (method, path) in HTTP {
                let requests = [
                    Request::new(caller, method, path),
                    Request::new(caller, method, path).with_route("/invoices/{id}"),
                    Request::new(caller, "POST", path)
                        .with_grpc_method("/billing.Billing/GetInvoice"),
                ];
                for request in requests {
                    let decision = policy.evaluate(&request);
                    if caller.is_none() {
                        assert!(!decision.allowed, "no caller, no access");
                    }
                    if decision.allowed {
                        let rule = decision
                            .rule_id
                            .as_deref()
                            .expect("an allow names its rule");
                        assert!(
                            policy.rule(rule).is_some(),
                            "rule {rule:?} is in the policy"
                        );
                    }
                }
            }
        }
    }

    if let Ok(set) = RevocationSet::from_toml_str(text, "revoked.toml") {
        for caller in &callers {
            let _ = set.check(caller, &[0x01, 0x02]);
            let _ = set.is_id_revoked(caller);
        }
        let _ = set.ids().count() + set.serials().count();
    }
});
