//! The one error type of this crate.

use std::path::PathBuf;

use crate::identity::Refusal;

/// Everything that can go wrong while loading certificates, keys and CRLs,
/// building the server policy, or running the certificate authority.
///
/// Every variant that concerns a file names it, so an operator can tell
/// which file to fix. Messages never contain key material.
///
/// The enum is deliberately not `#[non_exhaustive]`: callers that map it
/// to statuses or exit codes match it exhaustively, so a new variant cannot
/// be forgotten.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },

    /// A file meant to hold certificates holds none, or holds something else.
    #[error("{path}: not a certificate: {reason}")]
    NotACertificate {
        /// The file.
        path: PathBuf,
        /// What was found instead.
        reason: String,
    },

    /// A file meant to hold a private key holds none.
    #[error("{path}: no private key found: {reason}")]
    NoPrivateKey {
        /// The file.
        path: PathBuf,
        /// What was found instead.
        reason: String,
    },

    /// The private key is encrypted with a passphrase; ACE needs it in clear
    /// (EasyRSA: `nopass`), protected by file permissions instead.
    #[error(
        "{path}: the private key is encrypted; write it without a passphrase (EasyRSA: nopass) and chmod 600"
    )]
    EncryptedPrivateKey {
        /// The file.
        path: PathBuf,
    },

    /// The private key parsed but the crypto provider cannot use it (for
    /// example an ECDSA P-521 key, which ring does not support).
    #[error("{path}: unsupported private key: {reason}")]
    UnsupportedKey {
        /// The file.
        path: PathBuf,
        /// What the provider said.
        reason: String,
    },

    /// The private key does not belong to the certificate.
    #[error("{key_path}: the private key does not match the certificate in {cert_path}")]
    KeyMismatch {
        /// The certificate file.
        cert_path: PathBuf,
        /// The key file.
        key_path: PathBuf,
    },

    /// A file meant to hold CRLs holds none, or holds something else.
    #[error("{path}: not a CRL: {reason}")]
    NotACrl {
        /// The file.
        path: PathBuf,
        /// What was found instead.
        reason: String,
    },

    /// A CRL whose issuer is none of the configured client CAs, or whose
    /// signature none of them made.
    #[error("{path}: CRL issued by \"{issuer}\" is not signed by any configured client CA")]
    CrlNotSignedByConfiguredCa {
        /// The CRL file.
        path: PathBuf,
        /// The issuer named in the CRL.
        issuer: String,
    },

    /// A CA bundle certificate that rustls refuses as a trust anchor.
    #[error("{path}: unusable CA certificate: {reason}")]
    BadCaCertificate {
        /// The CA file.
        path: PathBuf,
        /// What rustls said.
        reason: String,
    },

    /// The settings name no client CA file, so no client could ever be
    /// verified.
    #[error("no client CA file configured (server.client_ca_file or cert_auth.ca_cert_file)")]
    NoClientCa,

    /// The settings are inconsistent in a way no file explains.
    #[error("invalid policy setting {setting}: {reason}")]
    InvalidSetting {
        /// The setting, by its `PolicySettings` field name.
        setting: &'static str,
        /// What is wrong with it.
        reason: String,
    },

    /// A name in `allowed_common_names` or `admin_common_names` that no
    /// certificate could ever carry, because the CN rules refuse it.
    #[error("{setting}: {name:?} can never match: {refusal}")]
    InvalidCommonNameSetting {
        /// `allowed_common_names` or `admin_common_names`.
        setting: &'static str,
        /// The offending entry.
        name: String,
        /// Why a certificate with that CN would be refused.
        refusal: Refusal,
    },

    /// rustls refused to build the client verifier or the server config.
    #[error("cannot build the TLS configuration: {reason}")]
    Tls {
        /// What rustls said.
        reason: String,
    },

    /// `ace-admin pki init` on a directory that already holds a CA.
    #[error("{dir}: a CA already exists here")]
    CaExists {
        /// The PKI directory.
        dir: PathBuf,
    },

    /// A PKI directory without a CA certificate and key.
    #[error("{dir}: no CA here (expected ca.crt and private/ca.key; run `ace-admin pki init`)")]
    NoCa {
        /// The PKI directory.
        dir: PathBuf,
    },

    /// A certificate with this name was already issued and not revoked.
    #[error("{path}: already issued; revoke it first to issue a new one")]
    AlreadyIssued {
        /// The existing certificate file.
        path: PathBuf,
    },

    /// A name that cannot be used as a CN or file name.
    #[error("invalid name {name:?}: {reason}")]
    InvalidName {
        /// The name given.
        name: String,
        /// Why it is refused.
        reason: String,
    },

    /// A subject alternative name that is neither `DNS:name` nor `IP:addr`.
    #[error("invalid subject alternative name {value:?}: {reason}")]
    InvalidSan {
        /// The SAN given.
        value: String,
        /// Why it is refused.
        reason: String,
    },

    /// `revoke` found no valid certificate with that CN or serial.
    #[error("{dir}: no valid certificate with CN or serial {what:?}")]
    NotIssued {
        /// The PKI directory.
        dir: PathBuf,
        /// The CN or serial asked for.
        what: String,
    },

    /// A line of the CA index that cannot be read.
    #[error("{path}:{line}: {reason}")]
    BadIndex {
        /// The index file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },

    /// rcgen could not build, sign or parse something.
    #[error("{context}: {source}")]
    Issue {
        /// What was being done.
        context: String,
        /// What rcgen said.
        source: rcgen::Error,
    },
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { path, source }
    }

    pub(crate) fn issue(context: impl Into<String>) -> impl FnOnce(rcgen::Error) -> Error {
        let context = context.into();
        move |source| Error::Issue { context, source }
    }
}
