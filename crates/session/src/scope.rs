//! Role-scoped units of work.
//!
//! A [`RoleTx`] is one transaction on one node, opened in this order:
//!
//! 1. `BEGIN`, or `BEGIN READ ONLY` for read-only scopes;
//! 2. ACE's privileged set-up, as ACE's own user (for example
//!    `SET LOCAL session_replication_role = replica` for repairs);
//! 3. `SET LOCAL ROLE <role>`, the role quoted as an identifier whatever it
//!    contains, then a check that `current_user` is that role.
//!
//! Only then is the transaction handed to the caller's work, through
//! [`RoleTx::conn`]. There is no other way to get a connection from this
//! crate, so user work cannot run on a connection that was not switched.
//! Every setting above is transaction-local: commit or rollback (also the
//! implicit rollback when a `RoleTx` is dropped) returns the connection to
//! the pool as ACE's user with the pinned defaults, so no caller's role or
//! setting reaches the next borrower.

use sqlx::pool::PoolConnection;
use sqlx::{Acquire, PgConnection, Postgres, Transaction};

use crate::error::{Result, SessionError, sql_state};
use crate::ident::quote_ident;
use crate::node::NodeSession;

/// Whether the work may write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// A `READ ONLY` transaction (diffs, reruns).
    ReadOnly,
    /// A read-write transaction (repairs).
    ReadWrite,
}

/// Who the work runs as and what ACE sets up first.
#[derive(Debug, Clone)]
pub struct Scope {
    role: Option<String>,
    access: Access,
    replica: bool,
}

impl Scope {
    /// Read-only work as `role` (an API caller's CN), or as ACE's own user
    /// when `None` (the CLI).
    pub fn read_only(role: Option<&str>) -> Self {
        Scope {
            role: role.map(str::to_owned),
            access: Access::ReadOnly,
            replica: false,
        }
    }

    /// Read-write work as `role`, or as ACE's own user when `None`.
    pub fn read_write(role: Option<&str>) -> Self {
        Scope {
            role: role.map(str::to_owned),
            access: Access::ReadWrite,
            replica: false,
        }
    }

    /// Privileged set-up: `SET LOCAL session_replication_role = replica`
    /// before the role switch, so triggers and rules do not fire (repairs).
    /// ACE's user needs `GRANT SET ON PARAMETER session_replication_role`.
    pub fn with_replica_role(mut self) -> Self {
        self.replica = true;
        self
    }

    /// The role the work runs as, if not ACE's own.
    pub fn role(&self) -> Option<&str> {
        self.role.as_deref()
    }

    /// Read-only or read-write.
    pub fn access(&self) -> Access {
        self.access
    }
}

/// A transaction on one node, already switched to the scope's role.
#[derive(Debug)]
pub struct RoleTx {
    node: String,
    role: Option<String>,
    tx: Transaction<'static, Postgres>,
}

impl RoleTx {
    pub(crate) async fn begin(
        session: &NodeSession,
        conn: PoolConnection<Postgres>,
        scope: &Scope,
    ) -> Result<Self> {
        let node = session.name().to_owned();
        let query = |e| SessionError::query(&node, e);
        let begin = match scope.access {
            Access::ReadOnly => "BEGIN READ ONLY",
            Access::ReadWrite => "BEGIN",
        };
        let mut tx = Transaction::begin(conn, Some(begin.into()))
            .await
            .map_err(query)?;
        // Privileged set-up runs as ACE's user, before the switch.
        if scope.replica {
            sqlx::query("SET LOCAL session_replication_role = replica")
                .execute(&mut *tx)
                .await
                .map_err(query)?;
        }
        if let Some(role) = &scope.role {
            let switch = format!("SET LOCAL ROLE {}", quote_ident(role));
            if let Err(error) = sqlx::query(&switch).execute(&mut *tx).await {
                return Err(match sql_state(&error) {
                    // 22023: role "x" does not exist
                    Some("22023") | Some("42704") => SessionError::RoleMissing {
                        node: node.clone(),
                        role: role.clone(),
                    },
                    // 42501: permission denied to set role "x"
                    Some("42501") => SessionError::NotMember {
                        node: node.clone(),
                        role: role.clone(),
                        ace_user: session.service_user().to_owned(),
                        role_ident: quote_ident(role),
                        ace_user_ident: quote_ident(session.service_user()),
                    },
                    _ => SessionError::query(&node, error),
                });
            }
            let actual: String = sqlx::query_scalar("SELECT current_user::text")
                .fetch_one(&mut *tx)
                .await
                .map_err(query)?;
            if &actual != role {
                return Err(SessionError::RoleSwitch {
                    node: node.clone(),
                    role: role.clone(),
                    actual,
                });
            }
        }
        tracing::debug!(node = %node, role = ?scope.role, access = ?scope.access, "unit of work begun");
        Ok(RoleTx {
            node,
            role: scope.role.clone(),
            tx,
        })
    }

    /// The node this transaction runs on.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The role the work runs as (`None`: ACE's own user).
    pub fn role(&self) -> Option<&str> {
        self.role.as_deref()
    }

    /// The connection, switched to the role, for the caller's statements.
    pub fn conn(&mut self) -> &mut PgConnection {
        &mut self.tx
    }

    /// A savepoint inside the unit of work.
    ///
    /// # Errors
    ///
    /// When the savepoint cannot be created.
    pub async fn savepoint(&mut self) -> Result<Transaction<'_, Postgres>> {
        let node = self.node.clone();
        self.tx
            .begin()
            .await
            .map_err(|e| SessionError::query(&node, e))
    }

    /// Commits the work.
    ///
    /// # Errors
    ///
    /// When the commit fails (the work is then rolled back by the server).
    pub async fn commit(self) -> Result<()> {
        let node = self.node;
        self.tx
            .commit()
            .await
            .map_err(|e| SessionError::query(&node, e))
    }

    /// Rolls the work back.
    ///
    /// # Errors
    ///
    /// When the connection fails during rollback (the server rolls back
    /// anyway when the connection closes).
    pub async fn rollback(self) -> Result<()> {
        let node = self.node;
        self.tx
            .rollback()
            .await
            .map_err(|e| SessionError::query(&node, e))
    }
}
