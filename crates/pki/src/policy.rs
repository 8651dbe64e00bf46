//! The client policy of the API server, and the handle that swaps it.
//!
//! A [`ServerPolicy`] is built once from [`PolicySettings`] and never
//! changes: the rustls [`ServerConfig`] it owns has its server certificate,
//! client CAs and CRLs fixed. To change any of them, build a new policy and
//! swap it into a [`PolicyHandle`]; connections accepted afterwards use the
//! new one, open connections keep the one they were accepted with.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{NoServerSessionStorage, ServerConfig, WebPkiClientVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme};
use rustls_pki_types::{CertificateDer, UnixTime};
use time::OffsetDateTime;
use tracing::{debug, error, info, warn};

use crate::error::{Error, Result};
use crate::identity::{self, Identity, Refusal, check_common_name};
use crate::inspect::format_time;
use crate::load::{self, LoadedCrl};

/// The lowest TLS version the server accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MinTlsVersion {
    /// TLS 1.2 and 1.3 (the default; TLS 1.2 is ACE's floor).
    #[default]
    Tls12,
    /// TLS 1.3 only.
    Tls13,
}

/// Everything the client policy is built from.
///
/// The HTTP layer fills this from `ace.yaml`: `server.tls_cert_file`,
/// `server.tls_key_file`, `server.client_ca_file` (else
/// `cert_auth.ca_cert_file`), `server.client_crl_file`,
/// `server.allowed_common_names`, and the admin list.
///
/// The defaults are the strict ones. Each `allow_*` / `*_only` field is a
/// named relaxation; none is on unless set.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PolicySettings {
    /// The server certificate chain (leaf first), PEM or DER.
    pub server_cert_file: PathBuf,
    /// The server private key (PKCS#8, PKCS#1 or SEC1; PEM or DER).
    pub server_key_file: PathBuf,
    /// CA bundles whose certificates are trusted to sign client
    /// certificates. At least one is required.
    pub client_ca_files: Vec<PathBuf>,
    /// CRL files (each may hold several CRLs). Each CRL must be signed by
    /// one of the client CAs.
    pub client_crl_files: Vec<PathBuf>,
    /// When not empty, only these CNs are accepted.
    pub allowed_common_names: Vec<String>,
    /// CNs that may see every caller's tasks.
    pub admin_common_names: Vec<String>,
    /// ALPN protocols offered, in preference order (default `h2`,
    /// `http/1.1`).
    pub alpn_protocols: Vec<Vec<u8>>,
    /// The TLS floor (default TLS 1.2).
    pub min_tls_version: MinTlsVersion,
    /// Relaxation: accept clients while a CRL is past its next update
    /// (logged as a warning at load). Off: an expired CRL refuses everyone.
    pub allow_expired_crl: bool,
    /// Relaxation: when CRLs are configured, accept a certificate whose CA
    /// has no CRL. Off: such a certificate is refused as "revocation status
    /// unknown".
    pub allow_unknown_revocation_status: bool,
    /// Relaxation: check revocation of the client certificate only, not of
    /// the intermediates in its chain.
    pub end_entity_revocation_only: bool,
}

impl PolicySettings {
    /// Strict settings for a server certificate and key and one client CA
    /// bundle; no CRL, no allowlist, no admins.
    pub fn new(
        server_cert_file: impl Into<PathBuf>,
        server_key_file: impl Into<PathBuf>,
        client_ca_file: impl Into<PathBuf>,
    ) -> Self {
        PolicySettings {
            server_cert_file: server_cert_file.into(),
            server_key_file: server_key_file.into(),
            client_ca_files: vec![client_ca_file.into()],
            client_crl_files: Vec::new(),
            allowed_common_names: Vec::new(),
            admin_common_names: Vec::new(),
            alpn_protocols: vec![b"h2".to_vec(), b"http/1.1".to_vec()],
            min_tls_version: MinTlsVersion::Tls12,
            allow_expired_crl: false,
            allow_unknown_revocation_status: false,
            end_entity_revocation_only: false,
        }
    }
}

/// Decides, for one loaded policy, whether a client chain makes an
/// identity. Shared by the handshake verifier and [`ServerPolicy::identify`]
/// so both apply exactly the same rules.
struct Checker {
    webpki: Arc<dyn ClientCertVerifier>,
    allowed: Option<BTreeSet<String>>,
    admins: BTreeSet<String>,
    crls: Vec<LoadedCrl>,
    allow_expired_crl: bool,
}

impl fmt::Debug for Checker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Checker")
            .field("allowed", &self.allowed)
            .field("admins", &self.admins)
            .field("crls", &self.crls.len())
            .field("allow_expired_crl", &self.allow_expired_crl)
            .finish_non_exhaustive()
    }
}

impl Checker {
    fn check(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<Identity, Refusal> {
        // An expired CRL can no longer say who is revoked: refuse everyone,
        // whichever CA issued them, until it is renewed.
        if !self.allow_expired_crl {
            let now_odt = unix_to_odt(now);
            if let Some(crl) = self.crls.iter().find(|crl| crl.is_expired_at(now_odt)) {
                let next_update = crl.next_update.unwrap_or(now_odt);
                let when = format_time(next_update);
                error!(
                    crl.path = %crl.path.display(),
                    crl.next_update = %when,
                    "client CRL expired at {when}; refusing every client certificate until it is renewed"
                );
                return Err(Refusal::CrlExpired {
                    path: crl.path.clone(),
                    next_update,
                });
            }
        }
        self.webpki
            .verify_client_cert(end_entity, intermediates, now)
            .map_err(Refusal::Verification)?;
        let mut identity = identity::identity_of(end_entity)?;
        if let Some(allowed) = &self.allowed
            && !allowed.contains(&identity.cn)
        {
            return Err(Refusal::NotAllowed { cn: identity.cn });
        }
        identity.is_admin = self.admins.contains(&identity.cn);
        Ok(identity)
    }
}

/// The rustls client verifier of a [`ServerPolicy`]: webpki's chain, date
/// and CRL checks, then the CN rules and the allowlist, so a refused caller
/// never completes a handshake. Every refusal is logged with its reason.
#[derive(Debug)]
struct PolicyVerifier {
    checker: Arc<Checker>,
}

impl ClientCertVerifier for PolicyVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.checker.webpki.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        match self.checker.check(end_entity, intermediates, now) {
            Ok(identity) => {
                debug!(cn = %identity.cn, serial = %identity.serial, "client certificate accepted");
                Ok(ClientCertVerified::assertion())
            }
            Err(refusal) => {
                warn!(
                    fingerprint = %identity::fingerprint(end_entity),
                    reason = %refusal,
                    "client certificate refused"
                );
                Err(match refusal {
                    Refusal::Verification(error) => error,
                    other => rustls::Error::InvalidCertificate(rustls::CertificateError::Other(
                        rustls::OtherError(Arc::new(other)),
                    )),
                })
            }
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.checker
            .webpki
            .verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.checker
            .webpki
            .verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.checker.webpki.supported_verify_schemes()
    }
}

/// A loaded, immutable client policy and the rustls server configuration
/// that enforces it.
///
/// # What is refused by default
///
/// - A connection without a client certificate (client auth is mandatory;
///   there is no anonymous mode).
/// - TLS below 1.2.
/// - A certificate that does not chain to one of the client CAs, whose
///   signature is bad, or that is outside its validity dates.
/// - A certificate revoked by a configured CRL; when CRLs are configured, a
///   certificate of a CA without a CRL (status unknown) and intermediates
///   whose status is unknown.
/// - Everybody, while any configured CRL is past its next update.
/// - A certificate whose CN breaks the CN rules (see
///   [`crate::identity`]), or is not in `allowed_common_names` when that is
///   set.
///
/// Session resumption is disabled: every connection runs a full handshake,
/// so every connection's certificate is checked against the policy of the
/// moment, including validity dates and CRLs.
///
/// Loading also refuses files that do not make sense: certificates that do
/// not parse, a server key that is not the server certificate's, and CRLs
/// not signed by any configured client CA.
pub struct ServerPolicy {
    config: Arc<ServerConfig>,
    checker: Arc<Checker>,
    client_cas: Vec<CertificateDer<'static>>,
    settings: PolicySettings,
}

impl fmt::Debug for ServerPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerPolicy")
            .field("settings", &self.settings)
            .field("client_cas", &self.client_cas.len())
            .field("checker", &self.checker)
            .finish_non_exhaustive()
    }
}

impl ServerPolicy {
    /// Loads every file `settings` names and builds the policy.
    ///
    /// Uses the ring crypto provider explicitly, so it works whether or not
    /// a process default is installed.
    ///
    /// # Errors
    ///
    /// [`Error::NoClientCa`] when no client CA is configured; any loading
    /// error ([`Error::NotACertificate`], [`Error::NoPrivateKey`],
    /// [`Error::KeyMismatch`], [`Error::NotACrl`],
    /// [`Error::CrlNotSignedByConfiguredCa`], ...) naming the file;
    /// [`Error::InvalidCommonNameSetting`] for an allowlist or admin entry
    /// no certificate could carry; [`Error::Tls`] when rustls refuses the
    /// result.
    pub fn load(settings: &PolicySettings) -> Result<ServerPolicy> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());

        // The server's own certificate and key.
        let server_key = load::load_certified_key(
            &settings.server_cert_file,
            &settings.server_key_file,
            &provider,
        )?;
        warn_on_server_validity(&settings.server_cert_file, &server_key.cert[0]);

        // Client CAs: every certificate of every bundle is a trust anchor.
        if settings.client_ca_files.is_empty() {
            return Err(Error::NoClientCa);
        }
        let mut roots = RootCertStore::empty();
        let mut client_cas = Vec::new();
        for path in &settings.client_ca_files {
            for ca in load::load_certificates(path)? {
                roots.add(ca.clone()).map_err(|e| Error::BadCaCertificate {
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
                client_cas.push(ca);
            }
        }

        // CRLs: each must come from one of those CAs.
        let mut crls = Vec::new();
        for path in &settings.client_crl_files {
            for crl in load::load_crls(path)? {
                load::check_crl_issuer(&crl, &client_cas)?;
                crls.push(crl);
            }
        }
        report_crls(&crls, settings.allow_expired_crl);

        // Name lists.
        let allowed = name_set("allowed_common_names", &settings.allowed_common_names)?;
        let admins = name_set("admin_common_names", &settings.admin_common_names)?;
        if !allowed.is_empty() {
            for admin in admins.difference(&allowed) {
                warn!(
                    cn = %admin,
                    "admin CN is not in allowed_common_names, so it will be refused"
                );
            }
        }

        // The webpki verifier does chain, dates and revocation.
        let mut builder =
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider))
                .with_crls(crls.iter().map(|crl| crl.der.clone()));
        if !settings.allow_expired_crl {
            builder = builder.enforce_revocation_expiration();
        }
        if settings.allow_unknown_revocation_status {
            builder = builder.allow_unknown_revocation_status();
        }
        if settings.end_entity_revocation_only {
            builder = builder.only_check_end_entity_revocation();
        }
        let webpki = builder.build().map_err(|e| Error::Tls {
            reason: e.to_string(),
        })?;

        let checker = Arc::new(Checker {
            webpki,
            allowed: (!allowed.is_empty()).then_some(allowed),
            admins,
            crls,
            allow_expired_crl: settings.allow_expired_crl,
        });
        let verifier = Arc::new(PolicyVerifier {
            checker: Arc::clone(&checker),
        });

        let versions: &[&'static rustls::SupportedProtocolVersion] = match settings.min_tls_version
        {
            MinTlsVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
            MinTlsVersion::Tls13 => &[&rustls::version::TLS13],
        };
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .map_err(|e| Error::Tls {
                reason: e.to_string(),
            })?
            .with_client_cert_verifier(verifier)
            .with_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(server_key)));
        config.alpn_protocols = settings.alpn_protocols.clone();
        // No resumption: a resumed session skips certificate verification.
        config.session_storage = Arc::new(NoServerSessionStorage {});
        config.send_tls13_tickets = 0;

        info!(
            server_cert = %settings.server_cert_file.display(),
            client_cas = client_cas.len(),
            crls = checker.crls.len(),
            allowlist = checker.allowed.as_ref().map_or(0, BTreeSet::len),
            admins = checker.admins.len(),
            "client policy loaded"
        );
        Ok(ServerPolicy {
            config: Arc::new(config),
            checker,
            client_cas,
            settings: settings.clone(),
        })
    }

    /// The rustls configuration to accept connections with (for example
    /// `tokio_rustls::TlsAcceptor::from(policy.server_config())`).
    pub fn server_config(&self) -> Arc<ServerConfig> {
        Arc::clone(&self.config)
    }

    /// The settings this policy was built from.
    pub fn settings(&self) -> &PolicySettings {
        &self.settings
    }

    /// The client CA certificates, in the order they were loaded.
    pub fn client_cas(&self) -> &[CertificateDer<'static>] {
        &self.client_cas
    }

    /// The CRLs in force.
    pub fn crls(&self) -> &[LoadedCrl] {
        &self.checker.crls
    }

    /// Turns a peer's certificate chain (leaf first, as
    /// `ServerConnection::peer_certificates` returns it) into an
    /// [`Identity`], checking it now exactly as the handshake does: chain,
    /// dates, CRLs, CN rules, allowlist. Running it per request also
    /// catches a certificate that expired during a long-lived connection.
    ///
    /// # Errors
    ///
    /// The [`Refusal`] that says why the chain is not accepted.
    pub fn identify(&self, chain: &[CertificateDer<'_>]) -> Result<Identity, Refusal> {
        self.identify_at(chain, UnixTime::now())
    }

    /// [`identify`](Self::identify) at a given time.
    ///
    /// # Errors
    ///
    /// As [`identify`](Self::identify).
    pub fn identify_at(
        &self,
        chain: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<Identity, Refusal> {
        let (end_entity, intermediates) = chain.split_first().ok_or(Refusal::NoCertificate)?;
        self.checker.check(end_entity, intermediates, now)
    }

    /// [`identify`](Self::identify) on the peer certificates of a
    /// handshaken rustls connection.
    ///
    /// # Errors
    ///
    /// [`Refusal::NoCertificate`] when the connection has none; otherwise
    /// as [`identify`](Self::identify).
    pub fn identify_connection(
        &self,
        connection: &rustls::ServerConnection,
    ) -> Result<Identity, Refusal> {
        self.identify(connection.peer_certificates().unwrap_or_default())
    }
}

fn unix_to_odt(now: UnixTime) -> OffsetDateTime {
    i64::try_from(now.as_secs())
        .ok()
        .and_then(|secs| OffsetDateTime::from_unix_timestamp(secs).ok())
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

fn name_set(setting: &'static str, names: &[String]) -> Result<BTreeSet<String>> {
    names
        .iter()
        .map(|name| {
            check_common_name(name).map_err(|refusal| Error::InvalidCommonNameSetting {
                setting,
                name: name.clone(),
                refusal,
            })?;
            Ok(name.clone())
        })
        .collect()
}

fn report_crls(crls: &[LoadedCrl], allow_expired: bool) {
    let now = OffsetDateTime::now_utc();
    if crls.is_empty() {
        info!("no client CRL configured; revocation is not checked");
    }
    for crl in crls {
        match crl.next_update.map(|next| (next, format_time(next))) {
            Some((next, when)) if next <= now && allow_expired => warn!(
                crl.path = %crl.path.display(),
                crl.next_update = %when,
                "client CRL expired at {when}; accepting clients anyway (allow_expired_crl)"
            ),
            Some((next, when)) if next <= now => error!(
                crl.path = %crl.path.display(),
                crl.next_update = %when,
                "client CRL expired at {when}; every client certificate will be refused until it is renewed"
            ),
            Some((_, when)) => info!(
                crl.path = %crl.path.display(),
                crl.issuer = %crl.issuer,
                crl.revoked = crl.revoked,
                crl.next_update = %when,
                "client CRL loaded"
            ),
            None => warn!(
                crl.path = %crl.path.display(),
                "client CRL has no next update; it is treated as never expiring"
            ),
        }
    }
}

fn warn_on_server_validity(path: &Path, cert: &CertificateDer<'_>) {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let Ok((_, parsed)) = X509Certificate::from_der(cert) else {
        return;
    };
    let validity = parsed.validity();
    let now = OffsetDateTime::now_utc();
    let not_after = validity.not_after.to_datetime();
    let not_before = validity.not_before.to_datetime();
    if not_after <= now {
        let not_after = format_time(not_after);
        warn!(path = %path.display(), %not_after, "server certificate has expired; clients will refuse it");
    } else if not_before > now {
        let not_before = format_time(not_before);
        warn!(path = %path.display(), %not_before, "server certificate is not valid yet; clients will refuse it");
    }
}

/// The policy in force, swappable while the server runs.
///
/// Accept loops call [`current`](Self::current) for each new connection;
/// [`reload`](Self::reload) builds a new policy and swaps it in atomically.
/// Open connections keep the policy they were accepted with.
#[derive(Debug)]
pub struct PolicyHandle {
    current: ArcSwap<ServerPolicy>,
    generation: AtomicU64,
}

impl PolicyHandle {
    /// Wraps an already loaded policy.
    pub fn new(policy: ServerPolicy) -> Self {
        PolicyHandle {
            current: ArcSwap::from_pointee(policy),
            generation: AtomicU64::new(1),
        }
    }

    /// Loads the first policy.
    ///
    /// # Errors
    ///
    /// As [`ServerPolicy::load`].
    pub fn load(settings: &PolicySettings) -> Result<Self> {
        ServerPolicy::load(settings).map(PolicyHandle::new)
    }

    /// The policy in force now.
    pub fn current(&self) -> Arc<ServerPolicy> {
        self.current.load_full()
    }

    /// How many policies this handle has held (1 after loading, +1 per
    /// successful reload).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Builds a policy from `settings` and, if it loads, makes it current.
    /// If it does not, the old policy stays in force and the error says why
    /// (it is also logged).
    ///
    /// # Errors
    ///
    /// As [`ServerPolicy::load`]; the current policy is then unchanged.
    pub fn reload(&self, settings: &PolicySettings) -> Result<Arc<ServerPolicy>> {
        match ServerPolicy::load(settings) {
            Ok(policy) => {
                let policy = Arc::new(policy);
                self.current.store(Arc::clone(&policy));
                let generation = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
                info!(generation, "client policy swapped");
                Ok(policy)
            }
            Err(error) => {
                error!(%error, generation = self.generation(), "client policy reload failed; keeping the current policy");
                Err(error)
            }
        }
    }
}
