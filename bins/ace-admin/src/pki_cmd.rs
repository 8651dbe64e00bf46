//! `ace-admin pki`: the certificates guide's EasyRSA steps, built in.
//!
//! `init` makes a CA, `issue server|client` issues certificates, `revoke`
//! and `crl` withdraw them, `inspect` describes a certificate or CRL, and
//! `list` prints the CA's index. The work is done by `ace_pki::ca`; the
//! directory (`--dir`, default `./pki`) uses EasyRSA's layout, so an
//! EasyRSA PKI can be used here and the other way round. Private keys are
//! written 0600 in a 0700 directory and never printed.

use std::path::PathBuf;
use std::process::ExitCode;

use ace_pki::ca::{
    CaOptions, CertificateAuthority, DEFAULT_CA_DAYS, DEFAULT_CERT_DAYS, DEFAULT_CRL_DAYS,
    KeyAlgorithm, Status, SubjectAltName, parse_sans,
};
use ace_pki::inspect::{Report, format_time, inspect};
use anyhow::Context as _;
use clap::{Args, Subcommand, ValueEnum};

/// Make a CA, issue and revoke certificates, write CRLs, inspect files.
#[derive(Debug, Args)]
pub struct PkiArgs {
    /// The PKI directory (EasyRSA layout: ca.crt, private/, issued/,
    /// index.txt, crl.pem).
    #[arg(
        long,
        env = "ACE_PKI_DIR",
        value_name = "DIR",
        default_value = "pki",
        global = true
    )]
    dir: PathBuf,

    #[command(subcommand)]
    command: PkiCommand,
}

#[derive(Debug, Subcommand)]
enum PkiCommand {
    /// Create a CA: ca.crt and private/ca.key (0600).
    Init {
        /// The CA's common name.
        #[arg(long, default_value = "ACE CA")]
        name: String,
        /// Lifetime in days.
        #[arg(long, default_value_t = DEFAULT_CA_DAYS)]
        days: u32,
        /// Key algorithm of the CA and of the keys it issues.
        #[arg(long, value_enum, default_value_t = Algorithm::P256)]
        algo: Algorithm,
    },
    /// Issue a server or client certificate with a new key.
    #[command(subcommand)]
    Issue(IssueCommand),
    /// Revoke the valid certificate(s) with this CN, or the one with this
    /// serial (hex; prefix with `serial:` to skip the CN lookup). Run `pki
    /// crl` afterwards and reload the server.
    Revoke {
        /// A CN or a serial number.
        what: String,
    },
    /// Write crl.pem listing every revoked certificate.
    Crl {
        /// Days until the CRL's next update. The API server refuses every
        /// client once it has passed, so renew it before then.
        #[arg(long, default_value_t = DEFAULT_CRL_DAYS)]
        days: u32,
    },
    /// Describe a certificate (subject, SANs, key usage, validity, serial,
    /// issuer, pg_ident.conf line) or a CRL (entries, next update).
    Inspect {
        /// A PEM or DER certificate, bundle or CRL.
        file: PathBuf,
    },
    /// List the CA's index: every certificate issued, valid or revoked.
    List,
}

#[derive(Debug, Subcommand)]
enum IssueCommand {
    /// A server certificate (serverAuth): issued/NAME.crt, private/NAME.key.
    Server {
        /// The name (and CN), e.g. the host name.
        name: String,
        /// Subject alternative names, comma-separated: DNS:n1,IP:10.0.0.5
        /// [default: DNS:NAME].
        #[arg(long, value_name = "SANS")]
        san: Vec<String>,
        /// Lifetime in days.
        #[arg(long, default_value_t = DEFAULT_CERT_DAYS)]
        days: u32,
    },
    /// A client certificate (clientAuth) whose CN is the PostgreSQL role the
    /// caller acts as: issued/CN.crt, private/CN.key.
    Client {
        /// The CN: a PostgreSQL role name (at most 63 bytes).
        cn: String,
        /// Lifetime in days.
        #[arg(long, default_value_t = DEFAULT_CERT_DAYS)]
        days: u32,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Algorithm {
    /// ECDSA P-256.
    P256,
    /// ECDSA P-384.
    P384,
}

/// Runs `ace-admin pki ...`.
///
/// # Errors
///
/// Whatever `ace_pki` reports (missing CA, name already issued, unreadable
/// file, ...), with the PKI directory as context.
pub fn run(args: PkiArgs) -> anyhow::Result<ExitCode> {
    let dir = args.dir;
    let open = || {
        CertificateAuthority::open(&dir)
            .with_context(|| format!("opening the CA in {}", dir.display()))
    };
    match args.command {
        PkiCommand::Init { name, days, algo } => {
            let options = CaOptions {
                common_name: name,
                days,
                algorithm: match algo {
                    Algorithm::P256 => KeyAlgorithm::EcdsaP256,
                    Algorithm::P384 => KeyAlgorithm::EcdsaP384,
                },
            };
            let ca = CertificateAuthority::init(&dir, &options)?;
            say!("CA created: {}", ca.cert_path().display());
            say!(
                "CA key:     {} (0600)",
                dir.join("private/ca.key").display()
            );
        }
        PkiCommand::Issue(IssueCommand::Server { name, san, days }) => {
            let sans: Vec<SubjectAltName> = san
                .iter()
                .map(|list| parse_sans(list))
                .collect::<Result<Vec<_>, _>>()?
                .into_iter()
                .flatten()
                .collect();
            let issued = open()?.issue_server(&name, &sans, days)?;
            print_issued(&issued);
        }
        PkiCommand::Issue(IssueCommand::Client { cn, days }) => {
            let issued = open()?.issue_client(&cn, days)?;
            print_issued(&issued);
        }
        PkiCommand::Revoke { what } => {
            for entry in open()?.revoke(&what)? {
                say!(
                    "revoked: {} serial {}",
                    entry.common_name().unwrap_or("(no CN)"),
                    entry.serial
                );
            }
            say!("run `ace-admin pki crl` and reload the server to publish it");
        }
        PkiCommand::Crl { days } => {
            let path = open()?.write_crl(days)?;
            say!(
                "CRL written: {} (next update in {days} days)",
                path.display()
            );
        }
        PkiCommand::Inspect { file } => {
            let report = inspect(&file)?;
            say!("{}", report.to_string().trim_end());
            if let Report::Crls(crls) = &report {
                let now = time::OffsetDateTime::now_utc();
                if crls.iter().any(|c| c.next_update.is_some_and(|n| n <= now)) {
                    eprintln!(
                        "warning: this CRL has expired; the API server refuses every client with it"
                    );
                }
            }
        }
        PkiCommand::List => {
            let index = open()?.index()?;
            if index.is_empty() {
                say!("no certificates issued");
            }
            for entry in index {
                let status = match entry.status {
                    Status::Valid => "valid",
                    Status::Revoked => "revoked",
                    Status::Expired => "expired",
                };
                say!(
                    "{status:<8} {:<34} expires {}  {}",
                    entry.serial,
                    entry.expires.date(),
                    entry.subject
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_issued(issued: &ace_pki::ca::IssuedFiles) {
    say!("issued:      {}", issued.common_name);
    say!("certificate: {}", issued.cert_path.display());
    say!("key:         {} (0600)", issued.key_path.display());
    say!("serial:      {}", issued.serial);
    say!("not after:   {}", format_time(issued.not_after));
}

#[cfg(test)]
mod tests {
    //! The `ace-admin pki` round trip, in process: init, issue a server and
    //! two clients, revoke one, write a CRL, inspect, then a real TLS
    //! handshake on 127.0.0.1 with the files it wrote.

    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    use ace_pki::{PolicySettings, ServerPolicy};
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct TestCli {
        #[command(flatten)]
        pki: PkiArgs,
    }

    struct Scratch(PathBuf);

    impl Scratch {
        fn new() -> Self {
            static NEXT: AtomicU32 = AtomicU32::new(0);
            let dir = std::env::temp_dir().join(format!(
                "ace-admin-pki-{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::create_dir_all(&dir).unwrap();
            Scratch(dir)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn pki(dir: &Path, args: &[&str]) -> anyhow::Result<ExitCode> {
        let mut argv = vec!["pki", "--dir", dir.to_str().unwrap()];
        argv.extend_from_slice(args);
        run(TestCli::try_parse_from(argv)?.pki)
    }

    /// One TLS exchange: the client sends "hi", the server answers with the
    /// caller's role as the policy identifies it. Returns what the client
    /// read, or why it failed (under TLS 1.3 a refused client certificate
    /// surfaces on the first read).
    fn exchange(
        policy: &Arc<ServerPolicy>,
        ca: &Path,
        cert: &Path,
        key: &Path,
    ) -> Result<String, String> {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let policy = Arc::clone(policy);
        let server = std::thread::spawn(move || {
            let (tcp, _) = listener.accept().unwrap();
            let conn = rustls::ServerConnection::new(policy.server_config()).unwrap();
            let mut tls = rustls::StreamOwned::new(conn, tcp);
            let mut buf = [0u8; 2];
            if tls.read_exact(&mut buf).is_err() {
                return;
            }
            let answer = match policy.identify_connection(&tls.conn) {
                Ok(identity) => identity.role,
                Err(refusal) => format!("refused: {refusal}"),
            };
            let _ = tls.write_all(answer.as_bytes());
            tls.conn.send_close_notify();
            let _ = tls.flush();
        });

        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        for der in ace_pki::load::load_certificates(ca).unwrap() {
            roots.add(der).unwrap();
        }
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_client_auth_cert(
                ace_pki::load::load_certificates(cert).unwrap(),
                ace_pki::load::load_private_key(key).unwrap(),
            )
            .unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
        let tcp = TcpStream::connect(addr).unwrap();
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        let result = (|| {
            tls.write_all(b"hi").map_err(|e| format!("write: {e}"))?;
            let mut answer = String::new();
            tls.read_to_string(&mut answer)
                .map_err(|e| format!("read: {e}"))?;
            Ok(answer)
        })();
        drop(tls);
        server.join().unwrap();
        result
    }

    #[test]
    fn round_trip_and_handshake() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let scratch = Scratch::new();
        let dir = scratch.0.join("pki");
        let file = |rel: &str| dir.join(rel);

        pki(&dir, &["init", "--name", "Round Trip CA"]).unwrap();
        assert!(pki(&dir, &["init"]).is_err(), "a second init must refuse");
        pki(
            &dir,
            &[
                "issue",
                "server",
                "localhost",
                "--san",
                "DNS:localhost,IP:127.0.0.1",
            ],
        )
        .unwrap();
        pki(&dir, &["issue", "client", "api_user"]).unwrap();
        pki(&dir, &["issue", "client", "admin_user", "--days", "30"]).unwrap();
        let err = pki(&dir, &["issue", "client", "../escape"]).unwrap_err();
        assert!(err.to_string().contains("invalid name"), "{err:#}");
        for key in [
            "private/ca.key",
            "private/localhost.key",
            "private/api_user.key",
        ] {
            let mode = std::fs::metadata(file(key)).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{key}");
        }

        // Revoke admin_user by CN, then publish.
        let index = CertificateAuthority::open(&dir).unwrap().index().unwrap();
        let admin_serial = index
            .iter()
            .find(|e| e.common_name() == Some("admin_user"))
            .unwrap()
            .serial
            .clone();
        pki(&dir, &["revoke", "admin_user"]).unwrap();
        assert!(
            pki(&dir, &["revoke", "admin_user"]).is_err(),
            "nothing left to revoke"
        );
        pki(&dir, &["crl", "--days", "7"]).unwrap();
        pki(&dir, &["list"]).unwrap();

        // Inspect both kinds of file.
        pki(
            &dir,
            &["inspect", file("issued/api_user.crt").to_str().unwrap()],
        )
        .unwrap();
        pki(&dir, &["inspect", file("crl.pem").to_str().unwrap()]).unwrap();
        match inspect(&file("crl.pem")).unwrap() {
            Report::Crls(crls) => {
                assert_eq!(crls[0].entries.len(), 1);
                assert_eq!(crls[0].entries[0].0, admin_serial);
            }
            other => panic!("expected a CRL, got {other:?}"),
        }
        assert!(pki(&dir, &["inspect", file("private/ca.key").to_str().unwrap()]).is_err());

        // The server policy with the CLI's files.
        let mut settings = PolicySettings::new(
            file("issued/localhost.crt"),
            file("private/localhost.key"),
            file("ca.crt"),
        );
        settings.client_crl_files = vec![file("crl.pem")];
        let policy = Arc::new(ServerPolicy::load(&settings).unwrap());
        let ca = file("ca.crt");

        assert_eq!(
            exchange(
                &policy,
                &ca,
                &file("issued/api_user.crt"),
                &file("private/api_user.key")
            ),
            Ok("api_user".to_owned())
        );
        let revoked_cert = file(&format!("revoked/certs_by_serial/{admin_serial}.crt"));
        let revoked_key = file(&format!("revoked/private_by_serial/{admin_serial}.key"));
        assert!(exchange(&policy, &ca, &revoked_cert, &revoked_key).is_err());

        let chain = ace_pki::load::load_certificates(&file("issued/api_user.crt")).unwrap();
        assert_eq!(policy.identify(&chain).unwrap().role, "api_user");
    }
}
