//! Throw-away PostgreSQL clusters and an in-process PKI for ACE tests.
//!
//! Every layer of ACE above configuration is tested against real PostgreSQL
//! servers that authenticate ACE with client certificates, over real TLS.
//! This crate provides both halves:
//!
//! - [`pki`]: a certificate authority in memory ([`TestCa`]) issuing server
//!   and client certificates, the bad kinds (expired, not yet valid, no CN,
//!   from another CA) and CRLs (fresh or expired).
//! - [`cluster`]: [`TestCluster`], 1 to 5 PostgreSQL nodes on free loopback
//!   ports, each in its own temporary directory, configured the way the
//!   certificates-and-mTLS guide says (`ssl = on`, `hostssl ... cert
//!   clientcert=verify-full` through a `pg_ident.conf` map, `hostnossl ...
//!   scram-sha-256` for password mode), with the roles `ace_user`,
//!   `api_user` and `admin_user`.
//!
//! Servers are stopped when the cluster is dropped, also when a test panics,
//! and a watchdog stops them even if the test process is killed.
//!
//! ```no_run
//! # async fn demo() -> ace_testkit::Result<()> {
//! let cluster = ace_testkit::TestCluster::start(3).await?;
//! let pool = cluster.node(0).pool_as_ace_user().await?;
//! let (user,): (String,) = sqlx::query_as("SELECT current_user::text")
//!     .fetch_one(&pool)
//!     .await?;
//! assert_eq!(user, "ace_user");
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]

pub mod cluster;
pub mod pki;

use std::path::PathBuf;

pub use cluster::{TestCluster, TestNode};
pub use pki::{Issued, TestCa};

/// What can go wrong while building test certificates or clusters.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// rcgen refused to build a certificate or CRL.
    #[error("certificate generation failed: {0}")]
    Rcgen(#[from] rcgen::Error),
    /// A file or directory could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The path at fault.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The server programs or the OS user to run them as are missing, or a
    /// path could not be handed to that user.
    #[error(transparent)]
    PgNode(#[from] ace_pgnode::Error),
    /// A command (initdb, the server) failed.
    #[error("{what} failed: {detail}")]
    Command {
        /// What was being run.
        what: String,
        /// Its output or exit status.
        detail: String,
    },
    /// The server did not accept connections in time.
    #[error("node {node} did not start within {seconds} s; server log:\n{log}")]
    StartTimeout {
        /// Node name.
        node: String,
        /// How long we waited.
        seconds: u64,
        /// The tail of the server log.
        log: String,
    },
    /// A SQL statement of the set-up failed.
    #[error("database error: {0}")]
    Sql(#[from] sqlx::Error),
    /// The requested number of nodes is outside 1..=5.
    #[error("a test cluster has 1 to 5 nodes, not {0}")]
    NodeCount(usize),
}

/// Result with the testkit [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
