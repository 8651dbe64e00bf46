//! Connections to cluster nodes and role-scoped work.
//!
//! ACE never holds an API caller's private key, so it connects to every node
//! with its own service credentials (password, passfile, or ACE's client
//! certificate) and then works as the caller's role. This crate is the only
//! place that opens node connections and switches roles.
//!
//! - [`NodeSession`]: one sqlx pool per node, built from the resolved
//!   `pg_service.conf` settings. TLS follows libpq's `sslmode` exactly and
//!   trusts only `sslrootcert` (see [`tls`](crate::tls) for the table);
//!   every connection pins the settings of [`PINNED_SETTINGS`] (UTC, ISO
//!   dates, full float digits, hex bytea) so equal data prints equally.
//! - [`Scope`] and [`RoleTx`]: a unit of work is one transaction: ACE's
//!   privileged set-up, then `SET LOCAL ROLE`, checked with `current_user`,
//!   then the caller's work. Because the switch is transaction-local, a
//!   pooled connection never carries a caller's role to the next borrower.
//! - [`ClusterSession`]: the sessions of the selected nodes, connected in
//!   parallel, with the preflight checks (role exists, ACE may switch to it,
//!   table privileges) run on every node before any work.
//!
//! Failures are a [`SessionError`] that names the node and the broken link.
//!
//! ```no_run
//! # async fn demo(node: &ace_config::Node) -> Result<(), ace_session::SessionError> {
//! use ace_session::{NodeSession, Scope, SessionSettings};
//!
//! let session = NodeSession::connect(node, &SessionSettings::default()).await?;
//! session.check_role("api_user").await?;
//! let mut work = session.begin(&Scope::read_only(Some("api_user"))).await?;
//! let (me,): (String,) = sqlx::query_as("SELECT current_user::text")
//!     .fetch_one(work.conn())
//!     .await
//!     .map_err(|e| ace_session::SessionError::Query { node: work.node().into(), source: e })?;
//! assert_eq!(me, "api_user");
//! work.commit().await?;
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]

mod cluster;
mod error;
mod ident;
mod node;
mod proxy;
mod scope;
pub mod tls;

pub use cluster::ClusterSession;
pub use error::{Result, SessionError, TlsFailure, sql_state};
pub use ident::{display_ident, display_qualified, quote_ident, quote_qualified};
pub use node::{NodeSession, PINNED_SETTINGS, SessionSettings};
pub use proxy::Keepalives;
pub use scope::{Access, RoleTx, Scope};
