//! Credentials of a sandbox: the admin bearer token and the service-account signing key.
//! The API server's serving certificate is not made here: kube-apiserver generates it (with
//! its own CA) in `--cert-dir`, and clients verify the server against that file.

use std::io::Read;
use std::path::Path;

use crate::{Error, Result};

/// A random token, hex-encoded, for the token-auth file.
pub fn random_token() -> Result<String> {
    let mut bytes = [0u8; 24];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| Error::io("reading random bytes", "/dev/urandom", e))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Writes a new ECDSA P-256 key pair for service-account tokens: the private key
/// (PKCS#8 PEM) signs them, the public key (SPKI PEM) verifies them.
pub fn write_service_account_key(private: &Path, public: &Path) -> Result<()> {
    let key = rcgen::KeyPair::generate()
        .map_err(|e| Error::Other(format!("generating the service-account key: {e}")))?;
    write_private(private, key.serialize_pem().as_bytes())?;
    std::fs::write(public, key.public_key_pem()).map_err(|e| Error::io("writing", public, e))
}

/// Writes the token-auth file: one admin user in `system:masters`.
pub fn write_token_file(path: &Path, admin_token: &str) -> Result<()> {
    let line = format!("{admin_token},admin,admin,\"system:masters\"\n");
    write_private(path, line.as_bytes())
}

/// Writes a file readable by its owner only (it holds secrets).
pub fn write_private(path: &Path, data: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::io("creating", path, e))?;
    f.write_all(data).map_err(|e| Error::io("writing", path, e))
}
