//! Certificates, keys, CRLs and the client policy of the ACE API.
//!
//! This crate is the single place that decides who an API caller is. It
//! loads certificates, CA bundles, private keys and CRLs ([`load`]), builds
//! the rustls server configuration that requires and verifies client
//! certificates ([`ServerPolicy`]), and turns a verified certificate into an
//! [`Identity`] whose role is the certificate CN. A [`PolicyHandle`] swaps a
//! freshly loaded policy in while the server runs. The [`ca`] module is the
//! certificate authority behind `ace-admin pki`, and [`inspect`] describes
//! certificates and CRLs for humans.
//!
//! # Security invariants
//!
//! Secure by default; every relaxation is a named field of
//! [`PolicySettings`] (`allow_expired_crl`,
//! `allow_unknown_revocation_status`, `end_entity_revocation_only`). By
//! default the server refuses:
//!
//! - connections without a client certificate, and TLS below 1.2;
//! - certificates that do not chain to a configured client CA, are badly
//!   signed, expired or not yet valid;
//! - certificates revoked by a configured CRL, and, when CRLs are
//!   configured, certificates whose revocation status no CRL covers;
//! - everyone, while a configured CRL is past its next update (logged at
//!   error level with the CRL's path and expiry time);
//! - certificates without exactly one text CN, with a CN over PostgreSQL's
//!   63-byte role-name limit or holding control characters
//!   ([`identity`] states the rules), or, when `allowed_common_names` is
//!   set, with a CN outside it.
//!
//! The same checks run in the TLS handshake and in
//! [`ServerPolicy::identify`], so a refused caller never completes a
//! handshake and a request can be re-checked at any time. TLS session
//! resumption is off, so no connection skips verification. Nothing here
//! logs key material; refusals are logged with the certificate fingerprint
//! and the reason.
//!
//! Loading refuses, naming the file: a file without certificates, a key file
//! without a key or with an encrypted key, a server key that does not match
//! the server certificate, and a CRL not signed by any configured client CA.
//!
//! # Example
//!
//! ```no_run
//! use ace_pki::{PolicyHandle, PolicySettings};
//!
//! # fn main() -> Result<(), ace_pki::Error> {
//! let mut settings = PolicySettings::new("server.crt", "server.key", "ca.crt");
//! settings.client_crl_files = vec!["crl.pem".into()];
//! settings.allowed_common_names = vec!["api_user".into(), "admin_user".into()];
//! settings.admin_common_names = vec!["admin_user".into()];
//!
//! let policy = PolicyHandle::load(&settings)?;
//! // For each accepted TCP connection:
//! let acceptor_config = policy.current().server_config();
//! # let _ = acceptor_config;
//! // After the handshake, with the peer's chain:
//! # let peer_chain: Vec<rustls_pki_types::CertificateDer<'static>> = Vec::new();
//! match policy.current().identify(&peer_chain) {
//!     Ok(identity) => println!("{} acts as role {}", identity.cn, identity.role),
//!     Err(refusal) => eprintln!("refused: {refusal}"),
//! }
//! // On SIGHUP: a policy that fails to load leaves the old one in force.
//! if let Err(error) = policy.reload(&settings) {
//!     eprintln!("kept the old policy: {error}");
//! }
//! # Ok(())
//! # }
//! ```

#![forbid(unsafe_code)]

pub mod ca;
mod error;
pub mod identity;
pub mod inspect;
pub mod load;
mod policy;

pub use error::{Error, Result};
pub use identity::{Identity, Refusal};
pub use policy::{MinTlsVersion, PolicyHandle, PolicySettings, ServerPolicy};
