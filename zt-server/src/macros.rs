//! Callers declared in code, next to each endpoint.
//!
//! [`#[callers(...)]`](crate::callers) on an axum handler or a tonic service
//! implementation, or [`#[derive(Declared)]`](derive@crate::Declared) on an
//! enum listing a service's endpoints, declares which SPIFFE IDs may call
//! each endpoint. IDs, patterns, routes and gRPC methods are checked at
//! compile time. [`Declarations`] collects the declarations;
//! [`Declarations::with_policy`] combines them with a policy file (both must
//! allow, a denial anywhere wins), and [`AuthorizeLayer`](crate::AuthorizeLayer)
//! enforces and audits the result before the handler runs and before the
//! request body is read, exactly as for policy rules. A refusal by a
//! declaration is a `403` / `PERMISSION_DENIED` whose audit record names the
//! rule `code:<endpoint>` and the reason `caller-not-declared`.
//!
//! The semantics are documented in [`zt_authz::policy::declare`].
//!
//! # Quick start
//!
//! ```
//! use axum::{Router, routing::get};
//! use zt_authz::Authorizer;
//! use zt_authz::policy::{Policy, Rule};
//! use zt_server::macros::Declarations;
//! use zt_server::{AuthorizeLayer, callers};
//!
//! #[callers("spiffe://example.org/billing", http = "GET /invoices/{id}")]
//! async fn get_invoice() -> &'static str {
//!     "invoice"
//! }
//!
//! #[callers(trust_domain = "example.org", http = "GET /health")]
//! async fn health() -> &'static str {
//!     "ok"
//! }
//!
//! // Every route must be declared; the policy file admits the mesh.
//! let declarations = Declarations::builder()
//!     .add::<get_invoice>()
//!     .add::<health>()
//!     .require_declared(true)
//!     .build()?;
//! let file = Policy::builder()
//!     .rule(Rule::allow("mesh").caller("spiffe://example.org/**")?)
//!     .build()?;
//! let engine = declarations.with_policy(file);
//! print!("{}", engine.export()); // the effective policy, for review
//!
//! let authz = Authorizer::builder(engine).target("billing").build();
//! let app: Router = Router::new()
//!     .route("/invoices/{id}", get(get_invoice))
//!     .route("/health", get(health))
//!     .route_layer(AuthorizeLayer::new(authz));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub use zt_authz::policy::PolicyError;
pub use zt_authz::policy::declare::{
    Combined, Declarations, DeclarationsBuilder, Declared, EndpointSpec, EndpointTarget,
    RULE_ID_PREFIX,
};

/// Items the macros' expansions name. Not a stable API.
#[doc(hidden)]
pub mod __private {
    #[cfg(feature = "tonic")]
    pub use tonic::server::NamedService;
}

#[cfg(feature = "axum")]
pub use router::DeclaredRouter;

#[cfg(feature = "axum")]
mod router {
    use axum::Router;
    use axum::routing::MethodRouter;

    use super::{Declarations, PolicyError};

    /// An axum [`Router`] that records its routes, so that a service can
    /// refuse to start while a route has no declared callers.
    ///
    /// axum cannot list a router's routes; routes added through this type
    /// are checked by [`into_router`](Self::into_router) against the
    /// declarations, by path (a route is declared when a declaration for any
    /// method covers its template).
    ///
    /// ```
    /// use axum::routing::get;
    /// use zt_server::callers;
    /// use zt_server::macros::{Declarations, DeclaredRouter, PolicyError};
    ///
    /// #[callers("spiffe://example.org/billing", http = "GET /invoices/{id}")]
    /// async fn get_invoice() -> &'static str {
    ///     "invoice"
    /// }
    /// async fn debug() -> &'static str {
    ///     "debug"
    /// }
    ///
    /// let declarations = Declarations::builder().add::<get_invoice>().build()?;
    /// let checked = DeclaredRouter::<()>::new(&declarations)
    ///     .route("/invoices/{id}", get(get_invoice))
    ///     .into_router();
    /// assert!(checked.is_ok());
    ///
    /// let refused = DeclaredRouter::<()>::new(&declarations)
    ///     .route("/invoices/{id}", get(get_invoice))
    ///     .route("/debug", get(debug))
    ///     .into_router();
    /// assert!(refused.unwrap_err().to_string().contains("route /debug"));
    /// # Ok::<(), PolicyError>(())
    /// ```
    #[derive(Debug)]
    pub struct DeclaredRouter<S = ()> {
        router: Router<S>,
        declarations: Declarations,
        routes: Vec<String>,
    }

    impl<S: Clone + Send + Sync + 'static> DeclaredRouter<S> {
        /// An empty router checked against `declarations`.
        pub fn new(declarations: &Declarations) -> Self {
            Self {
                router: Router::new(),
                declarations: declarations.clone(),
                routes: Vec::new(),
            }
        }

        /// Adds a route, as [`Router::route`] does, and records its path.
        pub fn route(mut self, path: &str, method_router: MethodRouter<S>) -> Self {
            self.router = self.router.route(path, method_router);
            self.routes.push(path.to_owned());
            self
        }

        /// The router, if every recorded route is covered by a declaration.
        ///
        /// # Errors
        ///
        /// [`PolicyError::UndeclaredEndpoints`] naming each route without
        /// declared callers.
        pub fn into_router(self) -> Result<Router<S>, PolicyError> {
            self.declarations
                .check_routes(self.routes.iter().map(String::as_str))?;
            Ok(self.router)
        }
    }
}
