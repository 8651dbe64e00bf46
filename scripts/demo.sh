#!/usr/bin/env bash
# The demo command of the README: set up a fresh Debian machine (PostgreSQL
# server binaries, curl), build ace-admin and run `ace-admin demo`: a CA and
# certificates, PostgreSQL nodes with client-certificate authentication, a
# table with drift, the API server, and a diff, a repair from n1 and a rerun
# as api_user over mutual TLS. Arguments go to `ace-admin demo` (--dir,
# --nodes, --rows, --keep); without --dir a new directory under $TMPDIR is
# used, which the `postgres` OS user can reach when this runs as root.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh

args=("$@")
has_dir=no
for arg in "$@"; do
    case $arg in --dir | --dir=*) has_dir=yes ;; esac
done
if [ "$has_dir" = no ]; then
    args+=(--dir "${TMPDIR:-/tmp}/ace-demo-$(date +%Y%m%d-%H%M%S)")
fi
cargo run --quiet --release -p ace-admin -- demo "${args[@]}"
