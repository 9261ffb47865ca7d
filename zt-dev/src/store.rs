//! Saving a fake CA to a directory and loading it back (for `zt ca init`).
//!
//! Layout: `ca.json` (trust domain and key IDs), `root.pem` / `root.key`,
//! optionally `intermediate.pem` / `intermediate.key`, and `jwt.key`.
//! Private keys are written with mode 0600. Once a serial is revoked,
//! `revoked.txt` lists the revoked serials (lowercase hex, one a line) and
//! `crl.pem` holds the CRL ([`FakeCa::save_crl`]).

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rcgen::{Issuer, KeyPair};
use serde::{Deserialize, Serialize};

use super::{Authority, CaState, FakeCa, FakeCaError, Inner, jwt_key_from_pem};
use zt_core::id::parse_trust_domain;
use zt_core::svid::parse_pem_certificates;
use zt_core::time::SharedClock;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    format: u32,
    trust_domain: String,
    jwt_key_id: String,
}

const FORMAT: u32 = 1;

fn io_err(path: &Path, e: impl std::fmt::Display) -> FakeCaError {
    FakeCaError::Io {
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}

fn store_err(path: &Path, reason: impl Into<String>) -> FakeCaError {
    FakeCaError::Store {
        path: path.display().to_string(),
        reason: reason.into(),
    }
}

fn write_file(path: &Path, contents: &[u8], secret: bool) -> Result<(), FakeCaError> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(if secret { 0o600 } else { 0o644 });
    }
    let mut file = options.open(path).map_err(|e| io_err(path, e))?;
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::PermissionsExt as _;
        file.set_permissions(fs::Permissions::from_mode(0o600))
            .map_err(|e| io_err(path, e))?;
    }
    file.write_all(contents).map_err(|e| io_err(path, e))
}

/// Creates `dir` (and parents) if missing; a directory created here is
/// readable by its owner only.
fn create_private_dir(dir: &Path) -> Result<(), FakeCaError> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        builder.mode(0o700);
    }
    builder.create(dir).map_err(|e| io_err(dir, e))
}

fn write_revoked(dir: &Path, revoked: &[Vec<u8>]) -> Result<(), FakeCaError> {
    let path = dir.join("revoked.txt");
    if revoked.is_empty() {
        if path.exists() {
            fs::remove_file(&path).map_err(|e| io_err(&path, e))?;
        }
        return Ok(());
    }
    let text: String = revoked.iter().map(|s| hex::encode(s) + "\n").collect();
    write_file(&path, text.as_bytes(), false)
}

fn read_revoked(dir: &Path) -> Result<Vec<Vec<u8>>, FakeCaError> {
    let path = dir.join("revoked.txt");
    if !path.exists() {
        return Ok(Vec::new());
    }
    read_string(&path)?
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(|line| {
            hex::decode(line)
                .map_err(|e| store_err(&path, format!("`{line}` is not a hex serial: {e}")))
        })
        .collect()
}

fn read_string(path: &Path) -> Result<String, FakeCaError> {
    fs::read_to_string(path).map_err(|e| io_err(path, e))
}

fn load_authority(dir: &Path, name: &str) -> Result<Authority, FakeCaError> {
    let cert_path = dir.join(format!("{name}.pem"));
    let key_path = dir.join(format!("{name}.key"));
    let cert_pem = read_string(&cert_path)?;
    let key_pem = read_string(&key_path)?;
    let cert = parse_pem_certificates(cert_pem.as_bytes())
        .map_err(|e| store_err(&cert_path, e.to_string()))?
        .into_iter()
        .next()
        .ok_or_else(|| store_err(&cert_path, "no certificate"))?;
    let key = KeyPair::from_pem(&key_pem).map_err(|e| store_err(&key_path, e.to_string()))?;
    let issuer =
        Issuer::from_ca_cert_der(&cert, key).map_err(|e| store_err(&cert_path, e.to_string()))?;
    Ok(Authority {
        cert,
        issuer,
        key_pem,
    })
}

impl FakeCa {
    /// Writes the CA's current authorities and keys to `dir` (created if
    /// missing). Retired authorities are not saved.
    ///
    /// # Errors
    ///
    /// [`FakeCaError::Io`] if a file cannot be written.
    pub fn save(&self, dir: &Path) -> Result<(), FakeCaError> {
        create_private_dir(dir)?;
        let state = self.read();
        let jwt = state
            .jwt_keys
            .last()
            .ok_or_else(|| store_err(dir, "the CA has no JWT key"))?;
        let manifest = Manifest {
            format: FORMAT,
            trust_domain: self.trust_domain().to_string(),
            jwt_key_id: jwt.authority.key_id().to_owned(),
        };
        let manifest =
            serde_json::to_vec_pretty(&manifest).map_err(|e| store_err(dir, e.to_string()))?;
        write_file(&dir.join("ca.json"), &manifest, false)?;
        let pem =
            |c: &rustls_pki_types::CertificateDer<'_>| zt_core::bundle::pem_block("CERTIFICATE", c);
        write_file(
            &dir.join("root.pem"),
            pem(&state.root.cert).as_bytes(),
            false,
        )?;
        write_file(&dir.join("root.key"), state.root.key_pem.as_bytes(), true)?;
        match &state.intermediate {
            Some(int) => {
                write_file(
                    &dir.join("intermediate.pem"),
                    pem(&int.cert).as_bytes(),
                    false,
                )?;
                write_file(&dir.join("intermediate.key"), int.key_pem.as_bytes(), true)?;
            }
            None => {
                for stale in ["intermediate.pem", "intermediate.key"] {
                    let path = dir.join(stale);
                    if path.exists() {
                        fs::remove_file(&path).map_err(|e| io_err(&path, e))?;
                    }
                }
            }
        }
        write_file(&dir.join("jwt.key"), jwt.key_pem.as_bytes(), true)?;
        write_revoked(dir, &state.revoked)?;
        Ok(())
    }

    /// Writes the revoked serials (`revoked.txt`) and a CRL listing them
    /// ([`FakeCa::crl_pem`], valid for `validity`) to `dir`, a directory
    /// [`FakeCa::save`] wrote. Returns the CRL's path, `crl.pem`.
    ///
    /// # Errors
    ///
    /// [`FakeCaError::Io`] if a file cannot be written,
    /// [`FakeCaError::Certificate`] if signing fails.
    pub fn save_crl(&self, dir: &Path, validity: Duration) -> Result<PathBuf, FakeCaError> {
        write_revoked(dir, &self.revoked_serials())?;
        let path = dir.join("crl.pem");
        write_file(&path, self.crl_pem(validity)?.as_bytes(), false)?;
        Ok(path)
    }

    /// Loads a CA saved by [`FakeCa::save`].
    ///
    /// # Errors
    ///
    /// [`FakeCaError::Io`] for unreadable files, [`FakeCaError::Store`] for
    /// files that are not what `save` writes.
    pub fn load(dir: &Path, clock: SharedClock) -> Result<Self, FakeCaError> {
        let manifest_path = dir.join("ca.json");
        let manifest: Manifest = serde_json::from_str(&read_string(&manifest_path)?)
            .map_err(|e| store_err(&manifest_path, e.to_string()))?;
        if manifest.format != FORMAT {
            return Err(store_err(
                &manifest_path,
                format!("unsupported format {}", manifest.format),
            ));
        }
        let trust_domain = parse_trust_domain(&manifest.trust_domain)
            .map_err(|e| store_err(&manifest_path, e.to_string()))?;
        let root = load_authority(dir, "root")?;
        let intermediate = if dir.join("intermediate.pem").exists() {
            Some(load_authority(dir, "intermediate")?)
        } else {
            None
        };
        let revoked = read_revoked(dir)?;
        let jwt_path = dir.join("jwt.key");
        let jwt = jwt_key_from_pem(&read_string(&jwt_path)?, Some(&manifest.jwt_key_id))
            .map_err(|e| store_err(&jwt_path, e.to_string()))?;
        let with_intermediate = intermediate.is_some();
        // Leaves must not outlive the authorities that sign them.
        let now = clock.now();
        let mut expiry = zt_core::x509::certificate_not_after(&root.cert)
            .map_err(|e| store_err(&dir.join("root.pem"), e.to_string()))?;
        if let Some(int) = &intermediate {
            expiry = expiry.min(
                zt_core::x509::certificate_not_after(&int.cert)
                    .map_err(|e| store_err(&dir.join("intermediate.pem"), e.to_string()))?,
            );
        }
        let ca_ttl = expiry.duration_since(now).map_err(|_| {
            store_err(
                &dir.join("root.pem"),
                "the CA certificate has expired; create a new CA",
            )
        })?;
        Ok(FakeCa {
            inner: Arc::new(Inner {
                trust_domain,
                clock,
                ca_ttl,
                with_intermediate,
                state: RwLock::new(CaState {
                    root,
                    intermediate,
                    retired_roots: Vec::new(),
                    prepared: None,
                    jwt_keys: vec![jwt],
                    revoked,
                }),
            }),
        })
    }
}
