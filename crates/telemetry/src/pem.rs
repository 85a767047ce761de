//! PEM files named in a daemon's configuration: certificate chains and private keys, with
//! errors that name the file.

use std::path::Path;

use anyhow::Context as _;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Every certificate in the PEM file at `path` (a chain, or a set of CAs); at least one.
pub fn certificates(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certificates = CertificateDer::pem_file_iter(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{} is not a PEM certificate file", path.display()))?;
    if certificates.is_empty() {
        anyhow::bail!("{} holds no certificate", path.display());
    }
    Ok(certificates)
}

/// The private key in the PEM file at `path`.
pub fn private_key(path: &Path) -> anyhow::Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_file(path)
        .with_context(|| format!("{} is not a PEM private key", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_without_pem_content_are_refused_by_name() {
        let dir = std::env::temp_dir().join(format!("telemetry-pem-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "no pem here\n").unwrap();
        let error = certificates(&empty).unwrap_err().to_string();
        assert!(error.contains("holds no certificate"), "{error}");
        assert!(private_key(&empty).is_err());
        let missing = dir.join("missing.pem");
        assert!(
            certificates(&missing)
                .unwrap_err()
                .to_string()
                .contains("cannot read")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
