//! TLS to a node, with libpq's `sslmode` semantics, on rustls and ring.
//!
//! libpq trusts exactly the certificates of `sslrootcert` (never the
//! system's public roots), checks `sslcrl`, and in `verify-ca` checks the
//! chain but not the host name. sqlx's own TLS adds public roots beside
//! `sslrootcert` and cannot do `verify-ca` with current rustls, so ACE makes
//! the TLS connection itself (see [`crate::proxy`]) with a configuration
//! built here:
//!
//! | sslmode | TLS | server certificate |
//! |---|---|---|
//! | `disable` | never | - |
//! | `allow` | never (see Limitations in the README) | - |
//! | `prefer` | if the server offers it | not verified |
//! | `require` | always | not verified, unless `sslrootcert` is set: then as `verify-ca` (libpq does the same) |
//! | `verify-ca` | always | chains to `sslrootcert`, not revoked by `sslcrl` |
//! | `verify-full` | always | as `verify-ca`, and names the host |

use std::path::Path;
use std::sync::Arc;

use ace_config::{NodeSettings, SslMode};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ClientConfig, WebPkiServerVerifier};
use rustls::crypto::CryptoProvider;
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{
    CertificateDer, CertificateRevocationListDer, PrivateKeyDer, ServerName, UnixTime,
};

use crate::error::{Result, SessionError, TlsFailure};

/// What the proxy does for one node.
#[derive(Debug, Clone)]
pub(crate) enum TlsPlan {
    /// Plain TCP.
    Plain,
    /// TLS if the server accepts it, else plain.
    Prefer(Arc<ClientConfig>, ServerName<'static>),
    /// TLS or fail.
    Require(Arc<ClientConfig>, ServerName<'static>),
}

/// Builds the plan for a node from its settings.
pub(crate) fn plan(node: &str, settings: &NodeSettings, host: &str) -> Result<TlsPlan> {
    let mode = settings.sslmode;
    if matches!(mode, SslMode::Disable | SslMode::Allow) {
        return Ok(TlsPlan::Plain);
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let file_error = |what: &'static str, path: &Path, reason: String| SessionError::File {
        node: node.to_owned(),
        what,
        path: path.to_path_buf(),
        reason,
    };

    let roots = match &settings.sslrootcert {
        Some(path) => {
            Some(load_roots(path).map_err(|reason| file_error("sslrootcert", path, reason))?)
        }
        None => None,
    };
    let crls = match &settings.sslcrl {
        Some(path) => load_crls(path).map_err(|reason| file_error("sslcrl", path, reason))?,
        None => Vec::new(),
    };

    let verifier: Arc<dyn ServerCertVerifier> = match (mode, roots) {
        (SslMode::VerifyCa | SslMode::VerifyFull, None) => {
            return Err(SessionError::Settings {
                node: node.to_owned(),
                reason: format!(
                    "sslmode={mode} needs sslrootcert (the CA that signed the server certificate)"
                ),
            });
        }
        (SslMode::VerifyFull, Some(roots)) => webpki_verifier(node, roots, crls, &provider)?,
        (SslMode::VerifyCa | SslMode::Require, Some(roots)) => Arc::new(IgnoreHostName {
            inner: webpki_verifier(node, roots, crls, &provider)?,
        }),
        (_, _) => Arc::new(AcceptAnyServerCert {
            provider: provider.clone(),
        }),
    };

    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| SessionError::Settings {
            node: node.to_owned(),
            reason: format!("TLS set-up: {error}"),
        })?
        .dangerous()
        .with_custom_certificate_verifier(verifier);

    let mut config = match (&settings.sslcert, &settings.sslkey) {
        (Some(cert), Some(key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|error| file_error("sslcert", cert, error.to_string()))?;
            if chain.is_empty() {
                return Err(file_error("sslcert", cert, "no certificate found".into()));
            }
            let key_der = PrivateKeyDer::from_pem_file(key)
                .map_err(|error| file_error("sslkey", key, error.to_string()))?;
            builder
                .with_client_auth_cert(chain, key_der)
                .map_err(|error| {
                    file_error("sslkey", key, format!("does not match sslcert: {error}"))
                })?
        }
        (None, None) => builder.with_no_client_auth(),
        (Some(_), None) | (None, Some(_)) => {
            return Err(SessionError::Settings {
                node: node.to_owned(),
                reason: "sslcert and sslkey must be given together".into(),
            });
        }
    };
    config.alpn_protocols = vec![b"postgresql".to_vec()];
    let config = Arc::new(config);

    let name = ServerName::try_from(host.to_owned()).map_err(|_| SessionError::Settings {
        node: node.to_owned(),
        reason: format!("host {host:?} is not a valid DNS name or IP address"),
    })?;
    Ok(match mode {
        SslMode::Prefer => TlsPlan::Prefer(config, name),
        _ => TlsPlan::Require(config, name),
    })
}

fn load_roots(path: &Path) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(path).map_err(|error| error.to_string())? {
        let cert = cert.map_err(|error| error.to_string())?;
        roots
            .add(cert)
            .map_err(|error| format!("not a usable CA certificate: {error}"))?;
    }
    if roots.is_empty() {
        return Err("no certificate found".into());
    }
    Ok(roots)
}

fn load_crls(path: &Path) -> Result<Vec<CertificateRevocationListDer<'static>>, String> {
    let crls = CertificateRevocationListDer::pem_file_iter(path)
        .map_err(|error| error.to_string())?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| error.to_string())?;
    if crls.is_empty() {
        return Err("no CRL found".into());
    }
    Ok(crls)
}

fn webpki_verifier(
    node: &str,
    roots: RootCertStore,
    crls: Vec<CertificateRevocationListDer<'static>>,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<dyn ServerCertVerifier>> {
    let mut builder =
        WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone());
    if !crls.is_empty() {
        // As libpq (OpenSSL) does: an expired CRL is a failure.
        builder = builder.with_crls(crls).enforce_revocation_expiration();
    }
    let verifier = builder.build().map_err(|error| SessionError::Settings {
        node: node.to_owned(),
        reason: format!("sslrootcert/sslcrl: {error}"),
    })?;
    Ok(verifier)
}

/// `verify-ca`: the chain must verify; the name need not match.
#[derive(Debug)]
struct IgnoreHostName {
    inner: Arc<dyn ServerCertVerifier>,
}

impl ServerCertVerifier for IgnoreHostName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// `prefer` and `require` without `sslrootcert`: encryption without
/// authentication of the server, exactly what libpq gives in those modes.
/// Handshake signatures are still checked.
#[derive(Debug)]
struct AcceptAnyServerCert {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for AcceptAnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Names a rustls failure the way an operator thinks about it.
pub(crate) fn classify(error: &std::io::Error, host: &str) -> TlsFailure {
    let Some(tls) = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    else {
        return TlsFailure::Other(error.to_string());
    };
    match tls {
        rustls::Error::InvalidCertificate(cert) => match cert {
            CertificateError::UnknownIssuer | CertificateError::BadSignature => {
                TlsFailure::ServerCertNotTrusted
            }
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                TlsFailure::HostNameMismatch {
                    host: host.to_owned(),
                }
            }
            CertificateError::Revoked => TlsFailure::ServerCertRevoked,
            CertificateError::Expired
            | CertificateError::ExpiredContext { .. }
            | CertificateError::NotValidYet
            | CertificateError::NotValidYetContext { .. } => TlsFailure::ServerCertExpired,
            other => TlsFailure::Other(format!("server certificate: {other:?}")),
        },
        rustls::Error::AlertReceived(alert) => TlsFailure::ClientCertRefused {
            alert: format!("{alert:?}"),
        },
        other => TlsFailure::Other(other.to_string()),
    }
}
