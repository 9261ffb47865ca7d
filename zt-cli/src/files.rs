//! Reading inputs and writing outputs, with errors that name the file.

use std::fs;
use std::io::{Read as _, Write as _};
use std::path::Path;

use zt_core::BundleSet;
use zt_core::bundle::TrustBundle;

use crate::args::BundleArg;
use crate::error::{CliError, CliResult};

/// Reads a whole file; `-` reads standard input.
pub(crate) fn read(path: &Path) -> CliResult<Vec<u8>> {
    if path == Path::new("-") {
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .map_err(|e| CliError::usage(format!("standard input: {e}")))?;
        return Ok(buf);
    }
    fs::read(path).map_err(|e| CliError::io(path, &e))
}

/// Writes a file, replacing it. A `secret` file is created with mode 0600
/// and has its mode reset to 0600 if it already existed.
pub(crate) fn write(path: &Path, contents: &[u8], secret: bool) -> CliResult {
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(|e| CliError::io(path, &e))?;
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::PermissionsExt as _;
        file.set_permissions(fs::Permissions::from_mode(0o600))
            .map_err(|e| CliError::io(path, &e))?;
    }
    file.write_all(contents).map_err(|e| CliError::io(path, &e))
}

/// Loads every `--bundle TD=PATH` into one set. Several files for the same
/// trust domain are merged.
pub(crate) fn load_bundles(args: &[BundleArg]) -> CliResult<BundleSet> {
    let mut merged: Vec<TrustBundle> = Vec::new();
    for arg in args {
        let bytes = read(&arg.path)?;
        let bundle = TrustBundle::from_bytes(arg.trust_domain.clone(), &bytes).map_err(|e| {
            CliError::usage(format!(
                "`{}` is not a trust bundle for `{}`: {e}",
                arg.path.display(),
                arg.trust_domain
            ))
        })?;
        match merged
            .iter_mut()
            .find(|b| b.trust_domain() == bundle.trust_domain())
        {
            Some(existing) => merge(existing, &bundle, &arg.path)?,
            None => merged.push(bundle),
        }
    }
    let mut set = BundleSet::new();
    for bundle in merged {
        set.insert(bundle);
    }
    Ok(set)
}

fn merge(into: &mut TrustBundle, from: &TrustBundle, path: &Path) -> CliResult {
    for cert in from.x509_authorities() {
        into.add_x509_authority(cert.clone())
            .map_err(|e| CliError::usage(format!("`{}`: {e}", path.display())))?;
    }
    for authority in from.jwt_authorities() {
        into.add_jwt_authority(authority.clone());
    }
    Ok(())
}
