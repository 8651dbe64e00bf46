//! The consistency operations of ACE.
//!
//! table-diff, table-rerun, table-repair, schema-diff and repset-diff, written
//! against role-scoped sessions from `ace-session`. Nothing here opens a
//! connection or switches a role by itself.

#![forbid(unsafe_code)]
