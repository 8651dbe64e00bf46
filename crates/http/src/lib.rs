//! The mutual-TLS HTTP API of ACE.
//!
//! A hyper 1 server behind rustls: every connection presents a client
//! certificate checked by the `ace-pki` policy, every request is routed under
//! `/api/v1`, and every task runs through the engine as the caller's role.

#![forbid(unsafe_code)]
