//! Certificates, keys, CRLs and the client policy of the ACE API.
//!
//! This crate is the single place that decides who an API caller is: it loads
//! certificates, CA bundles, private keys and CRLs, builds the rustls server
//! configuration that requires and verifies client certificates, and turns a
//! verified certificate into an `Identity` whose role is the certificate CN.
//! It also issues certificates for `ace-admin pki`.

#![forbid(unsafe_code)]
