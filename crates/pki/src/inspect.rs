//! Human-readable reports of certificates and CRLs (`ace-admin pki
//! inspect`).

use std::fmt;
use std::net::IpAddr;
use std::path::Path;

use rustls_pki_types::pem::SectionKind;
use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate, X509Name};
use x509_parser::revocation_list::CertificateRevocationList;

use crate::error::{Error, Result};
use crate::identity::{check_common_name, fingerprint, serial_hex};
use crate::load;

/// What `inspect` found in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Report {
    /// One report per certificate, in file order.
    Certificates(Vec<CertificateReport>),
    /// One report per CRL, in file order.
    Crls(Vec<CrlReport>),
}

/// A certificate, described.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateReport {
    /// Subject, RFC 2253 (`CN=api_user,O=Example`), as PostgreSQL prints it
    /// for `clientname=DN`.
    pub subject: String,
    /// Issuer, RFC 2253.
    pub issuer: String,
    /// The CN, when exactly one text CN is present.
    pub common_name: Option<String>,
    /// Serial, upper-case hex.
    pub serial: String,
    /// Start of validity.
    pub not_before: OffsetDateTime,
    /// End of validity.
    pub not_after: OffsetDateTime,
    /// Subject alternative names (`DNS:n1`, `IP:10.0.0.5`).
    pub sans: Vec<String>,
    /// Key usage, as names.
    pub key_usage: Vec<String>,
    /// Extended key usage, as names.
    pub extended_key_usage: Vec<String>,
    /// Whether it is a CA certificate.
    pub is_ca: bool,
    /// SHA-256 of the DER, lower-case hex.
    pub fingerprint: String,
    /// The `pg_ident.conf` line mapping this certificate's subject to the
    /// role named by its CN, or why there is none.
    pub pg_ident: std::result::Result<String, String>,
}

/// A CRL, described.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrlReport {
    /// Issuer, RFC 2253.
    pub issuer: String,
    /// When it was issued.
    pub this_update: OffsetDateTime,
    /// When it stops being current.
    pub next_update: Option<OffsetDateTime>,
    /// The CRL number, upper-case hex.
    pub crl_number: Option<String>,
    /// Revoked serials (upper-case hex), when, and why.
    pub entries: Vec<(String, OffsetDateTime, Option<String>)>,
}

/// Describes the certificates or CRLs in `path` (PEM or DER).
///
/// # Errors
///
/// [`Error::Io`]; [`Error::NotACertificate`] when the file holds neither
/// certificates nor CRLs.
pub fn inspect(path: &Path) -> Result<Report> {
    let bytes = std::fs::read(path).map_err(Error::io(path))?;
    let is_crl = match load::first_pem_kind(&bytes) {
        Some(SectionKind::Crl) => true,
        Some(_) => false,
        None => {
            X509Certificate::from_der(&bytes).is_err()
                && CertificateRevocationList::from_der(&bytes).is_ok()
        }
    };
    if is_crl {
        let crls = load::load_crls(path)?;
        crls.iter()
            .map(|crl| crl_report(&crl.der).map_err(|reason| not_a_crl(path, reason)))
            .collect::<Result<_>>()
            .map(Report::Crls)
    } else {
        let certs = load::load_certificates(path)?;
        certs
            .iter()
            .map(|der| {
                certificate_report(der).map_err(|reason| Error::NotACertificate {
                    path: path.to_path_buf(),
                    reason,
                })
            })
            .collect::<Result<_>>()
            .map(Report::Certificates)
    }
}

fn not_a_crl(path: &Path, reason: String) -> Error {
    Error::NotACrl {
        path: path.to_path_buf(),
        reason,
    }
}

/// Describes one DER certificate.
///
/// # Errors
///
/// A message when the DER does not parse.
pub fn certificate_report(der: &[u8]) -> std::result::Result<CertificateReport, String> {
    let (_, cert) = X509Certificate::from_der(der).map_err(|e| e.to_string())?;
    let validity = cert.validity();
    let sans = match cert.subject_alternative_name() {
        Ok(Some(ext)) => ext.value.general_names.iter().map(general_name).collect(),
        _ => Vec::new(),
    };
    let key_usage = match cert.key_usage() {
        Ok(Some(ku)) => ku
            .value
            .to_string()
            .split(", ")
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    };
    let extended_key_usage = match cert.extended_key_usage() {
        Ok(Some(eku)) => {
            let eku = eku.value;
            let mut names = Vec::new();
            for (set, name) in [
                (eku.any, "any"),
                (eku.server_auth, "serverAuth"),
                (eku.client_auth, "clientAuth"),
                (eku.code_signing, "codeSigning"),
                (eku.email_protection, "emailProtection"),
                (eku.time_stamping, "timeStamping"),
                (eku.ocsp_signing, "OCSPSigning"),
            ] {
                if set {
                    names.push(name.to_owned());
                }
            }
            names.extend(eku.other.iter().map(ToString::to_string));
            names
        }
        _ => Vec::new(),
    };
    let cns: Vec<_> = cert
        .subject()
        .iter_common_name()
        .filter_map(|cn| cn.as_str().ok())
        .collect();
    let common_name = match cns.as_slice() {
        [one] => Some((*one).to_owned()),
        _ => None,
    };
    let subject = rfc2253(cert.subject());
    let pg_ident = match &common_name {
        None => Err("no single CN: this certificate cannot be mapped to a role".to_owned()),
        Some(cn) => match check_common_name(cn) {
            Ok(()) => Ok(format!(
                "ace_cert_map \"{}\" {}",
                subject.replace('"', "\\\""),
                pg_identifier(cn)
            )),
            Err(refusal) => Err(refusal.to_string()),
        },
    };
    Ok(CertificateReport {
        issuer: rfc2253(cert.issuer()),
        subject,
        common_name,
        serial: serial_hex(cert.raw_serial()),
        not_before: validity.not_before.to_datetime(),
        not_after: validity.not_after.to_datetime(),
        sans,
        key_usage,
        extended_key_usage,
        is_ca: cert.is_ca(),
        fingerprint: fingerprint(der),
        pg_ident,
    })
}

/// Describes one DER CRL.
///
/// # Errors
///
/// A message when the DER does not parse.
pub fn crl_report(der: &[u8]) -> std::result::Result<CrlReport, String> {
    let (_, crl) = CertificateRevocationList::from_der(der).map_err(|e| e.to_string())?;
    Ok(CrlReport {
        issuer: rfc2253(crl.issuer()),
        this_update: crl.last_update().to_datetime(),
        next_update: crl.next_update().map(|t| t.to_datetime()),
        crl_number: crl.crl_number().map(|n| serial_hex(&n.to_bytes_be())),
        entries: crl
            .iter_revoked_certificates()
            .map(|entry| {
                (
                    serial_hex(entry.raw_serial()),
                    entry.revocation_date.to_datetime(),
                    entry.reason_code().map(|(_, code)| code.to_string()),
                )
            })
            .collect(),
    })
}

/// `2029-03-07 16:37:50 UTC`: how this crate prints times to people.
pub fn format_time(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// A pg_ident.conf PG-USERNAME: bare when it is a plain lower-case
/// identifier, double-quoted otherwise.
fn pg_identifier(role: &str) -> String {
    let plain = role
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !role.starts_with(|c: char| c.is_ascii_digit());
    if plain {
        role.to_owned()
    } else {
        format!("\"{}\"", role.replace('"', "\"\""))
    }
}

fn general_name(name: &GeneralName<'_>) -> String {
    match name {
        GeneralName::DNSName(dns) => format!("DNS:{dns}"),
        GeneralName::IPAddress(bytes) => match bytes.len() {
            4 => {
                let octets: [u8; 4] = [bytes[0], bytes[1], bytes[2], bytes[3]];
                format!("IP:{}", IpAddr::from(octets))
            }
            16 => {
                let mut octets = [0u8; 16];
                octets.copy_from_slice(bytes);
                format!("IP:{}", IpAddr::from(octets))
            }
            _ => format!("IP:{}", hex::encode(bytes)),
        },
        GeneralName::RFC822Name(email) => format!("email:{email}"),
        GeneralName::URI(uri) => format!("URI:{uri}"),
        other => format!("{other:?}"),
    }
}

/// A name in RFC 2253 form: last RDN first, comma-separated, specials
/// escaped. This is how PostgreSQL renders a subject for `clientname=DN`.
fn rfc2253(name: &X509Name<'_>) -> String {
    let rdns: Vec<String> = name
        .iter_rdn()
        .map(|rdn| {
            rdn.iter()
                .map(|atv| {
                    let oid = atv.attr_type().to_id_string();
                    let key = match oid.as_str() {
                        "2.5.4.3" => "CN",
                        "2.5.4.6" => "C",
                        "2.5.4.7" => "L",
                        "2.5.4.8" => "ST",
                        "2.5.4.10" => "O",
                        "2.5.4.11" => "OU",
                        "2.5.4.9" => "STREET",
                        "0.9.2342.19200300.100.1.25" => "DC",
                        "0.9.2342.19200300.100.1.1" => "UID",
                        "1.2.840.113549.1.9.1" => "emailAddress",
                        other => other,
                    }
                    .to_owned();
                    let value = match atv.as_str() {
                        Ok(text) => escape_rfc2253(text),
                        Err(_) => format!("#{}", hex::encode(atv.as_slice())),
                    };
                    format!("{key}={value}")
                })
                .collect::<Vec<_>>()
                .join("+")
        })
        .collect();
    rdns.into_iter().rev().collect::<Vec<_>>().join(",")
}

fn escape_rfc2253(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        let edge = (i == 0 && (c == ' ' || c == '#')) || (i == last && c == ' ');
        if edge || matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Report::Certificates(certs) => {
                for (n, cert) in certs.iter().enumerate() {
                    if n > 0 {
                        writeln!(f)?;
                    }
                    write!(f, "{cert}")?;
                }
            }
            Report::Crls(crls) => {
                for (n, crl) in crls.iter().enumerate() {
                    if n > 0 {
                        writeln!(f)?;
                    }
                    write!(f, "{crl}")?;
                }
            }
        }
        Ok(())
    }
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "(none)".to_owned()
    } else {
        items.join(", ")
    }
}

impl fmt::Display for CertificateReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let now = OffsetDateTime::now_utc();
        let state = if self.not_after <= now {
            " (EXPIRED)"
        } else if self.not_before > now {
            " (NOT YET VALID)"
        } else {
            ""
        };
        writeln!(f, "certificate")?;
        writeln!(f, "  subject:            {}", self.subject)?;
        writeln!(f, "  issuer:             {}", self.issuer)?;
        writeln!(f, "  serial:             {}", self.serial)?;
        writeln!(f, "  not before:         {}", format_time(self.not_before))?;
        writeln!(
            f,
            "  not after:          {}{state}",
            format_time(self.not_after)
        )?;
        writeln!(f, "  SANs:               {}", list(&self.sans))?;
        writeln!(f, "  key usage:          {}", list(&self.key_usage))?;
        writeln!(
            f,
            "  extended key usage: {}",
            list(&self.extended_key_usage)
        )?;
        writeln!(
            f,
            "  CA:                 {}",
            if self.is_ca { "yes" } else { "no" }
        )?;
        writeln!(f, "  SHA-256:            {}", self.fingerprint)?;
        match &self.pg_ident {
            Ok(line) => {
                writeln!(f, "  pg_ident.conf:      {line}")?;
                writeln!(
                    f,
                    "                      (pg_hba.conf: cert clientcert=verify-full clientname=DN map=ace_cert_map)"
                )
            }
            Err(why) => writeln!(f, "  pg_ident.conf:      none: {why}"),
        }
    }
}

impl fmt::Display for CrlReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let now = OffsetDateTime::now_utc();
        writeln!(f, "CRL")?;
        writeln!(f, "  issuer:      {}", self.issuer)?;
        writeln!(f, "  this update: {}", format_time(self.this_update))?;
        match self.next_update {
            Some(next) if next <= now => {
                writeln!(f, "  next update: {} (EXPIRED)", format_time(next))?
            }
            Some(next) => writeln!(f, "  next update: {}", format_time(next))?,
            None => writeln!(f, "  next update: (none)")?,
        }
        if let Some(number) = &self.crl_number {
            writeln!(f, "  CRL number:  {number}")?;
        }
        writeln!(f, "  revoked:     {}", self.entries.len())?;
        for (serial, at, reason) in &self.entries {
            match reason {
                Some(reason) => writeln!(f, "    {serial}  {}  {reason}", format_time(*at))?,
                None => writeln!(f, "    {serial}  {}", format_time(*at))?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc2253_escapes_and_orders() {
        assert_eq!(escape_rfc2253("a,b"), "a\\,b");
        assert_eq!(escape_rfc2253(" x "), "\\ x\\ ");
        assert_eq!(pg_identifier("api_user"), "api_user");
        assert_eq!(pg_identifier("Api-User"), "\"Api-User\"");
    }

    #[test]
    fn client_certificate_report() {
        let ca = ace_testkit::pki::TestCa::new("Report CA").unwrap();
        let client = ca.client_cert("api_user").unwrap();
        let report = certificate_report(&client.cert_der).unwrap();
        assert_eq!(report.subject, "CN=api_user");
        assert_eq!(report.issuer, "CN=Report CA");
        assert_eq!(report.common_name.as_deref(), Some("api_user"));
        assert_eq!(report.extended_key_usage, vec!["clientAuth".to_owned()]);
        assert_eq!(
            report.pg_ident.as_deref(),
            Ok("ace_cert_map \"CN=api_user\" api_user")
        );
        assert_eq!(report.serial, format!("{:X}", client.serial));
        let text = report.to_string();
        assert!(
            text.contains("clientAuth") && text.contains("Digital Signature"),
            "{text}"
        );

        let no_cn = ca.client_cert_without_cn().unwrap();
        assert!(
            certificate_report(&no_cn.cert_der)
                .unwrap()
                .pg_ident
                .is_err()
        );
    }
}
