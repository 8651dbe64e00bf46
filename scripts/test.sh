#!/usr/bin/env bash
# The test command of the README: set up a fresh Debian machine (PostgreSQL
# server binaries, EasyRSA, curl) and run every test of the workspace against
# real PostgreSQL servers over real TLS. Extra arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
cargo test --workspace --all-targets "$@"
cargo test --workspace --doc

# Every server a test started must be gone, and its directory with it.
leftover=$(pgrep -af 'ace-testkit-' || true)
if [ -n "$leftover" ]; then
    echo "test.sh: PostgreSQL processes outlived the tests:" >&2
    echo "$leftover" >&2
    exit 1
fi
dirs=$(find "${TMPDIR:-/tmp}" -maxdepth 1 -name 'ace-testkit-*' 2>/dev/null || true)
if [ -n "$dirs" ]; then
    echo "test.sh: test directories left behind:" >&2
    echo "$dirs" >&2
    exit 1
fi
echo "test.sh: no server or test directory left behind"
