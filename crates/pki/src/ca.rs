//! The certificate authority behind `ace-admin pki`.
//!
//! It does what the certificates guide does with EasyRSA, without EasyRSA:
//! make a CA, issue server certificates with SANs and client certificates
//! whose CN is a PostgreSQL role, revoke them, and write a CRL.
//!
//! # Directory layout
//!
//! The layout is EasyRSA's, so the two tools can share a PKI directory:
//! `ace-admin pki` can issue, revoke and publish CRLs for a CA that EasyRSA
//! built (its CA key must be unencrypted PKCS#8, as `easyrsa build-ca
//! nopass` writes it), and EasyRSA 3.1 can sign in a directory made here
//! when told where its OpenSSL template is
//! (`EASYRSA_SSL_CONF=/usr/share/easy-rsa/openssl-easyrsa.cnf`).
//!
//! ```text
//! <dir>/ca.crt                          the CA certificate
//! <dir>/private/ca.key                  the CA key (0600; directory 0700)
//! <dir>/issued/<name>.crt               issued certificates
//! <dir>/private/<name>.key              their keys (0600)
//! <dir>/certs_by_serial/<serial>.pem    copies of issued certificates
//! <dir>/revoked/certs_by_serial/<serial>.crt     moved here on revoke
//! <dir>/revoked/private_by_serial/<serial>.key
//! <dir>/index.txt                       OpenSSL CA database: V/R lines
//! <dir>/index.txt.attr, serial, reqs/   kept for EasyRSA and openssl ca
//! <dir>/crlnumber                       next CRL number, hex
//! <dir>/crl.pem                         the last CRL written
//! ```
//!
//! Certificates are issued with random 128-bit serials, ECDSA keys (P-256
//! by default), `CN=<name>` as the whole subject, an authority key
//! identifier, and `clientAuth` or `serverAuth` extended key usage. Such
//! client certificates work with PostgreSQL's `clientcert=verify-full` and
//! with curl; the CA verifies them with OpenSSL as well as with rustls.
//!
//! The directory is not locked: run one `ace-admin pki` at a time on it.

use std::fmt;
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, RevocationReason,
    RevokedCertParams, SanType, SerialNumber,
};
use ring::rand::{SecureRandom, SystemRandom};
use time::{Duration, OffsetDateTime, PrimitiveDateTime};
use tracing::info;

use crate::error::{Error, Result};
use crate::identity::{check_common_name, serial_hex};

/// Default lifetime of a CA certificate, in days (EasyRSA's).
pub const DEFAULT_CA_DAYS: u32 = 3650;
/// Default lifetime of an issued certificate, in days (EasyRSA's).
pub const DEFAULT_CERT_DAYS: u32 = 825;
/// Default time until a CRL's next update, in days (EasyRSA's).
pub const DEFAULT_CRL_DAYS: u32 = 180;

/// The key algorithm of new keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeyAlgorithm {
    /// ECDSA on P-256 with SHA-256.
    #[default]
    EcdsaP256,
    /// ECDSA on P-384 with SHA-384.
    EcdsaP384,
}

impl KeyAlgorithm {
    fn rcgen(self) -> &'static rcgen::SignatureAlgorithm {
        match self {
            KeyAlgorithm::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            KeyAlgorithm::EcdsaP384 => &rcgen::PKCS_ECDSA_P384_SHA384,
        }
    }
}

/// A subject alternative name of a server certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubjectAltName {
    /// `DNS:name`.
    Dns(String),
    /// `IP:address`.
    Ip(IpAddr),
}

impl FromStr for SubjectAltName {
    type Err = Error;

    /// Parses `DNS:name`, `IP:addr`, or a bare address or name.
    fn from_str(value: &str) -> Result<Self> {
        let bad = |reason: &str| Error::InvalidSan {
            value: value.to_owned(),
            reason: reason.to_owned(),
        };
        let (kind, rest) = match value.split_once(':') {
            Some((kind, rest)) if kind.eq_ignore_ascii_case("dns") => ("dns", rest),
            Some((kind, rest)) if kind.eq_ignore_ascii_case("ip") => ("ip", rest),
            _ => ("auto", value),
        };
        if let Ok(ip) = rest.parse::<IpAddr>() {
            return match kind {
                "dns" => Err(bad("an IP address must be given as IP:addr")),
                _ => Ok(SubjectAltName::Ip(ip)),
            };
        }
        if kind == "ip" {
            return Err(bad("not an IP address"));
        }
        let valid = !rest.is_empty()
            && rest.len() <= 253
            && rest.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '*')
            });
        if valid {
            Ok(SubjectAltName::Dns(rest.to_owned()))
        } else {
            Err(bad("expected DNS:name or IP:address"))
        }
    }
}

impl fmt::Display for SubjectAltName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SubjectAltName::Dns(name) => write!(f, "DNS:{name}"),
            SubjectAltName::Ip(ip) => write!(f, "IP:{ip}"),
        }
    }
}

/// Parses a comma-separated SAN list such as `DNS:n1,IP:10.0.0.5`.
///
/// # Errors
///
/// [`Error::InvalidSan`] for the first entry that does not parse.
pub fn parse_sans(list: &str) -> Result<Vec<SubjectAltName>> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::parse)
        .collect()
}

/// What `init` builds.
#[derive(Debug, Clone)]
pub struct CaOptions {
    /// The CA's CN.
    pub common_name: String,
    /// Its lifetime in days.
    pub days: u32,
    /// Its key algorithm (issued keys use the same).
    pub algorithm: KeyAlgorithm,
}

impl Default for CaOptions {
    fn default() -> Self {
        CaOptions {
            common_name: "ACE CA".to_owned(),
            days: DEFAULT_CA_DAYS,
            algorithm: KeyAlgorithm::EcdsaP256,
        }
    }
}

/// Files written for one issued certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedFiles {
    /// The subject CN.
    pub common_name: String,
    /// The serial, upper-case hex.
    pub serial: String,
    /// `issued/<name>.crt`.
    pub cert_path: PathBuf,
    /// `private/<name>.key` (mode 0600).
    pub key_path: PathBuf,
    /// End of validity.
    pub not_after: OffsetDateTime,
}

/// The state of an index entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Issued and not revoked (`V`).
    Valid,
    /// Revoked (`R`).
    Revoked,
    /// Marked expired (`E`, written by `openssl ca -updatedb`).
    Expired,
}

/// One line of `index.txt`, the OpenSSL CA database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexEntry {
    /// Valid, revoked or expired.
    pub status: Status,
    /// End of validity of the certificate.
    pub expires: OffsetDateTime,
    /// When it was revoked.
    pub revoked_at: Option<OffsetDateTime>,
    /// The revocation reason as OpenSSL names it (`keyCompromise`).
    pub reason: Option<String>,
    /// The serial, upper-case hex.
    pub serial: String,
    /// The subject in OpenSSL's slash form (`/CN=api_user`).
    pub subject: String,
}

impl IndexEntry {
    /// The CN in the subject, if any.
    pub fn common_name(&self) -> Option<&str> {
        self.subject
            .split('/')
            .find_map(|part| part.strip_prefix("CN="))
    }

    fn to_line(&self) -> String {
        let status = match self.status {
            Status::Valid => "V",
            Status::Revoked => "R",
            Status::Expired => "E",
        };
        let revoked = match (self.revoked_at, &self.reason) {
            (Some(at), Some(reason)) => format!("{},{reason}", format_index_time(at)),
            (Some(at), None) => format_index_time(at),
            _ => String::new(),
        };
        format!(
            "{status}\t{}\t{revoked}\t{}\tunknown\t{}\n",
            format_index_time(self.expires),
            self.serial,
            self.subject
        )
    }
}

/// OpenSSL's index time: UTCTime `YYMMDDHHMMSSZ` before 2050,
/// GeneralizedTime `YYYYMMDDHHMMSSZ` from then on.
fn format_index_time(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    let year = t.year();
    let head = if (1950..2050).contains(&year) {
        format!("{:02}", year % 100)
    } else {
        format!("{year:04}")
    };
    format!(
        "{head}{:02}{:02}{:02}{:02}{:02}Z",
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

fn parse_index_time(text: &str) -> Option<OffsetDateTime> {
    let digits = text.strip_suffix('Z')?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let num = |range: std::ops::Range<usize>| digits.get(range)?.parse::<i32>().ok();
    let (year, rest) = match digits.len() {
        12 => {
            let yy = num(0..2)?;
            (if yy < 50 { 2000 + yy } else { 1900 + yy }, 2)
        }
        14 => (num(0..4)?, 4),
        _ => return None,
    };
    let month = time::Month::try_from(u8::try_from(num(rest..rest + 2)?).ok()?).ok()?;
    let field = |n: usize| -> Option<u8> { u8::try_from(num(rest + n..rest + n + 2)?).ok() };
    let date = time::Date::from_calendar_date(year, month, field(2)?).ok()?;
    let clock = time::Time::from_hms(field(4)?, field(6)?, field(8)?).ok()?;
    Some(PrimitiveDateTime::new(date, clock).assume_utc())
}

fn parse_index_line(line: &str) -> std::result::Result<IndexEntry, String> {
    let fields: Vec<&str> = line.split('\t').collect();
    let [status, expires, revoked, serial, _file, subject] = fields.as_slice() else {
        return Err(format!(
            "expected 6 tab-separated fields, found {}",
            fields.len()
        ));
    };
    let status = match *status {
        "V" => Status::Valid,
        "R" => Status::Revoked,
        "E" => Status::Expired,
        other => return Err(format!("unknown status {other:?}")),
    };
    let expires =
        parse_index_time(expires).ok_or_else(|| format!("bad expiry time {expires:?}"))?;
    let (revoked_at, reason) = if revoked.is_empty() {
        (None, None)
    } else {
        let (at, reason) = match revoked.split_once(',') {
            Some((at, reason)) => (at, Some(reason.to_owned())),
            None => (*revoked, None),
        };
        let at = parse_index_time(at).ok_or_else(|| format!("bad revocation time {at:?}"))?;
        (Some(at), reason)
    };
    Ok(IndexEntry {
        status,
        expires,
        revoked_at,
        reason,
        serial: normalise_serial(serial),
        subject: (*subject).to_owned(),
    })
}

fn normalise_serial(serial: &str) -> String {
    let cleaned: String = serial
        .chars()
        .filter(|c| *c != ':')
        .collect::<String>()
        .to_ascii_uppercase();
    let trimmed = cleaned.trim_start_matches('0');
    if trimmed.is_empty() {
        "00".to_owned()
    } else if trimmed.len() % 2 == 1 {
        format!("0{trimmed}")
    } else {
        trimmed.to_owned()
    }
}

fn reason_code(reason: Option<&str>) -> Option<RevocationReason> {
    Some(match reason? {
        "keyCompromise" => RevocationReason::KeyCompromise,
        "CACompromise" => RevocationReason::CaCompromise,
        "affiliationChanged" => RevocationReason::AffiliationChanged,
        "superseded" => RevocationReason::Superseded,
        "cessationOfOperation" => RevocationReason::CessationOfOperation,
        "certificateHold" => RevocationReason::CertificateHold,
        "removeFromCRL" => RevocationReason::RemoveFromCrl,
        "privilegeWithdrawn" => RevocationReason::PrivilegeWithdrawn,
        "AACompromise" => RevocationReason::AaCompromise,
        _ => RevocationReason::Unspecified,
    })
}

/// A name usable both as a CN (see [`crate::identity`]) and as a file
/// name in the PKI directory.
fn check_name(name: &str) -> Result<()> {
    check_common_name(name).map_err(|refusal| Error::InvalidName {
        name: name.to_owned(),
        reason: refusal.to_string(),
    })?;
    let file_safe = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '@'))
        && !name.starts_with('.')
        && name != "ca";
    if file_safe {
        Ok(())
    } else {
        Err(Error::InvalidName {
            name: name.to_owned(),
            reason: "use letters, digits, '_', '-', '.', '@' (not starting with '.', not \"ca\")"
                .to_owned(),
        })
    }
}

fn create_dir(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(path)
        .map_err(Error::io(path))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(Error::io(path))
}

/// Writes a new file with `mode` from the start, so a key is never readable
/// by others even for a moment. Refuses to overwrite.
fn write_new(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(Error::io(path))?;
    file.write_all(contents).map_err(Error::io(path))
}

/// Replaces `path` with `contents` through a temporary file and a rename.
fn replace(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    write_new(&tmp, contents, mode)?;
    std::fs::rename(&tmp, path).map_err(Error::io(path))
}

fn random_serial() -> Result<Vec<u8>> {
    let mut bytes = [0u8; 16];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| Error::Issue {
            context: "generating a serial number".to_owned(),
            source: rcgen::Error::RingUnspecified,
        })?;
    // Positive, and exactly 16 bytes long once encoded.
    bytes[0] = (bytes[0] & 0x7f) | 0x10;
    Ok(bytes.to_vec())
}

/// A certificate authority stored in a directory.
pub struct CertificateAuthority {
    dir: PathBuf,
    cert_pem: String,
    /// The CA certificate re-created from its parameters, used only as the
    /// issuer for rcgen (same subject, same key identifier).
    issuer: rcgen::Certificate,
    key: KeyPair,
}

impl fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the key.
        f.debug_struct("CertificateAuthority")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl CertificateAuthority {
    /// Creates a CA in `dir` (created if missing).
    ///
    /// # Errors
    ///
    /// [`Error::CaExists`] when `dir` already has a `ca.crt` or CA key;
    /// [`Error::InvalidName`] for an unusable CN; [`Error::Io`];
    /// [`Error::Issue`].
    pub fn init(dir: &Path, options: &CaOptions) -> Result<Self> {
        if dir.join("ca.crt").exists() || dir.join("private/ca.key").exists() {
            return Err(Error::CaExists {
                dir: dir.to_path_buf(),
            });
        }
        check_common_name(&options.common_name).map_err(|refusal| Error::InvalidName {
            name: options.common_name.clone(),
            reason: refusal.to_string(),
        })?;
        create_dir(dir, 0o755)?;
        create_dir(&dir.join("private"), 0o700)?;
        for sub in [
            "issued",
            "reqs",
            "certs_by_serial",
            "revoked/certs_by_serial",
            "revoked/reqs_by_serial",
        ] {
            create_dir(&dir.join(sub), 0o755)?;
        }
        create_dir(&dir.join("revoked/private_by_serial"), 0o700)?;

        let key = KeyPair::generate_for(options.algorithm.rcgen())
            .map_err(Error::issue("generating the CA key"))?;
        let mut params = CertificateParams::default();
        params.distinguished_name = cn_only(&options.common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::minutes(5);
        params.not_after = now + Duration::days(i64::from(options.days));
        params.serial_number = Some(SerialNumber::from_slice(&random_serial()?));
        let cert = params
            .self_signed(&key)
            .map_err(Error::issue("signing the CA certificate"))?;

        write_new(
            &dir.join("private/ca.key"),
            key.serialize_pem().as_bytes(),
            0o600,
        )?;
        write_new(&dir.join("ca.crt"), cert.pem().as_bytes(), 0o644)?;
        replace(&dir.join("index.txt"), b"", 0o644)?;
        replace(&dir.join("crlnumber"), b"01\n", 0o644)?;
        // What `openssl ca` (under EasyRSA) expects besides the index.
        replace(&dir.join("index.txt.attr"), b"unique_subject = no\n", 0o644)?;
        replace(&dir.join("serial"), b"01\n", 0o644)?;
        info!(dir = %dir.display(), cn = %options.common_name, "CA created");
        Self::open(dir)
    }

    /// Opens the CA in `dir` (made by [`init`](Self::init) or by EasyRSA).
    ///
    /// # Errors
    ///
    /// [`Error::NoCa`] when `ca.crt` or `private/ca.key` is missing;
    /// [`Error::NotACertificate`] / [`Error::NoPrivateKey`] /
    /// [`Error::KeyMismatch`] for unusable files; [`Error::Issue`] when the
    /// key is not PKCS#8 or of a type rcgen cannot sign with.
    pub fn open(dir: &Path) -> Result<Self> {
        let cert_path = dir.join("ca.crt");
        let key_path = dir.join("private/ca.key");
        if !cert_path.exists() || !key_path.exists() {
            return Err(Error::NoCa {
                dir: dir.to_path_buf(),
            });
        }
        // Load through the policy loaders first: they name the file and
        // check that the key is the certificate's.
        let provider = rustls::crypto::ring::default_provider();
        let certified = crate::load::load_certified_key(&cert_path, &key_path, &provider)?;
        let ca_der = certified.cert[0].clone();
        let key_der = crate::load::load_private_key(&key_path)?;
        let key = KeyPair::try_from(&key_der).map_err(|source| Error::Issue {
            context: format!(
                "{}: the CA key must be unencrypted PKCS#8",
                key_path.display()
            ),
            source,
        })?;
        let params = CertificateParams::from_ca_cert_der(&ca_der).map_err(Error::issue(
            format!("{}: reading the CA", cert_path.display()),
        ))?;
        let issuer = params
            .self_signed(&key)
            .map_err(Error::issue("loading the CA"))?;
        let cert_pem = std::fs::read_to_string(&cert_path).map_err(Error::io(&cert_path))?;
        Ok(CertificateAuthority {
            dir: dir.to_path_buf(),
            cert_pem,
            issuer,
            key,
        })
    }

    /// The PKI directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `<dir>/ca.crt`.
    pub fn cert_path(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    /// The CA certificate, PEM as stored.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// `<dir>/crl.pem`.
    pub fn crl_path(&self) -> PathBuf {
        self.dir.join("crl.pem")
    }

    /// Issues a server certificate whose CN is `name`, with `sans` (or
    /// `DNS:<name>` when empty), `serverAuth` usage, valid `days` days.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidName`]; [`Error::AlreadyIssued`] while a valid
    /// certificate of that name exists; [`Error::Io`]; [`Error::Issue`].
    pub fn issue_server(
        &self,
        name: &str,
        sans: &[SubjectAltName],
        days: u32,
    ) -> Result<IssuedFiles> {
        let sans = if sans.is_empty() {
            vec![name.parse::<SubjectAltName>()?]
        } else {
            sans.to_vec()
        };
        let mut params = CertificateParams::default();
        params.subject_alt_names = sans
            .iter()
            .map(|san| match san {
                SubjectAltName::Dns(dns) => dns
                    .clone()
                    .try_into()
                    .map(SanType::DnsName)
                    .map_err(Error::issue(format!("SAN {san}"))),
                SubjectAltName::Ip(ip) => Ok(SanType::IpAddress(*ip)),
            })
            .collect::<Result<_>>()?;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.issue(name, params, days)
    }

    /// Issues a client certificate whose CN is `cn` (the PostgreSQL role it
    /// acts as), `clientAuth` usage, valid `days` days.
    ///
    /// # Errors
    ///
    /// As [`issue_server`](Self::issue_server).
    pub fn issue_client(&self, cn: &str, days: u32) -> Result<IssuedFiles> {
        let mut params = CertificateParams::default();
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.issue(cn, params, days)
    }

    fn issue(&self, name: &str, mut params: CertificateParams, days: u32) -> Result<IssuedFiles> {
        check_name(name)?;
        let cert_path = self.dir.join("issued").join(format!("{name}.crt"));
        let key_path = self.dir.join("private").join(format!("{name}.key"));
        let index = self.index()?;
        let live = index
            .iter()
            .any(|e| e.status == Status::Valid && e.common_name() == Some(name));
        if live || cert_path.exists() || key_path.exists() {
            return Err(Error::AlreadyIssued { path: cert_path });
        }

        let serial = random_serial()?;
        let now = OffsetDateTime::now_utc();
        params.distinguished_name = cn_only(name);
        params.serial_number = Some(SerialNumber::from_slice(&serial));
        params.not_before = now - Duration::minutes(5);
        params.not_after = now + Duration::days(i64::from(days));
        params.use_authority_key_identifier_extension = true;
        params.is_ca = IsCa::ExplicitNoCa;
        // Drop sub-second precision: the index stores whole seconds.
        params.not_after = params
            .not_after
            .replace_nanosecond(0)
            .unwrap_or(params.not_after);
        let not_after = params.not_after;

        let key = KeyPair::generate_for(self.key.algorithm())
            .or_else(|_| KeyPair::generate_for(KeyAlgorithm::default().rcgen()))
            .map_err(Error::issue(format!("generating a key for {name}")))?;
        let cert = params
            .signed_by(&key, &self.issuer, &self.key)
            .map_err(Error::issue(format!("signing the certificate for {name}")))?;

        create_dir(&self.dir.join("issued"), 0o755)?;
        create_dir(&self.dir.join("private"), 0o700)?;
        write_new(&key_path, key.serialize_pem().as_bytes(), 0o600)?;
        write_new(&cert_path, cert.pem().as_bytes(), 0o644)?;
        let by_serial = self.dir.join("certs_by_serial");
        create_dir(&by_serial, 0o755)?;
        replace(
            &by_serial.join(format!("{}.pem", serial_hex(&serial))),
            cert.pem().as_bytes(),
            0o644,
        )?;
        let entry = IndexEntry {
            status: Status::Valid,
            expires: not_after,
            revoked_at: None,
            reason: None,
            serial: serial_hex(&serial),
            subject: format!("/CN={name}"),
        };
        let mut index = index;
        index.push(entry.clone());
        self.write_index(&index)?;
        info!(cn = %name, serial = %entry.serial, not_after = %crate::inspect::format_time(not_after), "certificate issued");
        Ok(IssuedFiles {
            common_name: name.to_owned(),
            serial: entry.serial,
            cert_path,
            key_path,
            not_after,
        })
    }

    /// Revokes every valid certificate whose CN is `what`, or else the one
    /// whose serial is `what` (hex, colons and case ignored; `serial:` may
    /// prefix it to skip the CN lookup). The certificate and key move to
    /// `revoked/`, so the name can be issued again. Write a CRL afterwards.
    ///
    /// # Errors
    ///
    /// [`Error::NotIssued`] when nothing valid matches; [`Error::BadIndex`];
    /// [`Error::Io`].
    pub fn revoke(&self, what: &str) -> Result<Vec<IndexEntry>> {
        let mut index = self.index()?;
        let now = OffsetDateTime::now_utc()
            .replace_nanosecond(0)
            .unwrap_or_else(|_| OffsetDateTime::now_utc());
        let (by_cn, serial) = match what.strip_prefix("serial:") {
            Some(serial) => (false, normalise_serial(serial)),
            None => (true, normalise_serial(what)),
        };
        let cn_matches = |e: &IndexEntry| by_cn && e.common_name() == Some(what);
        let targets: Vec<usize> = if index
            .iter()
            .any(|e| e.status == Status::Valid && cn_matches(e))
        {
            (0..index.len())
                .filter(|&i| index[i].status == Status::Valid && cn_matches(&index[i]))
                .collect()
        } else {
            (0..index.len())
                .filter(|&i| index[i].status == Status::Valid && index[i].serial == serial)
                .collect()
        };
        if targets.is_empty() {
            return Err(Error::NotIssued {
                dir: self.dir.clone(),
                what: what.to_owned(),
            });
        }
        let mut revoked = Vec::new();
        for i in targets {
            let entry = &mut index[i];
            entry.status = Status::Revoked;
            entry.revoked_at = Some(now);
            entry.reason = Some("keyCompromise".to_owned());
            if let Some(cn) = entry.common_name().map(str::to_owned) {
                self.move_revoked(&cn, &entry.serial)?;
            }
            info!(cn = ?entry.common_name(), serial = %entry.serial, "certificate revoked");
            revoked.push(entry.clone());
        }
        self.write_index(&index)?;
        Ok(revoked)
    }

    fn move_revoked(&self, name: &str, serial: &str) -> Result<()> {
        let moves = [
            (
                self.dir.join("issued").join(format!("{name}.crt")),
                self.dir.join("revoked/certs_by_serial"),
                format!("{serial}.crt"),
                0o755,
            ),
            (
                self.dir.join("private").join(format!("{name}.key")),
                self.dir.join("revoked/private_by_serial"),
                format!("{serial}.key"),
                0o700,
            ),
        ];
        for (from, dir, file, mode) in moves {
            // Only a certificate whose serial is this one moves: another
            // file of that name belongs to a later issue.
            if from.extension().is_some_and(|e| e == "crt") && !file_has_serial(&from, serial) {
                continue;
            }
            if from.exists() {
                create_dir(&dir, mode)?;
                std::fs::rename(&from, dir.join(&file)).map_err(Error::io(&from))?;
            }
        }
        let copy = self
            .dir
            .join("certs_by_serial")
            .join(format!("{serial}.pem"));
        match std::fs::remove_file(&copy) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(&copy)(e)),
        }
    }

    /// Writes `<dir>/crl.pem`: every revoked certificate of the index,
    /// next update in `days` days. Returns its path.
    ///
    /// # Errors
    ///
    /// [`Error::BadIndex`]; [`Error::Io`]; [`Error::Issue`] when the CA
    /// certificate may not sign CRLs.
    pub fn write_crl(&self, days: u32) -> Result<PathBuf> {
        let index = self.index()?;
        let now = OffsetDateTime::now_utc();
        let revoked_certs = index
            .iter()
            .filter(|e| e.status == Status::Revoked)
            .map(|e| {
                Ok(RevokedCertParams {
                    serial_number: SerialNumber::from_slice(&hex::decode(&e.serial).map_err(
                        |err| Error::BadIndex {
                            path: self.dir.join("index.txt"),
                            line: 0,
                            reason: format!("serial {}: {err}", e.serial),
                        },
                    )?),
                    revocation_time: e.revoked_at.unwrap_or(now),
                    reason_code: reason_code(e.reason.as_deref()),
                    invalidity_date: None,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let number_path = self.dir.join("crlnumber");
        let number = match std::fs::read_to_string(&number_path) {
            Ok(text) => hex::decode(normalise_serial(text.trim())).unwrap_or_else(|_| vec![1]),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => vec![1],
            Err(e) => return Err(Error::io(&number_path)(e)),
        };
        let count = revoked_certs.len();
        let params = CertificateRevocationListParams {
            this_update: now - Duration::minutes(5),
            next_update: now + Duration::days(i64::from(days.max(1))),
            crl_number: SerialNumber::from_slice(&number),
            issuing_distribution_point: None,
            revoked_certs,
            key_identifier_method: self.issuer.params().key_identifier_method.clone(),
        };
        let crl = params
            .signed_by(&self.issuer, &self.key)
            .map_err(Error::issue("signing the CRL"))?;
        let pem = crl.pem().map_err(Error::issue("encoding the CRL"))?;
        let path = self.crl_path();
        replace(&path, pem.as_bytes(), 0o644)?;
        let next = next_number(&number);
        replace(
            &number_path,
            format!("{}\n", hex::encode_upper(next)).as_bytes(),
            0o644,
        )?;
        info!(path = %path.display(), revoked = count, days, "CRL written");
        Ok(path)
    }

    /// Every entry of `index.txt`, in file order.
    ///
    /// # Errors
    ///
    /// [`Error::BadIndex`] for a line that does not parse; [`Error::Io`].
    pub fn index(&self) -> Result<Vec<IndexEntry>> {
        let path = self.dir.join("index.txt");
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(Error::io(&path)(e)),
        };
        text.lines()
            .enumerate()
            .filter(|(_, line)| !line.trim().is_empty())
            .map(|(n, line)| {
                parse_index_line(line).map_err(|reason| Error::BadIndex {
                    path: path.clone(),
                    line: n + 1,
                    reason,
                })
            })
            .collect()
    }

    fn write_index(&self, index: &[IndexEntry]) -> Result<()> {
        let text: String = index.iter().map(IndexEntry::to_line).collect();
        replace(&self.dir.join("index.txt"), text.as_bytes(), 0o644)
    }
}

fn file_has_serial(path: &Path, serial: &str) -> bool {
    use x509_parser::prelude::{FromDer, X509Certificate};
    crate::load::load_certificates(path).is_ok_and(|certs| {
        X509Certificate::from_der(&certs[0])
            .is_ok_and(|(_, cert)| serial_hex(cert.raw_serial()) == serial)
    })
}

fn next_number(number: &[u8]) -> Vec<u8> {
    let mut next = number.to_vec();
    for byte in next.iter_mut().rev() {
        let (value, carry) = byte.overflowing_add(1);
        *byte = value;
        if !carry {
            return next;
        }
    }
    next.insert(0, 1);
    next
}

fn cn_only(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_lines_round_trip() {
        let line = "R\t270101120000Z\t250102030405Z,keyCompromise\t0A1B\tunknown\t/CN=api_user";
        let entry = parse_index_line(line).unwrap();
        assert_eq!(entry.status, Status::Revoked);
        assert_eq!(entry.common_name(), Some("api_user"));
        assert_eq!(entry.reason.as_deref(), Some("keyCompromise"));
        assert_eq!(entry.expires.year(), 2027);
        assert_eq!(entry.to_line(), format!("{line}\n"));

        let easyrsa = "V\t20510101000000Z\t\t00C3F1\tunknown\t/CN=server";
        let entry = parse_index_line(easyrsa).unwrap();
        assert_eq!(entry.serial, "C3F1");
        assert_eq!(entry.expires.year(), 2051);
        assert!(parse_index_line("V\tnot-a-time\t\t01\tunknown\t/CN=x").is_err());
        assert!(parse_index_line("V\t270101120000Z").is_err());
    }

    #[test]
    fn sans_parse() {
        assert_eq!(
            parse_sans("DNS:n1, IP:10.0.0.5,127.0.0.1,localhost").unwrap(),
            vec![
                SubjectAltName::Dns("n1".into()),
                SubjectAltName::Ip("10.0.0.5".parse().unwrap()),
                SubjectAltName::Ip("127.0.0.1".parse().unwrap()),
                SubjectAltName::Dns("localhost".into()),
            ]
        );
        assert!(parse_sans("IP:n1").is_err());
        assert!(parse_sans("DNS:bad name").is_err());
        assert!(parse_sans("URI:x").is_err());
    }

    #[test]
    fn names_must_be_file_safe_and_valid_cns() {
        assert!(check_name("api_user").is_ok());
        assert!(check_name("../etc/passwd").is_err());
        assert!(check_name("ca").is_err());
        assert!(check_name(&"x".repeat(64)).is_err());
        assert!(check_name("a b").is_err());
    }

    #[test]
    fn crl_numbers_count_up() {
        assert_eq!(next_number(&[0x01]), vec![0x02]);
        assert_eq!(next_number(&[0xff]), vec![0x01, 0x00]);
        assert_eq!(normalise_serial("0a:1b"), "0A1B");
        assert_eq!(normalise_serial("abc"), "0ABC");
    }
}
