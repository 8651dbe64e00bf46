//! Connections to cluster nodes and role-scoped work.
//!
//! ACE never holds an API caller's private key, so it connects to every node
//! with its own service credentials and then works as the caller's role. This
//! crate is the only place that opens node connections and switches roles:
//! user work runs in a transaction after `SET LOCAL ROLE`, so a pooled
//! connection can never carry a caller's role to the next borrower.

#![forbid(unsafe_code)]
