#!/usr/bin/env bash
# table-diff speed and memory bench (see benches/table_diff.rs).
#   scripts/bench-table-diff.sh            # 1M rows per node
#   ACE_BENCH_SCALE=100 scripts/bench-table-diff.sh   # 10M rows per node
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release -p ace-admin
cargo bench -p ace --bench table_diff
