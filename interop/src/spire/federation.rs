//! SPIFFE federation for the harness: the server's own bundle endpoint, and
//! relationships to other trust domains' endpoints (another harness's SPIRE
//! server, or any bundle endpoint a test runs).

use std::path::PathBuf;
use std::time::Duration;

use super::entry::first_result;
use super::{Component, Spire, write};
use crate::error::{Error, Result};
use crate::util::{self, Attempt};

/// The bundle endpoint a harness server serves (`federation.bundle_endpoint`).
#[derive(Debug, Clone)]
pub struct BundleEndpoint {
    pub(super) profile: BundleEndpointProfile,
    pub(super) refresh_hint: Option<Duration>,
}

impl BundleEndpoint {
    /// The `https_spiffe` profile: the endpoint authenticates with the
    /// server's own X.509-SVID, `spiffe://<trust domain>/spire/server`.
    /// Refresh hint 5 s.
    #[must_use]
    pub fn https_spiffe() -> Self {
        Self {
            profile: BundleEndpointProfile::HttpsSpiffe,
            refresh_hint: Some(Duration::from_secs(5)),
        }
    }

    /// The `https_web` profile with a certificate and key from files (PEM),
    /// e.g. a test CA's leaf for `127.0.0.1`. Refresh hint 5 s.
    #[must_use]
    pub fn https_web(cert_file: impl Into<PathBuf>, key_file: impl Into<PathBuf>) -> Self {
        Self {
            profile: BundleEndpointProfile::HttpsWeb {
                cert_file: cert_file.into(),
                key_file: key_file.into(),
            },
            refresh_hint: Some(Duration::from_secs(5)),
        }
    }

    /// The `refresh_hint` the endpoint publishes in its bundle
    /// (`spiffe_refresh_hint`); `None` leaves SPIRE's default (5 min).
    /// SPIRE warns below 1 min and, as a client, never refreshes more often
    /// than every 15 s (a quarter of its 1 min floor) whatever the hint;
    /// the hint still reaches other clients as given.
    #[must_use]
    pub fn refresh_hint(mut self, hint: Option<Duration>) -> Self {
        self.refresh_hint = hint;
        self
    }
}

/// How a bundle endpoint authenticates itself.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BundleEndpointProfile {
    /// `https_spiffe`: TLS with the server's X.509-SVID.
    HttpsSpiffe,
    /// `https_web`: TLS with a Web PKI certificate from these PEM files.
    HttpsWeb {
        /// Certificate chain (PEM).
        cert_file: PathBuf,
        /// Private key (PEM).
        key_file: PathBuf,
    },
}

/// How the server authenticates a foreign trust domain's bundle endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EndpointProfile {
    /// `https_spiffe`: the endpoint must present an X.509-SVID with this
    /// SPIFFE ID, chained to the foreign trust domain's current bundle
    /// (which must therefore be given first, see
    /// [`FederationRelationship::initial_bundle`]).
    HttpsSpiffe {
        /// The endpoint's SPIFFE ID (for SPIRE: `spiffe://<td>/spire/server`).
        endpoint_spiffe_id: String,
    },
    /// `https_web`: the endpoint's certificate is checked against the system
    /// roots of the `spire-server` process (set `SSL_CERT_FILE` with
    /// `SpireConfig::server_env` to trust a test CA).
    HttpsWeb,
}

/// Format of a trust bundle given to SPIRE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BundleFormat {
    /// A SPIFFE bundle (JWKS with `use`, `spiffe_sequence`, ...).
    Spiffe,
    /// PEM X.509 authorities only.
    Pem,
}

impl BundleFormat {
    pub(super) fn flag(self) -> &'static str {
        match self {
            Self::Spiffe => "spiffe",
            Self::Pem => "pem",
        }
    }
}

/// A federation relationship: this server fetches `trust_domain`'s bundle
/// from `bundle_endpoint_url` and hands it to workloads whose entries
/// federate with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FederationRelationship {
    pub(super) trust_domain: String,
    pub(super) bundle_endpoint_url: String,
    pub(super) profile: EndpointProfile,
    pub(super) initial_bundle: Option<(BundleFormat, String)>,
}

impl FederationRelationship {
    /// An `https_spiffe` relationship: the endpoint at `url` must present
    /// `endpoint_spiffe_id`. Give the foreign trust domain's current bundle
    /// with [`FederationRelationship::initial_bundle`] so SPIRE can
    /// authenticate the endpoint the first time.
    #[must_use]
    pub fn https_spiffe(
        trust_domain: impl Into<String>,
        url: impl Into<String>,
        endpoint_spiffe_id: impl Into<String>,
    ) -> Self {
        Self {
            trust_domain: trust_domain.into(),
            bundle_endpoint_url: url.into(),
            profile: EndpointProfile::HttpsSpiffe {
                endpoint_spiffe_id: endpoint_spiffe_id.into(),
            },
            initial_bundle: None,
        }
    }

    /// An `https_web` relationship to the endpoint at `url`.
    #[must_use]
    pub fn https_web(trust_domain: impl Into<String>, url: impl Into<String>) -> Self {
        Self {
            trust_domain: trust_domain.into(),
            bundle_endpoint_url: url.into(),
            profile: EndpointProfile::HttpsWeb,
            initial_bundle: None,
        }
    }

    /// The foreign trust domain's bundle to start from (the bootstrap of
    /// `https_spiffe`).
    #[must_use]
    pub fn initial_bundle(mut self, format: BundleFormat, contents: impl Into<String>) -> Self {
        self.initial_bundle = Some((format, contents.into()));
        self
    }

    /// The foreign trust domain name.
    #[must_use]
    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    /// The endpoint URL.
    #[must_use]
    pub fn url(&self) -> &str {
        &self.bundle_endpoint_url
    }

    /// The endpoint profile.
    #[must_use]
    pub fn profile(&self) -> &EndpointProfile {
        &self.profile
    }
}

impl Spire {
    /// This trust domain's bundle as PEM (X.509 authorities).
    ///
    /// # Errors
    /// When the CLI fails.
    pub fn bundle_pem(&self) -> Result<String> {
        self.server_cli(&["bundle", "show"])
    }

    /// This trust domain's bundle as a SPIFFE bundle (JSON: X.509 and JWT
    /// authorities, `spiffe_sequence`).
    ///
    /// # Errors
    /// When the CLI fails.
    pub fn bundle_spiffe(&self) -> Result<String> {
        self.server_cli(&["bundle", "show", "-format", "spiffe"])
    }

    /// The bundle this server holds for a foreign trust domain (SPIFFE
    /// format), or `None` when it has none.
    ///
    /// # Errors
    /// When the CLI fails for another reason.
    pub fn federated_bundle(&self, trust_domain: &str) -> Result<Option<String>> {
        match self.server_cli(&[
            "bundle",
            "list",
            "-id",
            &format!("spiffe://{trust_domain}"),
            "-format",
            "spiffe",
        ]) {
            Ok(out) => Ok(Some(out)),
            Err(Error::Command(m)) if m.contains("NotFound") || m.contains("not found") => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Polls until this server holds a bundle for `trust_domain` that
    /// satisfies `pred` (e.g. "contains this authority") and returns it.
    ///
    /// # Errors
    /// Timeout (with log tails).
    pub fn wait_for_federated_bundle(
        &self,
        trust_domain: &str,
        timeout: Duration,
        mut pred: impl FnMut(&str) -> bool,
    ) -> Result<String> {
        let what = format!(
            "a bundle for {trust_domain} on the {} server",
            self.trust_domain()
        );
        let result = util::poll(&what, timeout, Duration::from_millis(250), || {
            self.check_running(Component::Server)?;
            match self.federated_bundle(trust_domain)? {
                Some(b) if pred(&b) => Ok(Attempt::Done(b)),
                Some(b) => Ok(Attempt::NotYet(format!(
                    "bundle present but not matching: {}",
                    b.trim()
                ))),
                None => Ok(Attempt::NotYet("no bundle".into())),
            }
        });
        result.map_err(|e| match e {
            Error::Timeout(_) => self.with_logs(e),
            other => other,
        })
    }

    /// Stores a foreign trust domain's bundle (`spire-server bundle set`).
    ///
    /// # Errors
    /// When SPIRE refuses it.
    pub fn set_bundle(
        &self,
        trust_domain: &str,
        format: BundleFormat,
        contents: &str,
    ) -> Result<()> {
        let path = self
            .layout
            .root
            .join(format!("bundle-{trust_domain}.{}", format.flag()));
        write(&path, contents)?;
        let path = path.to_string_lossy().into_owned();
        self.server_cli(&[
            "bundle",
            "set",
            "-id",
            &format!("spiffe://{trust_domain}"),
            "-path",
            &path,
            "-format",
            format.flag(),
        ])
        .map(|_| ())
    }

    /// How another server federates with this one: its bundle endpoint URL,
    /// profile and current bundle (SPIFFE format, as the bootstrap).
    ///
    /// # Errors
    /// When this server has no bundle endpoint, or the CLI fails.
    pub fn federation_relationship(&self) -> Result<FederationRelationship> {
        let (url, endpoint) = match (self.bundle_endpoint_url(), &self.config.bundle_endpoint) {
            (Some(url), Some(endpoint)) => (url, endpoint),
            _ => {
                return Err(Error::Command(format!(
                    "the {} server has no bundle endpoint; start it with SpireConfig::with_bundle_endpoint()",
                    self.trust_domain()
                )));
            }
        };
        let rel = match endpoint.profile {
            BundleEndpointProfile::HttpsSpiffe => FederationRelationship::https_spiffe(
                self.trust_domain(),
                url,
                self.server_spiffe_id(),
            ),
            BundleEndpointProfile::HttpsWeb { .. } => {
                FederationRelationship::https_web(self.trust_domain(), url)
            }
        };
        Ok(rel.initial_bundle(BundleFormat::Spiffe, self.bundle_spiffe()?))
    }

    /// Creates a federation relationship at run time (`spire-server
    /// federation create`), with its initial bundle when given. Entries that
    /// should receive the foreign bundle name it with
    /// [`EntrySpec::federates_with`](super::EntrySpec::federates_with).
    ///
    /// # Errors
    /// When SPIRE refuses it.
    pub fn create_federation(&self, rel: &FederationRelationship) -> Result<()> {
        let mut args: Vec<String> = [
            "federation",
            "create",
            "-trustDomain",
            &rel.trust_domain,
            "-bundleEndpointURL",
            &rel.bundle_endpoint_url,
        ]
        .iter()
        .map(|s| (*s).to_string())
        .collect();
        match &rel.profile {
            EndpointProfile::HttpsSpiffe { endpoint_spiffe_id } => args.extend([
                "-bundleEndpointProfile".into(),
                "https_spiffe".into(),
                "-endpointSpiffeID".into(),
                endpoint_spiffe_id.clone(),
            ]),
            EndpointProfile::HttpsWeb => {
                args.extend(["-bundleEndpointProfile".into(), "https_web".into()])
            }
        }
        if let Some((format, contents)) = &rel.initial_bundle {
            let path =
                self.layout
                    .root
                    .join(format!("bundle-{}.{}", rel.trust_domain, format.flag()));
            write(&path, contents)?;
            args.extend([
                "-trustDomainBundlePath".into(),
                path.to_string_lossy().into_owned(),
                "-trustDomainBundleFormat".into(),
                format.flag().into(),
            ]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = self.server_cli_json(&args)?;
        first_result(&out, "federation create").map(|_| ())
    }

    /// Makes this server federate with `other` (a harness started with a
    /// bundle endpoint): one direction; call it on both for mutual trust.
    ///
    /// # Errors
    /// As [`Spire::federation_relationship`] and
    /// [`Spire::create_federation`].
    pub fn federate_with(&self, other: &Spire) -> Result<()> {
        self.create_federation(&other.federation_relationship()?)
    }

    /// Asks the server to fetch a foreign bundle now (`spire-server
    /// federation refresh`), instead of at its next scheduled refresh.
    ///
    /// # Errors
    /// When the CLI fails (e.g. the endpoint cannot be reached).
    pub fn refresh_federation(&self, trust_domain: &str) -> Result<()> {
        self.server_cli(&["federation", "refresh", "-id", trust_domain])
            .map(|_| ())
    }
}
