//! Throw-away PostgreSQL clusters and an in-process PKI for ACE tests.

#![forbid(unsafe_code)]
