//! Loading certificates, CA bundles, private keys and CRLs from files.
//!
//! Every loader accepts PEM (any number of blocks, with or without the text
//! preamble `openssl x509 -text` and EasyRSA put before them) and raw DER,
//! and checks that what it returns actually parses, so a broken file is
//! reported with its path when the policy is built, not at the first
//! handshake.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::{self, PemObject, SectionKind};
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::revocation_list::CertificateRevocationList;

use crate::error::{Error, Result};

/// A CRL as loaded from a file, with the dates the policy needs.
#[derive(Debug, Clone)]
pub struct LoadedCrl {
    /// The file it came from.
    pub path: PathBuf,
    /// The CRL, DER.
    pub der: CertificateRevocationListDer<'static>,
    /// The issuer, as text (`CN=Example CA`).
    pub issuer: String,
    /// When the CRL was issued.
    pub this_update: OffsetDateTime,
    /// When the CRL stops being current; `None` when it does not say (RFC
    /// 5280 requires it, so such a CRL is treated as never expiring and
    /// logged at load).
    pub next_update: Option<OffsetDateTime>,
    /// How many certificates it revokes.
    pub revoked: usize,
}

impl LoadedCrl {
    /// Whether the CRL's next update is at or before `now`.
    pub fn is_expired_at(&self, now: OffsetDateTime) -> bool {
        self.next_update.is_some_and(|next| next <= now)
    }
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(Error::io(path))
}

fn looks_like_pem(bytes: &[u8]) -> bool {
    bytes.windows(11).any(|w| w == b"-----BEGIN ")
}

/// The labels of every PEM block in `bytes`, for error messages.
fn pem_labels(bytes: &[u8]) -> String {
    let mut labels = Vec::new();
    let mut rest = bytes;
    while let Some(start) = find(rest, b"-----BEGIN ") {
        rest = &rest[start + 11..];
        let end = find(rest, b"-----").unwrap_or(rest.len());
        labels.push(String::from_utf8_lossy(&rest[..end]).into_owned());
        rest = &rest[end..];
    }
    if labels.is_empty() {
        "no PEM blocks".to_owned()
    } else {
        format!("found only {}", labels.join(", "))
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Loads every certificate in `path` (PEM with one or more `CERTIFICATE`
/// blocks, or one DER certificate), in file order.
///
/// # Errors
///
/// [`Error::Io`] when the file cannot be read; [`Error::NotACertificate`]
/// when it holds no certificate or a block that does not parse as X.509.
pub fn load_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let bytes = read(path)?;
    let not_a_cert = |reason: String| Error::NotACertificate {
        path: path.to_path_buf(),
        reason,
    };
    let certs: Vec<CertificateDer<'static>> = if looks_like_pem(&bytes) {
        CertificateDer::pem_slice_iter(&bytes)
            .collect::<Result<_, pem::Error>>()
            .map_err(|e| not_a_cert(format!("bad PEM: {e}")))?
    } else {
        vec![CertificateDer::from(bytes.clone())]
    };
    if certs.is_empty() {
        return Err(not_a_cert(pem_labels(&bytes)));
    }
    for (n, cert) in certs.iter().enumerate() {
        X509Certificate::from_der(cert)
            .map_err(|e| not_a_cert(format!("certificate #{}: {e}", n + 1)))?;
    }
    Ok(certs)
}

/// Loads the private key in `path`: PEM `PRIVATE KEY` (PKCS#8),
/// `RSA PRIVATE KEY` (PKCS#1) or `EC PRIVATE KEY` (SEC1), or the same in
/// DER. Only the first key of a PEM file is used.
///
/// # Errors
///
/// [`Error::Io`]; [`Error::EncryptedPrivateKey`] for a key with a
/// passphrase; [`Error::NoPrivateKey`] when the file holds no key.
pub fn load_private_key(path: &Path) -> Result<PrivateKeyDer<'static>> {
    let bytes = read(path)?;
    if find(&bytes, b"ENCRYPTED PRIVATE KEY").is_some()
        || find(&bytes, b"Proc-Type: 4,ENCRYPTED").is_some()
    {
        return Err(Error::EncryptedPrivateKey {
            path: path.to_path_buf(),
        });
    }
    let no_key = |reason: String| Error::NoPrivateKey {
        path: path.to_path_buf(),
        reason,
    };
    if looks_like_pem(&bytes) {
        match PrivateKeyDer::from_pem_slice(&bytes) {
            Ok(key) => Ok(key),
            Err(pem::Error::NoItemsFound) => Err(no_key(pem_labels(&bytes))),
            Err(e) => Err(no_key(format!("bad PEM: {e}"))),
        }
    } else {
        PrivateKeyDer::try_from(bytes).map_err(|e| no_key(format!("not a DER private key: {e}")))
    }
}

/// Loads a certificate chain and its private key and checks that the key
/// belongs to the first certificate.
///
/// # Errors
///
/// Any error of [`load_certificates`] and [`load_private_key`];
/// [`Error::UnsupportedKey`] when `provider` cannot sign with the key;
/// [`Error::KeyMismatch`] when the key is not the certificate's.
pub fn load_certified_key(
    cert_path: &Path,
    key_path: &Path,
    provider: &CryptoProvider,
) -> Result<CertifiedKey> {
    let chain = load_certificates(cert_path)?;
    let key = load_private_key(key_path)?;
    let signing_key =
        provider
            .key_provider
            .load_private_key(key)
            .map_err(|e| Error::UnsupportedKey {
                path: key_path.to_path_buf(),
                reason: e.to_string(),
            })?;
    let certified = CertifiedKey::new(chain, Arc::clone(&signing_key));
    match certified.keys_match() {
        Ok(()) => Ok(certified),
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            Err(Error::KeyMismatch {
                cert_path: cert_path.to_path_buf(),
                key_path: key_path.to_path_buf(),
            })
        }
        // The provider cannot tell the public key of this key type: the
        // handshake itself will fail if they do not match, but say so now.
        Err(e) => Err(Error::UnsupportedKey {
            path: key_path.to_path_buf(),
            reason: format!("cannot check that it matches {}: {e}", cert_path.display()),
        }),
    }
}

/// Loads every CRL in `path` (PEM with one or more `X509 CRL` blocks, or
/// one DER CRL).
///
/// # Errors
///
/// [`Error::Io`]; [`Error::NotACrl`] when the file holds no CRL or one that
/// does not parse.
pub fn load_crls(path: &Path) -> Result<Vec<LoadedCrl>> {
    let bytes = read(path)?;
    let not_a_crl = |reason: String| Error::NotACrl {
        path: path.to_path_buf(),
        reason,
    };
    let ders: Vec<CertificateRevocationListDer<'static>> = if looks_like_pem(&bytes) {
        CertificateRevocationListDer::pem_slice_iter(&bytes)
            .collect::<Result<_, pem::Error>>()
            .map_err(|e| not_a_crl(format!("bad PEM: {e}")))?
    } else {
        vec![CertificateRevocationListDer::from(bytes.clone())]
    };
    if ders.is_empty() {
        return Err(not_a_crl(pem_labels(&bytes)));
    }
    ders.into_iter()
        .enumerate()
        .map(|(n, der)| {
            let (_, crl) = CertificateRevocationList::from_der(&der)
                .map_err(|e| not_a_crl(format!("CRL #{}: {e}", n + 1)))?;
            let loaded = LoadedCrl {
                path: path.to_path_buf(),
                issuer: crl.issuer().to_string(),
                this_update: crl.last_update().to_datetime(),
                next_update: crl.next_update().map(|t| t.to_datetime()),
                revoked: crl.iter_revoked_certificates().count(),
                der: der.clone(),
            };
            Ok(loaded)
        })
        .collect()
}

/// Checks that `crl` names one of `cas` as its issuer and carries that CA's
/// signature.
///
/// # Errors
///
/// [`Error::CrlNotSignedByConfiguredCa`] when no CA matches.
pub fn check_crl_issuer(crl: &LoadedCrl, cas: &[CertificateDer<'_>]) -> Result<()> {
    let refused = || Error::CrlNotSignedByConfiguredCa {
        path: crl.path.clone(),
        issuer: crl.issuer.clone(),
    };
    let (_, parsed) = CertificateRevocationList::from_der(&crl.der).map_err(|_| refused())?;
    let signed = cas.iter().any(|ca| {
        X509Certificate::from_der(ca).is_ok_and(|(_, ca)| {
            ca.subject().as_raw() == parsed.issuer().as_raw()
                && parsed.verify_signature(ca.public_key()).is_ok()
        })
    });
    if signed { Ok(()) } else { Err(refused()) }
}

/// What a PEM file holds, by block label; used by `inspect` to choose
/// between certificate and CRL.
pub(crate) fn first_pem_kind(mut bytes: &[u8]) -> Option<SectionKind> {
    pem::from_buf(&mut bytes)
        .ok()
        .flatten()
        .map(|(kind, _)| kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, contents: &[u8]) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }

    #[test]
    fn a_key_file_is_not_a_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let ca = ace_testkit::pki::TestCa::new("CA").unwrap();
        let path = write(dir.path(), "ca.key", ca.key_pem().as_bytes());
        let err = load_certificates(&path).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, Error::NotACertificate { .. }), "{text}");
        assert!(
            text.contains("ca.key") && text.contains("PRIVATE KEY"),
            "{text}"
        );
    }

    #[test]
    fn a_certificate_file_has_no_key() {
        let dir = tempfile::tempdir().unwrap();
        let ca = ace_testkit::pki::TestCa::new("CA").unwrap();
        let path = write(dir.path(), "ca.crt", ca.cert_pem().as_bytes());
        let err = load_private_key(&path).unwrap_err();
        assert!(matches!(err, Error::NoPrivateKey { .. }), "{err}");
        assert!(err.to_string().contains("CERTIFICATE"), "{err}");
    }

    #[test]
    fn garbage_der_is_not_a_certificate_nor_a_crl() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "junk.der", b"\x30\x03\x02\x01\x01");
        assert!(matches!(
            load_certificates(&path),
            Err(Error::NotACertificate { .. })
        ));
        assert!(matches!(load_crls(&path), Err(Error::NotACrl { .. })));
    }

    #[test]
    fn der_certificate_and_crl_load() {
        let dir = tempfile::tempdir().unwrap();
        let ca = ace_testkit::pki::TestCa::new("CA").unwrap();
        let path = write(dir.path(), "ca.der", &ca.cert_der());
        assert_eq!(load_certificates(&path).unwrap(), vec![ca.cert_der()]);
        let crl_pem = ca.crl_pem().unwrap();
        let der = CertificateRevocationListDer::from_pem_slice(crl_pem.as_bytes()).unwrap();
        let path = write(dir.path(), "ca.crl.der", &der);
        let crls = load_crls(&path).unwrap();
        assert_eq!(crls.len(), 1);
        assert!(crls[0].issuer.contains("CN=CA"), "{}", crls[0].issuer);
    }

    #[test]
    fn encrypted_key_is_named_as_such() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            "enc.key",
            b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nMAA=\n-----END ENCRYPTED PRIVATE KEY-----\n",
        );
        assert!(matches!(
            load_private_key(&path),
            Err(Error::EncryptedPrivateKey { .. })
        ));
    }
}
