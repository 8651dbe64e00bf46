#!/usr/bin/env bash
# HTTP load bench: ace-server against nginx, same certificates, same client.
#
#   scripts/bench-http.sh
#
# In one run: installs nginx and apache2-utils (ab) if missing, builds
# ace-server, ace-admin and the bench_task_seed example, makes a CA, a
# server certificate for localhost/127.0.0.1 and a client certificate
# (CN api_user) with `ace-admin pki`, seeds one finished task owned by
# api_user, starts ace-server and nginx (static JSON file of the same size
# as ACE's answer, `ssl_verify_client on`) on free ports under a temporary
# directory, and drives both with `ab -E client.pem`:
#
#   1. keep-alive requests/s:  ab -k -n $ACE_BENCH_KA_N -c $ACE_BENCH_C
#   2. full TLS handshakes/s:  ab    -n $ACE_BENCH_HS_N -c $ACE_BENCH_C
#      (no -k: every request is a new connection and a full handshake;
#      ab never offers a session to resume)
#
# Each measurement runs $ACE_BENCH_ROUNDS times, alternating ACE and nginx;
# the table shows the median. Targets: keep-alive >= 50% of nginx,
# handshakes >= 80% of nginx.
#
# Exit status: 1 when a request failed (ab's "Failed requests" or
# "Non-2xx responses" not 0, or fewer complete requests than asked), or a
# step failed; 0 otherwise. A missed target is printed as MISSED and only
# fails the run with ACE_BENCH_STRICT=1.
#
# Environment:
#   ACE_BENCH_KA_N=20000  ACE_BENCH_HS_N=2000  ACE_BENCH_C=8
#   ACE_BENCH_ROUNDS=3    ACE_BENCH_KEEP=1 (keep the temporary directory)
#   ACE_BENCH_HOLD=1      (set up, print the ports, keep both servers running
#                          until interrupted: for profiling)
#   ACE_BENCH_RUST_LOG    (RUST_LOG for ace-server; default: its own, info,
#                          one access line per request as in production)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

KA_N=${ACE_BENCH_KA_N:-20000}
HS_N=${ACE_BENCH_HS_N:-2000}
CONC=${ACE_BENCH_C:-8}
ROUNDS=${ACE_BENCH_ROUNDS:-3}
CN=api_user

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'bench-http: %s\n' "$*" >&2; exit 1; }

# --- Tools -----------------------------------------------------------------

export PATH="$PATH:/usr/sbin:/sbin"
if [ "$(id -u)" -eq 0 ]; then
    SUDO=()
elif command -v sudo >/dev/null; then
    SUDO=(sudo)
else
    SUDO=()
fi
if ! command -v nginx >/dev/null || ! command -v ab >/dev/null; then
    say "installing nginx and apache2-utils"
    export DEBIAN_FRONTEND=noninteractive
    if ! "${SUDO[@]}" apt-get install -y nginx apache2-utils; then
        "${SUDO[@]}" apt-get update
        "${SUDO[@]}" apt-get install -y nginx apache2-utils
    fi
    command -v nginx >/dev/null && command -v ab >/dev/null \
        || die "nginx or ab still missing after apt-get install"
fi
for tool in curl python3 openssl; do
    command -v "$tool" >/dev/null || die "$tool is needed"
done

say "building ace-server, ace-admin and the bench_task_seed example (release)"
cargo build --release -p ace-admin -p ace-server
cargo build --release -p ace --example bench_task_seed
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release
ACE_ADMIN=$BIN/ace-admin
ACE_SERVER=$BIN/ace-server
SEED=$BIN/examples/bench_task_seed
for b in "$ACE_ADMIN" "$ACE_SERVER" "$SEED"; do
    [ -x "$b" ] || die "$b was not built"
done

# --- Working directory and cleanup -----------------------------------------

WORK=$(mktemp -d "${TMPDIR:-/tmp}/ace-bench-http.XXXXXX")
# nginx workers drop to an unprivileged user when started as root: they
# must be able to reach the static file.
chmod 755 "$WORK"
ACE_PID=
NGINX_PID=
cleanup() {
    local status=$?
    for pid in $ACE_PID $NGINX_PID; do
        if kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid" 2>/dev/null || true
        fi
    done
    for pid in $ACE_PID $NGINX_PID; do
        wait "$pid" 2>/dev/null || true
    done
    if [ "${ACE_BENCH_KEEP:-0}" = 1 ] || [ "$status" -ne 0 ]; then
        printf 'bench-http: files kept in %s\n' "$WORK" >&2
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}

wait_for_port() { # PORT PID NAME LOG
    for _ in $(seq 1 100); do
        kill -0 "$2" 2>/dev/null || { cat "$4" >&2; die "$3 exited at start"; }
        if python3 -c 'import socket,sys
socket.create_connection(("127.0.0.1", int(sys.argv[1])), 0.2).close()' "$1" 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    cat "$4" >&2
    die "$3 does not listen on port $1"
}

# --- Certificates -------------------------------------------------------------

say "certificates (ace-admin pki) in $WORK/pki"
PKI=$WORK/pki
"$ACE_ADMIN" pki --dir "$PKI" init --name "ACE bench CA" >/dev/null
"$ACE_ADMIN" pki --dir "$PKI" issue server localhost --san DNS:localhost,IP:127.0.0.1 >/dev/null
"$ACE_ADMIN" pki --dir "$PKI" issue client "$CN" >/dev/null
CA=$PKI/ca.crt
SERVER_CRT=$PKI/issued/localhost.crt
SERVER_KEY=$PKI/private/localhost.key
CLIENT_CRT=$PKI/issued/$CN.crt
CLIENT_KEY=$PKI/private/$CN.key
CLIENT_PEM=$WORK/client.pem # certificate and key in one file, for ab -E
cat "$CLIENT_CRT" "$CLIENT_KEY" >"$CLIENT_PEM"
chmod 600 "$CLIENT_PEM"
for f in "$CA" "$SERVER_CRT" "$SERVER_KEY" "$CLIENT_CRT" "$CLIENT_KEY"; do
    [ -s "$f" ] || die "ace-admin pki did not write $f"
done

# --- ace-server ------------------------------------------------------------

ACE_DIR=$WORK/ace
mkdir -p "$ACE_DIR/data"
ACE_PORT=$(free_port)
# The cluster is never contacted: GET tasks/{id} only reads the task store.
cat >"$ACE_DIR/pg_service.conf" <<EOF
[bench]
dbname=bench
user=$CN
port=1
sslmode=disable

[bench.n1]
host=127.0.0.1

[bench.n2]
host=127.0.0.1
EOF
cat >"$ACE_DIR/ace.yaml" <<EOF
default_cluster: bench
server:
  listen_address: "127.0.0.1"
  listen_port: $ACE_PORT
  tls_cert_file: "$SERVER_CRT"
  tls_key_file: "$SERVER_KEY"
  client_ca_file: "$CA"
  allowed_common_names: ["$CN"]
  taskstore_path: "$ACE_DIR/ace_tasks.db"
  data_dir: "$ACE_DIR/data"
EOF

say "seeding one finished task owned by $CN"
TASK_ID=$("$SEED" "$ACE_DIR/ace_tasks.db" "$CN")
[ -n "$TASK_ID" ] || die "bench_task_seed printed no task id"
API_PATH=/api/v1/tasks/$TASK_ID

say "starting ace-server on 127.0.0.1:$ACE_PORT"
(
    cd "$ACE_DIR"
    if [ -n "${ACE_BENCH_RUST_LOG:-}" ]; then export RUST_LOG=$ACE_BENCH_RUST_LOG; else unset RUST_LOG; fi
    export ACE_PGSERVICEFILE="$ACE_DIR/pg_service.conf"
    exec "$ACE_SERVER" --config "$ACE_DIR/ace.yaml"
) 2>"$ACE_DIR/server.log" >/dev/null &
ACE_PID=$!
wait_for_port "$ACE_PORT" "$ACE_PID" ace-server "$ACE_DIR/server.log"

BODY=$WORK/task.json
code=$(curl -sS --cert "$CLIENT_CRT" --key "$CLIENT_KEY" --cacert "$CA" \
    -o "$BODY" -w '%{http_code}' "https://127.0.0.1:$ACE_PORT$API_PATH")
[ "$code" = 200 ] || { cat "$BODY" >&2; die "ACE answered $code to GET $API_PATH"; }
BODY_BYTES=$(wc -c <"$BODY")
say "ACE answers GET $API_PATH with $BODY_BYTES bytes of JSON"

# --- nginx -----------------------------------------------------------------

NGX=$WORK/nginx
mkdir -p "$NGX/html/api/v1/tasks" "$NGX/tmp"
# The very bytes ACE answered, at the same path.
cp "$BODY" "$NGX/html$API_PATH"
chmod -R a+rX "$NGX/html"
NGINX_PORT=$(free_port)
cat >"$NGX/nginx.conf" <<EOF
worker_processes auto;
pid $NGX/nginx.pid;
error_log $NGX/error.log warn;
events { worker_connections 1024; }
http {
    access_log $NGX/access.log;
    client_body_temp_path $NGX/tmp/body;
    proxy_temp_path $NGX/tmp/proxy;
    fastcgi_temp_path $NGX/tmp/fastcgi;
    uwsgi_temp_path $NGX/tmp/uwsgi;
    scgi_temp_path $NGX/tmp/scgi;
    default_type application/json;
    keepalive_timeout 120s;
    keepalive_requests 1000000;
    server {
        listen 127.0.0.1:$NGINX_PORT ssl;
        ssl_certificate $SERVER_CRT;
        ssl_certificate_key $SERVER_KEY;
        ssl_client_certificate $CA;
        ssl_verify_client on;
        ssl_protocols TLSv1.2 TLSv1.3;
        root $NGX/html;
        location /api/v1/tasks/ {
            add_header Cache-Control no-store;
        }
    }
}
EOF
say "starting nginx on 127.0.0.1:$NGINX_PORT"
nginx -e "$NGX/error.log" -p "$NGX" -c "$NGX/nginx.conf" -g 'daemon off;' \
    >"$NGX/stdout.log" 2>&1 &
NGINX_PID=$!
wait_for_port "$NGINX_PORT" "$NGINX_PID" nginx "$NGX/error.log"
code=$(curl -sS --cert "$CLIENT_CRT" --key "$CLIENT_KEY" --cacert "$CA" \
    -o "$WORK/nginx-answer.json" -w '%{http_code}' "https://127.0.0.1:$NGINX_PORT$API_PATH")
[ "$code" = 200 ] || die "nginx answered $code to GET $API_PATH"
cmp -s "$BODY" "$WORK/nginx-answer.json" || die "nginx does not serve ACE's answer"
# Both must refuse a client without a certificate.
for port in "$ACE_PORT" "$NGINX_PORT"; do
    code=$(curl -s --cacert "$CA" -o /dev/null -w '%{http_code}' \
        "https://127.0.0.1:$port$API_PATH" || true)
    case $code in 2??) die "port $port answered $code without a client certificate" ;; esac
done

if [ "${ACE_BENCH_HOLD:-0}" = 1 ]; then
    # For profiling: leave both servers running until interrupted.
    echo "ace-server: pid $ACE_PID, https://127.0.0.1:$ACE_PORT$API_PATH"
    echo "nginx:      pid $NGINX_PID, https://127.0.0.1:$NGINX_PORT$API_PATH"
    echo "client:     ab -E $CLIENT_PEM; curl --cert $CLIENT_CRT --key $CLIENT_KEY --cacert $CA"
    wait "$ACE_PID"
    exit 0
fi

# --- Measurements ----------------------------------------------------------

# run_ab NAME PORT N [ab options...]: runs ab, checks it, prints requests/s.
run_ab() {
    local name=$1 port=$2 n=$3
    shift 3
    local out=$WORK/ab-$name.txt
    if ! ab "$@" -q -n "$n" -c "$CONC" -E "$CLIENT_PEM" \
        "https://127.0.0.1:$port$API_PATH" >"$out" 2>&1; then
        cat "$out" >&2
        die "ab failed ($name)"
    fi
    local complete failed non2xx rps
    complete=$(awk -F: '/^Complete requests/ {gsub(/ /, "", $2); print $2}' "$out")
    failed=$(awk -F: '/^Failed requests/ {gsub(/ /, "", $2); print $2}' "$out")
    non2xx=$(awk -F: '/^Non-2xx responses/ {gsub(/ /, "", $2); print $2}' "$out")
    rps=$(awk '/^Requests per second/ {print $4}' "$out")
    if [ "${complete:-0}" != "$n" ] || [ "${failed:-x}" != 0 ] || [ "${non2xx:-0}" != 0 ] \
        || [ -z "$rps" ]; then
        cat "$out" >&2
        die "$name: complete=${complete:-?}/$n failed=${failed:-?} non-2xx=${non2xx:-0}"
    fi
    cp "$out" "$WORK/ab-$name-last.txt"
    printf '%s\n' "$rps"
}

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

say "warm-up"
run_ab warm-ace "$ACE_PORT" 1000 -k >/dev/null
run_ab warm-nginx "$NGINX_PORT" 1000 -k >/dev/null

ace_ka=() ngx_ka=() ace_hs=() ngx_hs=()
for round in $(seq 1 "$ROUNDS"); do
    say "round $round/$ROUNDS: keep-alive, $KA_N requests, $CONC at once"
    ace_ka+=("$(run_ab ace-ka "$ACE_PORT" "$KA_N" -k)")
    ngx_ka+=("$(run_ab nginx-ka "$NGINX_PORT" "$KA_N" -k)")
    say "round $round/$ROUNDS: full handshakes, $HS_N connections, $CONC at once"
    ace_hs+=("$(run_ab ace-hs "$ACE_PORT" "$HS_N")")
    ngx_hs+=("$(run_ab nginx-hs "$NGINX_PORT" "$HS_N")")
done
kill -0 "$ACE_PID" 2>/dev/null || die "ace-server died during the bench"
kill -0 "$NGINX_PID" 2>/dev/null || die "nginx died during the bench"

A_KA=$(median "${ace_ka[@]}")
N_KA=$(median "${ngx_ka[@]}")
A_HS=$(median "${ace_hs[@]}")
N_HS=$(median "${ngx_hs[@]}")
ACE_TLS=$(openssl s_client -connect "127.0.0.1:$ACE_PORT" -cert "$CLIENT_CRT" -key "$CLIENT_KEY" \
    -CAfile "$CA" </dev/null 2>/dev/null | sed -n 's/^New, //p' | head -1 || true)
NGX_TLS=$(openssl s_client -connect "127.0.0.1:$NGINX_PORT" -cert "$CLIENT_CRT" -key "$CLIENT_KEY" \
    -CAfile "$CA" </dev/null 2>/dev/null | sed -n 's/^New, //p' | head -1 || true)

verdict() { # ACE NGINX TARGET_PERCENT
    awk -v a="$1" -v n="$2" -v t="$3" 'BEGIN {
        r = 100 * a / n
        printf "%6.1f%%  >= %d%%  %s", r, t, (r >= t ? "ok" : "MISSED")
    }'
}
KA_V=$(verdict "$A_KA" "$N_KA" 50)
HS_V=$(verdict "$A_HS" "$N_HS" 80)

echo
echo "HTTP bench: GET $API_PATH ($BODY_BYTES-byte JSON), mTLS, ab -c $CONC -E client.pem"
echo "machine: $(nproc) CPUs; $(nginx -v 2>&1 | sed 's/.*: //'); $(ab -V | head -1 | sed 's/,.*//;s/This is //')"
echo "TLS (openssl s_client): ace-server ${ACE_TLS:-?}; nginx ${NGX_TLS:-?}"
echo "median of $ROUNDS rounds"
echo
printf '%-34s %12s %12s %8s  %7s  %s\n' "" "ace-server" "nginx" "ratio" "target" ""
printf '%-34s %12.0f %12.0f %s\n' "keep-alive requests/s (-k -n $KA_N)" "$A_KA" "$N_KA" "$KA_V"
printf '%-34s %12.0f %12.0f %s\n' "full handshakes/s (-n $HS_N)" "$A_HS" "$N_HS" "$HS_V"
echo
echo "rounds: ace keep-alive ${ace_ka[*]}; nginx keep-alive ${ngx_ka[*]}"
echo "        ace handshakes ${ace_hs[*]}; nginx handshakes ${ngx_hs[*]}"

if [ "${ACE_BENCH_STRICT:-0}" = 1 ]; then
    case "$KA_V $HS_V" in *MISSED*) die "a target was missed" ;; esac
fi
