//! Authenticity of registered bundles: ed25519 signatures over a version's manifest.
//!
//! A version's `MANIFEST` lists every file with its sha256 and size, so a signature over the
//! manifest's bytes covers the whole bundle. A registry opened
//! [`with_signing_key`](crate::Registry::with_signing_key) signs every version it registers
//! (file `SIGNATURE` beside the manifest); one opened
//! [`with_trusted_keys`](crate::Registry::with_trusted_keys) refuses to load a version that is
//! unsigned or signed by no trusted key. `keel models keygen` writes a key pair,
//! `keel train --signing-key` signs, `keel serve --trusted-keys` verifies.
//!
//! Files: a private key is the 32-byte ed25519 seed in hex on one line (mode 0600; refused when
//! others can read it); a public key file (`.pub`, or a trusted-keys file) holds one hex key
//! per line, `#` comments allowed. `SIGNATURE` is one line:
//! `keel-signature-v1 ed25519 <public key hex> <signature hex>`.

use std::path::{Path, PathBuf};

use ed25519_dalek::{Signature, Signer, Verifier, VerifyingKey};

use crate::{RegistryError, Result};

/// What a signature covers: this domain tag, then the manifest's bytes.
const DOMAIN: &[u8] = b"keel-model-manifest-v1\0";
const SIGNATURE_PREFIX: &str = "keel-signature-v1 ed25519 ";
/// Longest key or signature file read.
const MAX_KEY_FILE: u64 = 64 << 10;

fn key_error(path: &Path, reason: impl Into<String>) -> RegistryError {
    RegistryError::KeyFile {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

fn read_small(path: &Path) -> Result<String> {
    let bytes = crate::fsutil::read_bounded(path, MAX_KEY_FILE)?;
    String::from_utf8(bytes).map_err(|_| key_error(path, "not UTF-8 text"))
}

fn hex32(text: &str) -> Option<[u8; 32]> {
    hex::decode(text.trim()).ok()?.try_into().ok()
}

/// An ed25519 private key that signs registered versions.
pub struct SigningKey(ed25519_dalek::SigningKey);

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey({})", self.public())
    }
}

impl SigningKey {
    /// A fresh key from the operating system's randomness.
    pub fn generate() -> Result<SigningKey> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| RegistryError::Io {
            path: PathBuf::from("<os randomness>"),
            source: std::io::Error::other(e.to_string()),
        })?;
        Ok(SigningKey(ed25519_dalek::SigningKey::from_bytes(&seed)))
    }

    /// Writes a fresh key to `path` (mode 0600, never over an existing file) and its public
    /// key to `path.pub`.
    pub fn write_new(path: &Path) -> Result<SigningKey> {
        let key = SigningKey::generate()?;
        let io = |source| RegistryError::Io {
            path: path.to_path_buf(),
            source,
        };
        {
            use std::io::Write;
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                opts.mode(0o600);
            }
            let mut f = opts.open(path).map_err(io)?;
            writeln!(f, "{}", hex::encode(key.0.to_bytes())).map_err(io)?;
            f.sync_all().map_err(io)?;
        }
        let public = public_path(path);
        std::fs::write(&public, format!("{}\n", key.public())).map_err(|source| {
            RegistryError::Io {
                path: public.clone(),
                source,
            }
        })?;
        Ok(key)
    }

    /// Reads a private key file; refused when group or others may read it.
    pub fn from_file(path: &Path) -> Result<SigningKey> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let meta = std::fs::metadata(path).map_err(|source| RegistryError::Io {
                path: path.to_path_buf(),
                source,
            })?;
            if meta.permissions().mode() & 0o077 != 0 {
                return Err(key_error(
                    path,
                    "a private key must be readable by its owner only (chmod 600)",
                ));
            }
        }
        let seed = hex32(&read_small(path)?)
            .ok_or_else(|| key_error(path, "expected 64 hex digits (an ed25519 seed)"))?;
        Ok(SigningKey(ed25519_dalek::SigningKey::from_bytes(&seed)))
    }

    /// The public key that verifies this key's signatures.
    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key())
    }

    /// The `SIGNATURE` file content for a manifest.
    pub(crate) fn sign_manifest(&self, manifest: &[u8]) -> String {
        let mut msg = DOMAIN.to_vec();
        msg.extend_from_slice(manifest);
        let sig = self.0.sign(&msg);
        format!(
            "{SIGNATURE_PREFIX}{} {}\n",
            self.public(),
            hex::encode(sig.to_bytes())
        )
    }
}

/// `key` -> `key.pub`.
pub fn public_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".pub");
    PathBuf::from(p)
}

/// An ed25519 public key (hex when displayed or parsed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

impl std::fmt::Display for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&hex::encode(self.0.to_bytes()))
    }
}

impl std::str::FromStr for PublicKey {
    type Err = RegistryError;
    fn from_str(s: &str) -> Result<PublicKey> {
        let bytes = hex32(s)
            .ok_or_else(|| key_error(Path::new("<public key>"), "expected 64 hex digits"))?;
        VerifyingKey::from_bytes(&bytes)
            .map(PublicKey)
            .map_err(|_| key_error(Path::new("<public key>"), "not a valid ed25519 point"))
    }
}

/// The public keys whose signatures a registry accepts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedKeys(Vec<PublicKey>);

impl TrustedKeys {
    /// From keys in hand.
    pub fn new(keys: impl IntoIterator<Item = PublicKey>) -> TrustedKeys {
        TrustedKeys(keys.into_iter().collect())
    }

    /// Reads a file of hex public keys, one per line (`#` comments, blank lines allowed);
    /// refused when it holds none.
    pub fn from_file(path: &Path) -> Result<TrustedKeys> {
        let text = read_small(path)?;
        let mut keys = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            keys.push(line.parse::<PublicKey>().map_err(|_| {
                key_error(path, format!("line {}: not an ed25519 public key", i + 1))
            })?);
        }
        if keys.is_empty() {
            return Err(key_error(path, "no public key in the file"));
        }
        Ok(TrustedKeys(keys))
    }

    /// The keys.
    pub fn keys(&self) -> &[PublicKey] {
        &self.0
    }

    /// Checks a `SIGNATURE` file's content against a manifest: signed by one of these keys.
    /// `Err(reason)` otherwise.
    pub(crate) fn verify(
        &self,
        signature_file: &str,
        manifest: &[u8],
    ) -> std::result::Result<PublicKey, String> {
        let rest = signature_file
            .trim()
            .strip_prefix(SIGNATURE_PREFIX)
            .ok_or("not a keel-signature-v1 ed25519 line")?;
        let (key, sig) = rest.split_once(' ').ok_or("no signature after the key")?;
        let key: PublicKey = key.parse().map_err(|_| "the signer's key is not valid")?;
        if !self.0.contains(&key) {
            return Err(format!("signed by {key}, which is not a trusted key"));
        }
        let sig: [u8; 64] = hex::decode(sig.trim())
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or("the signature is not 128 hex digits")?;
        let mut msg = DOMAIN.to_vec();
        msg.extend_from_slice(manifest);
        key.0
            .verify(&msg, &Signature::from_bytes(&sig))
            .map_err(|_| "the signature does not match the manifest".to_string())?;
        Ok(key)
    }
}
