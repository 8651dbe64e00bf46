//! Who a caller is: the [`Identity`] taken from a verified client
//! certificate, and the [`Refusal`] that says why there is none.
//!
//! # CN rules
//!
//! The CN becomes a PostgreSQL role name that ACE passes to `SET ROLE`
//! (quoted as an identifier, never spliced into SQL text). A certificate is
//! refused, whatever CA signed it, when its subject:
//!
//! - has no CN, or an empty one;
//! - has more than one CN (which one would be the role?);
//! - has a CN that is not a text string (BMPString and friends);
//! - has a CN longer than 63 bytes, PostgreSQL's `NAMEDATALEN - 1`, which
//!   PostgreSQL would silently truncate into a *different* role name;
//! - has a CN with a control character (including NUL, newline and DEL),
//!   which would forge log lines and cannot be a sane role name.

use std::fmt;
use std::path::PathBuf;

use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, X509Certificate};

/// PostgreSQL's longest identifier, in bytes (`NAMEDATALEN - 1`).
pub const MAX_ROLE_NAME_BYTES: usize = 63;

/// A caller the policy accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The certificate subject's CN.
    pub cn: String,
    /// The PostgreSQL role ACE assumes for this caller: the CN itself, as
    /// the certificates guide says.
    pub role: String,
    /// The certificate serial number, upper-case hex without separators or
    /// leading zero bytes (as `openssl x509 -serial` prints it).
    pub serial: String,
    /// SHA-256 of the certificate DER, lower-case hex.
    pub fingerprint: String,
    /// The whole subject, as text (`CN=api_user, O=Example`).
    pub subject: String,
    /// Whether the CN is in `admin_common_names`: admins see every task.
    pub is_admin: bool,
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.cn)
    }
}

/// Why a client certificate does not make an [`Identity`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Refusal {
    /// The peer sent no certificate.
    #[error("no client certificate")]
    NoCertificate,
    /// Chain, signature, validity dates or revocation failed, as rustls'
    /// webpki verifier reports it (unknown CA, expired, not yet valid,
    /// revoked, revocation status unknown, ...).
    #[error("client certificate refused: {0}")]
    Verification(rustls::Error),
    /// A configured CRL is past its next update, and `allow_expired_crl` is
    /// not set: nobody is accepted until the CRL is renewed.
    #[error("client CRL {} expired at {}; renew it (ace-admin pki crl)", path.display(), crate::inspect::format_time(*next_update))]
    CrlExpired {
        /// The CRL file.
        path: PathBuf,
        /// When it stopped being current.
        next_update: OffsetDateTime,
    },
    /// The certificate does not parse as X.509.
    #[error("client certificate does not parse: {reason}")]
    Unparsable {
        /// What the parser said.
        reason: String,
    },
    /// The subject has no CN.
    #[error("client certificate subject has no CN")]
    NoCommonName,
    /// The subject has an empty CN.
    #[error("client certificate CN is empty")]
    EmptyCommonName,
    /// The subject has several CNs.
    #[error("client certificate subject has {count} CNs; exactly one is required")]
    MultipleCommonNames {
        /// How many.
        count: usize,
    },
    /// The CN is not a text string.
    #[error("client certificate CN is not a text string")]
    CommonNameNotText,
    /// The CN is longer than PostgreSQL's 63-byte name limit.
    #[error("client certificate CN is {len} bytes; PostgreSQL role names are at most 63")]
    CommonNameTooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// The CN holds a control character.
    #[error("client certificate CN {cn} contains a control character")]
    CommonNameControlCharacter {
        /// The CN, escaped (`"a\nb"`), so it can be logged safely.
        cn: String,
    },
    /// `allowed_common_names` is set and does not hold this CN.
    #[error("CN {cn:?} is not in allowed_common_names")]
    NotAllowed {
        /// The CN.
        cn: String,
    },
}

/// Applies the CN rules of this module to `cn`.
///
/// # Errors
///
/// The [`Refusal`] naming the first rule `cn` breaks.
pub fn check_common_name(cn: &str) -> Result<(), Refusal> {
    if cn.is_empty() {
        return Err(Refusal::EmptyCommonName);
    }
    if cn.len() > MAX_ROLE_NAME_BYTES {
        return Err(Refusal::CommonNameTooLong { len: cn.len() });
    }
    if cn.chars().any(char::is_control) {
        return Err(Refusal::CommonNameControlCharacter {
            cn: format!("{cn:?}"),
        });
    }
    Ok(())
}

/// SHA-256 of `der`, lower-case hex.
pub fn fingerprint(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

/// A serial number's bytes as upper-case hex without leading zero bytes.
pub(crate) fn serial_hex(raw: &[u8]) -> String {
    let start = raw
        .iter()
        .position(|b| *b != 0)
        .unwrap_or(raw.len().saturating_sub(1));
    hex::encode_upper(&raw[start..])
}

/// The identity in `der`, before the allowlist and admin list apply
/// (`is_admin` is false). The chain must already be verified.
pub(crate) fn identity_of(der: &[u8]) -> Result<Identity, Refusal> {
    let (_, cert) = X509Certificate::from_der(der).map_err(|e| Refusal::Unparsable {
        reason: e.to_string(),
    })?;
    let cns: Vec<_> = cert.subject().iter_common_name().collect();
    let cn = match cns.as_slice() {
        [] => return Err(Refusal::NoCommonName),
        [one] => one.as_str().map_err(|_| Refusal::CommonNameNotText)?,
        many => return Err(Refusal::MultipleCommonNames { count: many.len() }),
    };
    check_common_name(cn)?;
    Ok(Identity {
        cn: cn.to_owned(),
        role: cn.to_owned(),
        serial: serial_hex(cert.raw_serial()),
        fingerprint: fingerprint(der),
        subject: cert.subject().to_string(),
        is_admin: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cn_rules() {
        assert_eq!(check_common_name("api_user"), Ok(()));
        assert_eq!(check_common_name(&"r".repeat(63)), Ok(()));
        assert_eq!(
            check_common_name(&"r".repeat(64)),
            Err(Refusal::CommonNameTooLong { len: 64 })
        );
        // 32 two-byte characters: 32 chars but 64 bytes.
        assert_eq!(
            check_common_name(&"é".repeat(32)),
            Err(Refusal::CommonNameTooLong { len: 64 })
        );
        assert_eq!(check_common_name(""), Err(Refusal::EmptyCommonName));
        for bad in ["a\nb", "a\0b", "a\u{7f}", "tab\there"] {
            assert!(
                matches!(
                    check_common_name(bad),
                    Err(Refusal::CommonNameControlCharacter { .. })
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn serials_print_like_openssl() {
        assert_eq!(serial_hex(&[0x00, 0x8a, 0x01]), "8A01");
        assert_eq!(serial_hex(&[0x10, 0x00]), "1000");
        assert_eq!(serial_hex(&[0x00]), "00");
    }
}
