//! Declare, next to each endpoint, which SPIFFE IDs may call it.
//!
//! Use these through `zt-server` (feature `macros`, on by default): the
//! generated code names `::zt_server::macros`, so a service depends on
//! `zt-server` alone. Every ID, pattern, trust domain, route and gRPC
//! method is checked at compile time with `zt-core`'s own parsers, and a
//! mistake points at the literal that is wrong.
//!
//! # Quick start
//!
//! ```
//! use axum::extract::Path;
//! use zt_server::callers;
//! use zt_server::macros::Declarations;
//!
//! #[callers("spiffe://example.org/ns/prod/sa/billing", http = "GET /invoices/{id}")]
//! async fn get_invoice(Path(id): Path<u64>) -> String {
//!     format!("invoice {id}")
//! }
//!
//! let declarations = Declarations::builder().add::<get_invoice>().build()?;
//! assert_eq!(declarations.rules().next().map(|r| r.id()), Some("code:get_invoice"));
//! # Ok::<(), zt_server::macros::PolicyError>(())
//! ```
//!
//! The three forms, their keys and the rule they produce are documented on
//! [`callers`] and [`Declared`](derive@Declared); what a declaration means
//! at run time, and how it combines with a policy file (both must allow, a
//! denial anywhere wins), in `zt_authz::policy::declare`.

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as TokenStream2};
use quote::{format_ident, quote, quote_spanned};
use syn::parse::{Parse, ParseStream, Parser};
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Attribute, Ident, ImplItem, Item, ItemFn, ItemImpl, LitStr, Token};

/// Declares the callers of an axum handler or of the methods of a tonic
/// service implementation.
///
/// # Syntax
///
/// Arguments are string literals (callers: SPIFFE IDs or ID patterns, such
/// as `"spiffe://example.org/ns/*/sa/billing"`) and `key = "value"` pairs,
/// in any order, each key at most once:
///
/// | key | where | meaning |
/// |---|---|---|
/// | `trust_domain` | everywhere | every workload of this trust domain may call |
/// | `http` | handler (required) | the route: `"GET /invoices/{id}"` (`*` for any method) |
/// | `service` | service `impl` | the gRPC service, `"package.Service"` |
/// | `method` | method in a service `impl` | the `.proto` method name, when it is not the method's name in UpperCamelCase |
/// | `when` | everywhere | conditions, as a `when` table of a policy file: `"{ ns = \"prod\" }"` on a `{ns}` capture of a caller, or on a context key; all must hold |
///
/// Callers may capture path segments with `{name}`, as in policy files
/// (`"spiffe://example.org/ns/{ns}/sa/{sa}"`); captures and `when` are
/// checked at compile time with the policy's own parsers.
///
/// # On an axum handler
///
/// ```
/// #[zt_server::callers("spiffe://example.org/billing", trust_domain = "partner.example", http = "GET /invoices/{id}")]
/// async fn get_invoice() -> String {
///     "invoice".into()
/// }
///
/// let app: axum::Router = axum::Router::new().route("/invoices/{id}", axum::routing::get(get_invoice));
/// ```
///
/// The function is left as written. Beside it the attribute defines a type
/// with the same name (types and functions live in different namespaces)
/// that implements `zt_server::macros::Declared`, so
/// `Declarations::builder().add::<get_invoice>()` collects it. The rule id
/// is `code:get_invoice`.
///
/// # On a tonic service implementation
///
/// ```ignore
/// #[zt_server::callers(trust_domain = "example.org")] // optional default for the service
/// #[tonic::async_trait]
/// impl Billing for BillingService {
///     #[callers("spiffe://example.org/orders")]
///     async fn get_invoice(&self, request: Request<GetInvoiceRequest>) -> Result<Response<Invoice>, Status> { /* … */ }
///
///     // No attribute: the service-wide callers apply; without those, the
///     // method is implemented but undeclared.
///     async fn list_invoices(&self, request: Request<ListRequest>) -> Result<Response<Invoices>, Status> { /* … */ }
/// }
/// ```
///
/// Put it above `#[tonic::async_trait]`. A method's own `#[callers(...)]`
/// replaces the service-wide callers. The service type implements
/// `Declared`, with one declaration per method of the `impl`, rule id
/// `code:BillingService::get_invoice`. The gRPC service name is read from
/// tonic's generated `BillingServer<T>` (which must be in scope) unless
/// `service = "billing.Billing"` is given; the method name is the Rust name
/// in UpperCamelCase (`get_invoice` → `GetInvoice`) unless `method = "…"`
/// is given.
///
/// # Errors
///
/// A compile error pointing at the offending literal or key for a malformed
/// SPIFFE ID or pattern, a bad trust domain, route or gRPC method, a
/// duplicate or unknown key, no callers, or use on an item that is neither
/// a function nor a trait `impl`. The item is still emitted, so the rest of
/// the crate type-checks.
#[proc_macro_attribute]
pub fn callers(attr: TokenStream, item: TokenStream) -> TokenStream {
    let original = TokenStream2::from(item.clone());
    let args = match Args::parse_terminated.parse(attr) {
        Ok(args) => args,
        Err(e) => return with_error(original, e),
    };
    let expanded = match syn::parse::<Item>(item) {
        Ok(Item::Fn(function)) => handler(args, function),
        Ok(Item::Impl(block)) => service(args, block),
        Ok(other) => Err(syn::Error::new_spanned(
            unsupported_tokens(&other),
            "#[callers] applies to an axum handler function or to a tonic service \
             implementation (`impl Service for Type`)",
        )),
        Err(e) => Err(e),
    };
    match expanded {
        Ok(tokens) => tokens.into(),
        Err(e) => with_error(original, e),
    }
}

/// Declares every endpoint of a service in one place: one enum variant per
/// endpoint.
///
/// ```
/// use zt_server::macros::Declarations;
///
/// #[derive(zt_server::Declared)]
/// enum LedgerApi {
///     #[endpoint(http = "GET /entries/{id}", "spiffe://example.org/billing")]
///     GetEntry,
///     #[endpoint(grpc = "/ledger.Ledger/Append", trust_domain = "example.org")]
///     Append,
/// }
///
/// let declarations = Declarations::builder().add::<LedgerApi>().build()?;
/// assert_eq!(LedgerApi::Append.rule_id(), "code:LedgerApi::Append");
/// assert_eq!(declarations.rules().count(), 2);
/// # Ok::<(), zt_server::macros::PolicyError>(())
/// ```
///
/// Each variant takes exactly one `#[endpoint(...)]` with the keys of
/// [`callers`] plus exactly one of `http = "METHOD /path"` or
/// `grpc = "/package.Service/Method"`. The rule id is
/// `code:LedgerApi::GetEntry`. The enum implements
/// `zt_server::macros::Declared`, and gets `rule_id(&self)` naming the
/// variant's rule.
#[proc_macro_derive(Declared, attributes(endpoint))]
pub fn derive_declared(input: TokenStream) -> TokenStream {
    let input = syn::parse_macro_input!(input as syn::DeriveInput);
    match derive(&input) {
        Ok(tokens) => tokens.into(),
        Err(e) => e.to_compile_error().into(),
    }
}

/// The item, then the error: the item still exists for the rest of the
/// crate, and the error says what is wrong.
fn with_error(original: TokenStream2, error: syn::Error) -> TokenStream {
    let error = error.to_compile_error();
    quote!(#original #error).into()
}

/// The part of an unsupported item to point at: its first tokens.
fn unsupported_tokens(item: &Item) -> TokenStream2 {
    match item {
        Item::Struct(s) => {
            let token = s.struct_token;
            let ident = &s.ident;
            quote!(#token #ident)
        }
        Item::Enum(e) => {
            let token = e.enum_token;
            let ident = &e.ident;
            quote!(#token #ident)
        }
        other => {
            let span = other.span();
            quote_spanned!(span=> item)
        }
    }
}

// ---------------------------------------------------------------------------
// Arguments

/// One argument: a caller literal or `key = "value"`.
enum Arg {
    Caller(LitStr),
    Key(Ident, LitStr),
}

impl Parse for Arg {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        if input.peek(LitStr) {
            return Ok(Self::Caller(input.parse()?));
        }
        if input.peek(Ident) {
            let key: Ident = input.parse()?;
            input.parse::<Token![=]>().map_err(|e| {
                syn::Error::new(
                    e.span(),
                    format!("expected `=` after `{key}`: write `{key} = \"…\"`"),
                )
            })?;
            let value: LitStr = input.parse().map_err(|e| {
                syn::Error::new(e.span(), format!("`{key}` takes a string literal"))
            })?;
            return Ok(Self::Key(key, value));
        }
        Err(input.error(
            "expected a caller (a string literal: a SPIFFE ID or ID pattern) or `key = \"value\"`",
        ))
    }
}

/// The arguments of one attribute.
struct Args {
    args: Punctuated<Arg, Token![,]>,
}

impl Args {
    fn parse_terminated(input: ParseStream<'_>) -> syn::Result<Self> {
        Ok(Self {
            args: Punctuated::parse_terminated(input)?,
        })
    }

    fn empty() -> Self {
        Self {
            args: Punctuated::new(),
        }
    }
}

/// Validated arguments.
#[derive(Default)]
struct Declaration {
    callers: Vec<LitStr>,
    trust_domain: Option<LitStr>,
    http: Option<LitStr>,
    grpc: Option<LitStr>,
    service: Option<LitStr>,
    method: Option<LitStr>,
    when: Option<LitStr>,
    /// The span of the whole argument list, for errors about it as a whole.
    span: Option<Span>,
}

impl Declaration {
    /// Checks every argument; `keys` are those allowed here. All errors are
    /// reported, combined.
    fn from_args(args: Args, keys: &[&str], span: Span) -> syn::Result<Self> {
        let mut out = Self {
            span: Some(span),
            ..Self::default()
        };
        let mut errors: Option<syn::Error> = None;
        let mut push = |e: syn::Error| match &mut errors {
            Some(all) => all.combine(e),
            None => errors = Some(e),
        };
        for arg in args.args {
            match arg {
                Arg::Caller(lit) => match check_caller(&lit) {
                    Ok(()) => out.callers.push(lit),
                    Err(e) => push(e),
                },
                Arg::Key(key, value) => {
                    let name = key.to_string();
                    if !keys.contains(&name.as_str()) {
                        push(syn::Error::new_spanned(
                            &key,
                            format!("unknown key `{name}`; expected one of: {}", keys.join(", ")),
                        ));
                        continue;
                    }
                    let slot = match name.as_str() {
                        "trust_domain" => &mut out.trust_domain,
                        "http" => &mut out.http,
                        "grpc" => &mut out.grpc,
                        "service" => &mut out.service,
                        "when" => &mut out.when,
                        _ => &mut out.method,
                    };
                    if slot.is_some() {
                        push(syn::Error::new_spanned(
                            &key,
                            format!("duplicate key `{name}`; give it once"),
                        ));
                        continue;
                    }
                    let checked = match name.as_str() {
                        "trust_domain" => check_trust_domain(&value),
                        "http" => check_http(&value).map(drop),
                        "grpc" => check_grpc(&value).map(drop),
                        "service" => check_service(&value),
                        "when" => check_when(&value),
                        _ => check_method(&value),
                    };
                    match checked {
                        Ok(()) => *slot = Some(value),
                        Err(e) => push(e),
                    }
                }
            }
        }
        match errors {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }

    fn has_callers(&self) -> bool {
        !self.callers.is_empty() || self.trust_domain.is_some()
    }

    fn require_callers(&self, what: &str) -> syn::Result<()> {
        if self.has_callers() {
            return Ok(());
        }
        Err(syn::Error::new(
            self.span.unwrap_or_else(Span::call_site),
            format!(
                "{what} declares no callers; name at least one SPIFFE ID or ID pattern \
                 (\"spiffe://example.org/ns/prod/sa/billing\") or `trust_domain = \"…\"`"
            ),
        ))
    }

    /// `.with_when("…")` after an `EndpointSpec` constructor, when the
    /// declaration has conditions.
    fn when_tokens(&self) -> TokenStream2 {
        match &self.when {
            Some(when) => quote!(.with_when(#when)),
            None => TokenStream2::new(),
        }
    }

    /// `&["id", …], &["td"]` for an `EndpointSpec` constructor.
    fn caller_tokens(&self) -> (TokenStream2, TokenStream2) {
        let callers = &self.callers;
        let trust_domains = self.trust_domain.iter();
        (quote!(&[#(#callers),*]), quote!(&[#(#trust_domains),*]))
    }
}

fn check_caller(lit: &LitStr) -> syn::Result<()> {
    // The policy's own caller parser: `{name}` captures as in policy files.
    zt_authz::policy::Rule::allow("callers")
        .caller(&lit.value())
        .map(drop)
        .map_err(|e| match e {
            zt_authz::policy::PolicyError::BadCaller { source, .. } => {
                syn::Error::new_spanned(lit, format!("invalid caller: {source}"))
            }
            zt_authz::policy::PolicyError::BadCapture { reason, .. } => {
                syn::Error::new_spanned(lit, format!("invalid caller: {reason}"))
            }
            other => syn::Error::new_spanned(lit, format!("invalid caller: {other}")),
        })
}

/// A `when` table in the policy file syntax: `"{ ns = \"prod\" }"`.
fn check_when(lit: &LitStr) -> syn::Result<()> {
    zt_authz::policy::Condition::parse_table(&lit.value())
        .map(drop)
        .map_err(|(key, reason)| {
            let what = if key.is_empty() {
                "`when`".to_owned()
            } else {
                format!("condition on `{key}`")
            };
            syn::Error::new_spanned(lit, format!("invalid {what}: {reason}"))
        })
}

fn check_trust_domain(lit: &LitStr) -> syn::Result<()> {
    zt_core::id::parse_trust_domain(&lit.value())
        .map(drop)
        .map_err(|e| syn::Error::new_spanned(lit, format!("invalid trust domain: {e}")))
}

/// `"METHOD /path"` → (method, path).
fn check_http(lit: &LitStr) -> syn::Result<(String, String)> {
    let value = lit.value();
    let Some((method, path)) = value.split_once(' ') else {
        return Err(syn::Error::new_spanned(
            lit,
            "expected `\"METHOD /path\"`, such as \"GET /invoices/{id}\" (`*` for any method)",
        ));
    };
    match zt_authz::policy::Rule::allow("check").http(method, path) {
        Ok(_) => Ok((method.to_owned(), path.to_owned())),
        Err(e) => Err(syn::Error::new_spanned(lit, policy_reason(&e))),
    }
}

/// `"/package.Service/Method"` → (service, method).
fn check_grpc(lit: &LitStr) -> syn::Result<(String, String)> {
    let value = lit.value();
    if let Err(e) = zt_authz::policy::Rule::allow("check").grpc(&value) {
        return Err(syn::Error::new_spanned(lit, policy_reason(&e)));
    }
    // The pattern parsed, so it is `/service/method`.
    match value.strip_prefix('/').and_then(|v| v.split_once('/')) {
        Some((service, method)) => Ok((service.to_owned(), method.to_owned())),
        None => Err(syn::Error::new_spanned(
            lit,
            "expected `\"/package.Service/Method\"`",
        )),
    }
}

fn check_service(lit: &LitStr) -> syn::Result<()> {
    check_grpc_path(lit, &format!("/{}/Method", lit.value()))
}

fn check_method(lit: &LitStr) -> syn::Result<()> {
    check_grpc_path(lit, &format!("/package.Service/{}", lit.value()))
}

fn check_grpc_path(lit: &LitStr, path: &str) -> syn::Result<()> {
    zt_authz::policy::Rule::allow("check")
        .grpc(path)
        .map(drop)
        .map_err(|e| syn::Error::new_spanned(lit, policy_reason(&e)))
}

/// The reason of a policy error, without its rule and origin prefix.
fn policy_reason(error: &zt_authz::policy::PolicyError) -> String {
    use zt_authz::policy::PolicyError;
    match error {
        PolicyError::BadMethod { method, reason, .. } => format!("HTTP method `{method}` {reason}"),
        PolicyError::BadPath { path, reason, .. } => format!("path pattern `{path}` {reason}"),
        PolicyError::BadGrpcMethod {
            pattern, reason, ..
        } => format!("gRPC method `{pattern}` {reason}"),
        other => other.to_string(),
    }
}

// ---------------------------------------------------------------------------
// #[callers] on a handler

fn handler(args: Args, function: ItemFn) -> syn::Result<TokenStream2> {
    if let Some(receiver) = function.sig.receiver() {
        return Err(syn::Error::new_spanned(
            receiver,
            "#[callers] on a method: put `#[callers]` on the service's `impl` block as well, \
             so the method is declared with its service",
        ));
    }
    let span = function.sig.ident.span();
    let declaration = Declaration::from_args(args, &["http", "trust_domain", "when"], span)?;
    declaration.require_callers(&format!("handler `{}`", function.sig.ident))?;
    let Some(http) = &declaration.http else {
        return Err(syn::Error::new(
            span,
            format!(
                "#[callers] on handler `{}` needs its route: add `http = \"GET /path\"` \
                 (the method and the path it is routed at)",
                function.sig.ident
            ),
        ));
    };
    let (method, path) = check_http(http)?;
    let ident = &function.sig.ident;
    let vis = &function.vis;
    let name = ident.to_string();
    let (callers, trust_domains) = declaration.caller_tokens();
    let when = declaration.when_tokens();
    let doc = format!(
        "The callers declared for the handler `{name}` (`#[callers]`): rule `code:{name}`."
    );
    Ok(quote! {
        #function

        #[doc = #doc]
        #[allow(non_camel_case_types, dead_code)]
        #vis struct #ident {}

        impl ::zt_server::macros::Declared for #ident {
            const ENDPOINTS: &'static [::zt_server::macros::EndpointSpec] = &[
                ::zt_server::macros::EndpointSpec::http(
                    #name, #method, #path, #callers, #trust_domains,
                    ::core::file!(), ::core::line!(),
                )#when,
            ];
        }
    })
}

// ---------------------------------------------------------------------------
// #[callers] on a tonic service impl

fn service(args: Args, mut block: ItemImpl) -> syn::Result<TokenStream2> {
    let span = block.impl_token.span;
    let service_wide = Declaration::from_args(args, &["service", "trust_domain", "when"], span)?;
    let Some((_, trait_path, _)) = &block.trait_ else {
        return Err(syn::Error::new_spanned(
            block.self_ty.as_ref(),
            "#[callers] on an `impl` block expects a tonic service implementation \
             (`impl Billing for BillingService`), not an inherent impl",
        ));
    };
    let self_ty = block.self_ty.clone();
    let type_name = type_name(&self_ty);
    let service_name = match &service_wide.service {
        Some(service) => quote!(#service),
        None => {
            let mut server = trait_path.clone();
            let Some(last) = server.segments.last_mut() else {
                return Err(syn::Error::new_spanned(trait_path, "expected a trait path"));
            };
            last.ident = format_ident!("{}Server", last.ident, span = last.ident.span());
            last.arguments = syn::PathArguments::None;
            quote!(<#server<#self_ty> as ::zt_server::macros::__private::NamedService>::NAME)
        }
    };

    let mut specs = Vec::new();
    let mut errors: Option<syn::Error> = None;
    for item in &mut block.items {
        let ImplItem::Fn(method) = item else { continue };
        let (own, rest): (Vec<Attribute>, Vec<Attribute>) = method.attrs.drain(..).partition(|a| {
            a.path()
                .segments
                .last()
                .is_some_and(|s| s.ident == "callers")
        });
        method.attrs = rest;
        let fn_name = method.sig.ident.to_string();
        let declaration = match own.as_slice() {
            [] => None,
            [attr] => {
                let parsed = match &attr.meta {
                    syn::Meta::Path(_) => Ok(Args::empty()),
                    _ => attr.parse_args_with(Args::parse_terminated),
                };
                match parsed.and_then(|a| {
                    Declaration::from_args(a, &["trust_domain", "method", "when"], attr.span())
                }) {
                    Ok(d) => match d.require_callers(&format!("method `{fn_name}`")) {
                        Ok(()) => Some(d),
                        Err(e) => {
                            combine(&mut errors, e);
                            continue;
                        }
                    },
                    Err(e) => {
                        combine(&mut errors, e);
                        continue;
                    }
                }
            }
            [_, second, ..] => {
                combine(
                    &mut errors,
                    syn::Error::new_spanned(
                        second,
                        format!("method `{fn_name}` has more than one #[callers]; merge them"),
                    ),
                );
                continue;
            }
        };
        let rpc = match declaration.as_ref().and_then(|d| d.method.as_ref()) {
            Some(m) => m.value(),
            None => upper_camel(&fn_name),
        };
        let name = format!("{type_name}::{fn_name}");
        let effective = declaration
            .as_ref()
            .or(service_wide.has_callers().then_some(&service_wide));
        let spec = match effective {
            Some(d) => {
                let (callers, trust_domains) = d.caller_tokens();
                let when = d.when_tokens();
                quote! {
                    ::zt_server::macros::EndpointSpec::grpc(
                        #name, #service_name, #rpc, #callers, #trust_domains,
                        ::core::file!(), ::core::line!(),
                    )#when
                }
            }
            None => quote! {
                ::zt_server::macros::EndpointSpec::undeclared_grpc(
                    #name, #service_name, #rpc, ::core::file!(), ::core::line!(),
                )
            },
        };
        specs.push(spec);
    }
    if let Some(e) = errors {
        // Emit the impl without the inner attributes, which are not real
        // attributes on their own.
        let e = e.to_compile_error();
        return Ok(quote!(#block #e));
    }
    let (impl_generics, _, where_clause) = block.generics.split_for_impl();
    Ok(quote! {
        #block

        impl #impl_generics ::zt_server::macros::Declared for #self_ty #where_clause {
            const ENDPOINTS: &'static [::zt_server::macros::EndpointSpec] = &[#(#specs),*];
        }
    })
}

fn combine(errors: &mut Option<syn::Error>, e: syn::Error) {
    match errors {
        Some(all) => all.combine(e),
        None => *errors = Some(e),
    }
}

/// The last path segment of a type, for endpoint names.
fn type_name(ty: &syn::Type) -> String {
    match ty {
        syn::Type::Path(p) => p
            .path
            .segments
            .last()
            .map_or_else(|| quote!(#ty).to_string(), |s| s.ident.to_string()),
        other => quote!(#other).to_string().replace(' ', ""),
    }
}

/// `get_invoice` → `GetInvoice`: how tonic names the Rust method of a
/// `.proto` method, reversed.
fn upper_camel(snake: &str) -> String {
    let snake = snake.strip_prefix("r#").unwrap_or(snake);
    let mut out = String::with_capacity(snake.len());
    let mut upper = true;
    for c in snake.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

// ---------------------------------------------------------------------------
// #[derive(Declared)]

fn derive(input: &syn::DeriveInput) -> syn::Result<TokenStream2> {
    let syn::Data::Enum(data) = &input.data else {
        return Err(syn::Error::new_spanned(
            &input.ident,
            "#[derive(Declared)] applies to an enum with one variant per endpoint",
        ));
    };
    let enum_ident = &input.ident;
    let mut specs = Vec::new();
    let mut arms = Vec::new();
    let mut errors: Option<syn::Error> = None;
    for variant in &data.variants {
        let attrs: Vec<&Attribute> = variant
            .attrs
            .iter()
            .filter(|a| a.path().is_ident("endpoint"))
            .collect();
        let attr = match attrs.as_slice() {
            [attr] => *attr,
            [] => {
                combine(
                    &mut errors,
                    syn::Error::new_spanned(
                        &variant.ident,
                        format!(
                            "variant `{}` declares no endpoint: add \
                             #[endpoint(http = \"GET /path\", \"spiffe://…\")]",
                            variant.ident
                        ),
                    ),
                );
                continue;
            }
            [_, second, ..] => {
                combine(
                    &mut errors,
                    syn::Error::new_spanned(
                        second,
                        "a variant takes exactly one #[endpoint(...)]; merge them",
                    ),
                );
                continue;
            }
        };
        let name = format!("{enum_ident}::{}", variant.ident);
        let declaration = match attr
            .parse_args_with(Args::parse_terminated)
            .and_then(|a| {
                Declaration::from_args(a, &["http", "grpc", "trust_domain", "when"], attr.span())
            })
            .and_then(|d| {
                d.require_callers(&format!("endpoint `{name}`"))?;
                Ok(d)
            }) {
            Ok(d) => d,
            Err(e) => {
                combine(&mut errors, e);
                continue;
            }
        };
        let (callers, trust_domains) = declaration.caller_tokens();
        let when = declaration.when_tokens();
        let spec = match (&declaration.http, &declaration.grpc) {
            (Some(http), None) => {
                let (method, path) = check_http(http)?;
                quote! {
                    ::zt_server::macros::EndpointSpec::http(
                        #name, #method, #path, #callers, #trust_domains,
                        ::core::file!(), ::core::line!(),
                    )#when
                }
            }
            (None, Some(grpc)) => {
                let (service, method) = check_grpc(grpc)?;
                quote! {
                    ::zt_server::macros::EndpointSpec::grpc(
                        #name, #service, #method, #callers, #trust_domains,
                        ::core::file!(), ::core::line!(),
                    )#when
                }
            }
            _ => {
                combine(
                    &mut errors,
                    syn::Error::new_spanned(
                        attr,
                        "an endpoint needs exactly one of `http = \"METHOD /path\"` or \
                         `grpc = \"/package.Service/Method\"`",
                    ),
                );
                continue;
            }
        };
        let variant_ident = &variant.ident;
        let rule_id = format!("code:{name}");
        arms.push(quote!(Self::#variant_ident { .. } => #rule_id));
        specs.push(spec);
    }
    if let Some(e) = errors {
        return Err(e);
    }
    let (impl_generics, type_generics, where_clause) = input.generics.split_for_impl();
    Ok(quote! {
        impl #impl_generics ::zt_server::macros::Declared for #enum_ident #type_generics #where_clause {
            const ENDPOINTS: &'static [::zt_server::macros::EndpointSpec] = &[#(#specs),*];
        }

        impl #impl_generics #enum_ident #type_generics #where_clause {
            /// The rule id of this endpoint's declaration, as decisions and
            /// audit records name it.
            pub const fn rule_id(&self) -> &'static str {
                match *self {
                    #(#arms,)*
                }
            }
        }
    })
}
