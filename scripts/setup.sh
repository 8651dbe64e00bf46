#!/usr/bin/env bash
# Installs what ACE's tests and demo need on a Debian machine that has only
# Rust: PostgreSQL server binaries, EasyRSA, curl and openssl. Runs apt-get
# as root, or through sudo. Does nothing when everything is present.
set -euo pipefail

missing=()
have_pg_server() {
    command -v initdb >/dev/null 2>&1 && return 0
    if command -v pg_config >/dev/null 2>&1 && [ -x "$(pg_config --bindir)/initdb" ]; then
        return 0
    fi
    compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null
}
have_pg_server || missing+=(postgresql postgresql-contrib)
command -v pgbench >/dev/null 2>&1 || missing+=(postgresql-contrib)
[ -x /usr/share/easy-rsa/easyrsa ] || missing+=(easy-rsa)
command -v curl >/dev/null 2>&1 || missing+=(curl)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)

if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]}" >&2
    sudo=()
    [ "$(id -u)" -eq 0 ] || sudo=(sudo)
    export DEBIAN_FRONTEND=noninteractive
    "${sudo[@]}" apt-get update -qq
    "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Debian's package starts a cluster of its own; ACE's tests do not use it.
if [ "$(id -u)" -eq 0 ] && ! id postgres >/dev/null 2>&1; then
    echo "setup: running as root needs the OS user 'postgres' (from the postgresql package)" >&2
    exit 1
fi
