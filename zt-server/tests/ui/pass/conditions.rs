//! `#[callers]` with `{name}` captures and `when` conditions, in the policy
//! file syntax; the declarations decide on the caller's captured segments
//! and on the request's context.
use zt_authz::policy::{Context, DecisionReason, PolicyEngine, Request};
use zt_core::SpiffeId;
use zt_server::callers;
use zt_server::macros::{Declarations, Declared};

#[callers(
    "spiffe://example.org/ns/{ns}/sa/{sa}",
    http = "POST /deploy",
    when = r#"{ ns = "prod", environment = { one_of = ["prod", "staging"] } }"#
)]
async fn deploy() -> &'static str {
    "deployed"
}

fn main() {
    let [spec] = <deploy as Declared>::ENDPOINTS else {
        panic!("one declaration expected");
    };
    assert_eq!(
        spec.when(),
        r#"{ ns = "prod", environment = { one_of = ["prod", "staging"] } }"#
    );
    let declarations = Declarations::builder().add::<deploy>().build().unwrap();
    let prod = SpiffeId::new("spiffe://example.org/ns/prod/sa/ci").unwrap();
    let dev = SpiffeId::new("spiffe://example.org/ns/dev/sa/ci").unwrap();
    let context = Context::new().with("environment", "prod");
    let decide = |caller: &SpiffeId, context: &Context| {
        declarations.evaluate(&Request::new(Some(caller), "POST", "/deploy").with_context(context))
    };
    assert!(decide(&prod, &context).allowed);
    let denied = decide(&dev, &context);
    assert_eq!(denied.reason, DecisionReason::CallerNotDeclared);
    assert!(!decide(&prod, &Context::new().with("environment", "dev")).allowed);
    assert!(!decide(&prod, &Context::new()).allowed);
}
