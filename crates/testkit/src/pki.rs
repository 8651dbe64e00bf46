//! An in-process PKI for tests, built with rcgen.
//!
//! [`TestCa`] is a certificate authority that lives in memory. It issues
//! server certificates with chosen SANs, client certificates by CN, and the
//! bad kinds tests need (expired, not yet valid, without a CN), and it keeps
//! a revocation list whose CRL can be written fresh or already expired.
//! A certificate "signed by another CA" is simply one issued by a second
//! [`TestCa`].
//!
//! ```
//! use ace_testkit::pki::TestCa;
//!
//! let ca = TestCa::new("Test CA").unwrap();
//! let server = ca.server_cert(&["localhost", "127.0.0.1"]).unwrap();
//! let client = ca.client_cert("api_user").unwrap();
//! ca.revoke(&client);
//! let crl_pem = ca.crl_pem().unwrap();
//! assert!(crl_pem.contains("BEGIN X509 CRL"));
//! assert!(server.cert_pem.contains("BEGIN CERTIFICATE"));
//! ```

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, KeyIdMethod, KeyPair, KeyUsagePurpose, RevocationReason,
    RevokedCertParams, SerialNumber,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use time::{Duration, OffsetDateTime};

use crate::{Error, Result};

/// Serial numbers are unique across every CA of the process, so a CRL of one
/// CA can never accidentally name a certificate of another.
static NEXT_SERIAL: AtomicU64 = AtomicU64::new(0x1000);

fn next_serial() -> u64 {
    NEXT_SERIAL.fetch_add(1, Ordering::Relaxed)
}

/// A certificate and its private key, as issued by a [`TestCa`].
#[derive(Clone)]
pub struct Issued {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The private key (PKCS#8), PEM.
    pub key_pem: String,
    /// The certificate, DER.
    pub cert_der: Vec<u8>,
    /// The private key (PKCS#8), DER.
    pub key_der: Vec<u8>,
    /// The certificate serial number.
    pub serial: u64,
    /// The subject CN, when the certificate has one.
    pub cn: Option<String>,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material, even in a test failure.
        f.debug_struct("Issued")
            .field("cn", &self.cn)
            .field("serial", &self.serial)
            .finish_non_exhaustive()
    }
}

impl Issued {
    /// The certificate as a rustls type.
    pub fn cert(&self) -> CertificateDer<'static> {
        CertificateDer::from(self.cert_der.clone())
    }

    /// The private key as a rustls type.
    pub fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()))
    }

    /// Writes `<stem>.crt` and `<stem>.key` (mode 0600) into `dir` and
    /// returns their paths.
    ///
    /// # Errors
    ///
    /// Fails when a file cannot be written.
    pub fn write_to(&self, dir: &Path, stem: &str) -> Result<(PathBuf, PathBuf)> {
        let cert = dir.join(format!("{stem}.crt"));
        let key = dir.join(format!("{stem}.key"));
        write_file(&cert, self.cert_pem.as_bytes(), 0o644)?;
        write_file(&key, self.key_pem.as_bytes(), 0o600)?;
        Ok((cert, key))
    }
}

/// Writes `contents` to `path` with the given Unix mode.
pub(crate) fn write_file(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    std::fs::write(path, contents).map_err(io)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(io)
}

/// What a client certificate should look like; see [`TestCa::client_cert_with`].
#[derive(Debug, Clone)]
pub struct ClientSpec {
    /// Subject CN; `None` makes a certificate without a CN.
    pub cn: Option<String>,
    /// Start of validity.
    pub not_before: OffsetDateTime,
    /// End of validity.
    pub not_after: OffsetDateTime,
}

impl ClientSpec {
    /// A client certificate for `cn`, valid from a day ago for a year.
    pub fn new(cn: &str) -> Self {
        let now = OffsetDateTime::now_utc();
        ClientSpec {
            cn: Some(cn.to_owned()),
            not_before: now - Duration::days(1),
            not_after: now + Duration::days(365),
        }
    }
}

/// A certificate authority held in memory.
pub struct TestCa {
    name: String,
    key: KeyPair,
    cert: rcgen::Certificate,
    revoked: Mutex<Vec<u64>>,
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCa")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl TestCa {
    /// Creates a self-signed CA whose subject CN is `name` (ECDSA P-256).
    ///
    /// # Errors
    ///
    /// Fails only if rcgen cannot build the certificate.
    pub fn new(name: &str) -> Result<Self> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name = dn(Some(name));
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::days(2);
        params.not_after = now + Duration::days(3650);
        params.serial_number = Some(SerialNumber::from(next_serial()));
        let cert = params.self_signed(&key)?;
        Ok(TestCa {
            name: name.to_owned(),
            key,
            cert,
            revoked: Mutex::new(Vec::new()),
        })
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> String {
        self.cert.pem()
    }

    /// The CA certificate, DER.
    pub fn cert_der(&self) -> CertificateDer<'static> {
        self.cert.der().clone()
    }

    /// The CA private key (PKCS#8), PEM.
    pub fn key_pem(&self) -> String {
        self.key.serialize_pem()
    }

    /// A server certificate for the given SANs (DNS names or IP addresses);
    /// the CN is the first SAN.
    ///
    /// # Errors
    ///
    /// Fails when a SAN is not a valid DNS name or IP address.
    pub fn server_cert(&self, sans: &[&str]) -> Result<Issued> {
        let sans: Vec<String> = sans.iter().map(|s| (*s).to_owned()).collect();
        let mut params = CertificateParams::new(sans.clone())?;
        params.distinguished_name = dn(sans.first().map(String::as_str));
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::days(1);
        params.not_after = now + Duration::days(365);
        self.sign(params, sans.first().cloned())
    }

    /// A client certificate (clientAuth) for `cn`, valid now.
    ///
    /// # Errors
    ///
    /// Fails only if rcgen cannot build the certificate.
    pub fn client_cert(&self, cn: &str) -> Result<Issued> {
        self.client_cert_with(&ClientSpec::new(cn))
    }

    /// A client certificate for `cn` that expired yesterday.
    ///
    /// # Errors
    ///
    /// Fails only if rcgen cannot build the certificate.
    pub fn expired_client_cert(&self, cn: &str) -> Result<Issued> {
        let now = OffsetDateTime::now_utc();
        self.client_cert_with(&ClientSpec {
            not_before: now - Duration::days(30),
            not_after: now - Duration::days(1),
            ..ClientSpec::new(cn)
        })
    }

    /// A client certificate for `cn` that becomes valid in ten days.
    ///
    /// # Errors
    ///
    /// Fails only if rcgen cannot build the certificate.
    pub fn not_yet_valid_client_cert(&self, cn: &str) -> Result<Issued> {
        let now = OffsetDateTime::now_utc();
        self.client_cert_with(&ClientSpec {
            not_before: now + Duration::days(10),
            not_after: now + Duration::days(40),
            ..ClientSpec::new(cn)
        })
    }

    /// A client certificate whose subject has no CN (only an O).
    ///
    /// # Errors
    ///
    /// Fails only if rcgen cannot build the certificate.
    pub fn client_cert_without_cn(&self) -> Result<Issued> {
        self.client_cert_with(&ClientSpec {
            cn: None,
            ..ClientSpec::new("unused")
        })
    }

    /// A client certificate as described by `spec`.
    ///
    /// # Errors
    ///
    /// Fails only if rcgen cannot build the certificate.
    pub fn client_cert_with(&self, spec: &ClientSpec) -> Result<Issued> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name = dn(spec.cn.as_deref());
        if spec.cn.is_none() {
            params
                .distinguished_name
                .push(DnType::OrganizationName, "ACE tests");
        }
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.not_before = spec.not_before;
        params.not_after = spec.not_after;
        self.sign(params, spec.cn.clone())
    }

    /// Adds `issued` to this CA's revocation list; the next CRL names it.
    pub fn revoke(&self, issued: &Issued) {
        self.revoked
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(issued.serial);
    }

    /// A CRL of every revoked certificate, valid from an hour ago for a week.
    ///
    /// # Errors
    ///
    /// Fails only if rcgen cannot sign the CRL.
    pub fn crl_pem(&self) -> Result<String> {
        let now = OffsetDateTime::now_utc();
        self.crl_pem_with(now - Duration::hours(1), now + Duration::days(7))
    }

    /// A CRL of every revoked certificate whose next update was yesterday.
    ///
    /// # Errors
    ///
    /// Fails only if rcgen cannot sign the CRL.
    pub fn expired_crl_pem(&self) -> Result<String> {
        let now = OffsetDateTime::now_utc();
        self.crl_pem_with(now - Duration::days(8), now - Duration::days(1))
    }

    /// A CRL of every revoked certificate with the given update times.
    ///
    /// # Errors
    ///
    /// Fails only if rcgen cannot sign the CRL.
    pub fn crl_pem_with(
        &self,
        this_update: OffsetDateTime,
        next_update: OffsetDateTime,
    ) -> Result<String> {
        let revoked = self
            .revoked
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .iter()
            .map(|serial| RevokedCertParams {
                serial_number: SerialNumber::from(*serial),
                revocation_time: this_update,
                reason_code: Some(RevocationReason::KeyCompromise),
                invalidity_date: None,
            })
            .collect();
        let params = CertificateRevocationListParams {
            this_update,
            next_update,
            crl_number: SerialNumber::from(next_serial()),
            issuing_distribution_point: None,
            revoked_certs: revoked,
            key_identifier_method: KeyIdMethod::Sha256,
        };
        Ok(params.signed_by(&self.cert, &self.key)?.pem()?)
    }

    fn sign(&self, mut params: CertificateParams, cn: Option<String>) -> Result<Issued> {
        let serial = next_serial();
        params.serial_number = Some(SerialNumber::from(serial));
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.cert, &self.key)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            cert_der: cert.der().to_vec(),
            key_der: key.serialize_der(),
            serial,
            cn,
        })
    }
}

fn dn(cn: Option<&str>) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    if let Some(cn) = cn {
        dn.push(DnType::CommonName, cn);
    }
    dn
}
