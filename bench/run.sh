#!/usr/bin/env bash
# Load benchmarks of the Kyros service, side by side with a bare axum baseline, in one run on
# this machine. Writes docs/benchmarks.md (machine, commands, table, targets met / not met).
#
#   bench/run.sh                     # full run (15 s per row, 10 000 WebSocket connections)
#   bench/run.sh --short             # smoke test (3 s per row, 1 000 connections, criterion --quick)
#   bench/run.sh --out FILE          # write the report elsewhere (default docs/benchmarks.md)
#   bench/run.sh --duration S --ws-conns N --ws-events K --limiter-keys N --no-pg
#   bench/run.sh --no-build          # reuse the binaries of the previous build
#
# Needs: wrk (installed from Debian when missing), curl, jq; PostgreSQL at 127.0.0.1:5432 (user
# postgres, trust) and Redis at 127.0.0.1:6379 for the PostgreSQL + Redis rows (skipped with a
# note when either is down, or with --no-pg).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

SHORT=0
OUT=docs/benchmarks.md
DURATION=""
WS_CONNS=""
WS_EVENTS=""
LIMITER_KEYS=1000000
PG=1
BUILD=1
while [ $# -gt 0 ]; do
  case "$1" in
    --short) SHORT=1 ;;
    --out) OUT=$2; shift ;;
    --duration) DURATION=$2; shift ;;
    --ws-conns) WS_CONNS=$2; shift ;;
    --ws-events) WS_EVENTS=$2; shift ;;
    --limiter-keys) LIMITER_KEYS=$2; shift ;;
    --no-pg) PG=0 ;;
    --no-build) BUILD=0 ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
if [ "$SHORT" = 1 ]; then
  DURATION=${DURATION:-3}; WARMUP=1; WS_CONNS=${WS_CONNS:-1000}; WS_EVENTS=${WS_EVENTS:-5}
  CRITERION_ARGS=(--quick)
else
  DURATION=${DURATION:-15}; WARMUP=3; WS_CONNS=${WS_CONNS:-10000}; WS_EVENTS=${WS_EVENTS:-20}
  CRITERION_ARGS=()
fi

# Load generator settings: one wrk thread, so that on 2 cores the server keeps most of the CPU.
WRK_THREADS=1
WRK_CONNS=32
FLOOD_CONNS=64   # concurrent logins during the flood
PROBE_CONNS=4    # authenticated GETs measured during the flood

log() { printf '\n== %s\n' "$*" >&2; }

install_if_missing() {
  local missing=()
  for tool in "$@"; do command -v "$tool" >/dev/null 2>&1 || missing+=("$tool"); done
  [ ${#missing[@]} -eq 0 ] && return
  log "installing ${missing[*]} from Debian"
  if [ "$(id -u)" = 0 ]; then
    apt-get install -y "${missing[@]}" >/dev/null || { apt-get update >/dev/null && apt-get install -y "${missing[@]}" >/dev/null; }
  else
    sudo apt-get install -y "${missing[@]}" >/dev/null
  fi
}
install_if_missing wrk curl jq

# 10 000 WebSocket connections need as many descriptors, in the server and in the client.
HARD=$(ulimit -Hn)
if [ "$HARD" = unlimited ] || [ "$HARD" -gt 65536 ]; then HARD=65536; fi
ulimit -n "$HARD"

WORK=$(mktemp -d /tmp/kyros-bench.XXXXXX)
RESULTS=$WORK/rows.tsv
: >"$RESULTS"
SERVER_PID=""
PGDB="kyros_bench_$$"
REDIS_PREFIX="kyros-bench-$$:"
PG_CREATED=0

cleanup() {
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  if [ "$PG_CREATED" = 1 ]; then
    dropdb -h 127.0.0.1 -U postgres --if-exists "$PGDB" 2>/dev/null || true
    redis-cli -h 127.0.0.1 --scan --pattern "${REDIS_PREFIX}*" 2>/dev/null |
      xargs -r -n 500 redis-cli -h 127.0.0.1 del >/dev/null 2>&1 || true
  fi
  echo "logs kept in $WORK" >&2
}
trap cleanup EXIT

if [ "$BUILD" = 1 ]; then
  log "building release binaries"
  cargo build --release --bin kyros --example baseline --example wsload --example limiter_rss >&2
fi
KYROS=$ROOT/target/release/kyros
BASELINE=$ROOT/target/release/examples/baseline
WSLOAD=$ROOT/target/release/examples/wsload
LIMITER_RSS=$ROOT/target/release/examples/limiter_rss

SECRET=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
BENCH_USER=bench
BENCH_PASS='Bench-Passw0rd-for-load-tests!'
LOGIN_BODY=$(printf '{"username":"%s","password":"%s"}' "$BENCH_USER" "$BENCH_PASS")

# The service's environment for a backend (sqlite | pg). Budgets are huge so every request pays
# for a limiter decision but none is refused. Runs in $WORK so no developer .env is read.
kyros_env() {
  local backend=$1
  local common=(ENVIRONMENT=local SECRET_KEY="$SECRET" KYROS_DATA_DIR="$WORK/data-$backend"
    LOG_LEVEL="${BENCH_LOG_LEVEL:-INFO}"
    RATE_LIMIT_REQUESTS=1000000 RATE_LIMIT_WINDOW=1
    KYROS_ANON_RATE_LIMIT_REQUESTS=1000000 KYROS_ANON_RATE_LIMIT_WINDOW=1
    AUTH_RATE_LIMIT_REQUESTS=1000000 AUTH_RATE_LIMIT_WINDOW=1)
  if [ "$backend" = pg ]; then
    printf '%s\n' "${common[@]}" DATABASE_URL="postgres://postgres@127.0.0.1:5432/$PGDB" \
      REDIS_URL=redis://127.0.0.1:6379 REDIS_KEY_PREFIX="$REDIS_PREFIX"
  else
    printf '%s\n' "${common[@]}"
  fi
}

kyros_cmd() {
  local backend=$1; shift
  local vars=()
  mapfile -t vars < <(kyros_env "$backend")
  (cd "$WORK" && env -u DATABASE_URL -u REDIS_URL -u REDIS_HOST "${vars[@]}" "$KYROS" "$@")
}

wait_http() {
  local url=$1
  for _ in $(seq 1 300); do
    curl -fs -o /dev/null "$url" && return 0
    kill -0 "$SERVER_PID" 2>/dev/null || { echo "server exited; see $WORK/*.log" >&2; exit 1; }
    sleep 0.2
  done
  echo "no answer from $url" >&2; exit 1
}

PORT=18181
start_kyros() {
  local backend=$1 name=$2
  PORT=$((PORT + 1))
  local vars=()
  mapfile -t vars < <(kyros_env "$backend")
  (cd "$WORK" && exec env -u DATABASE_URL -u REDIS_URL -u REDIS_HOST "${vars[@]}" \
    "$KYROS" serve --bind "127.0.0.1:$PORT") >"$WORK/server-$name.log" 2>&1 &
  SERVER_PID=$!
  BASE=http://127.0.0.1:$PORT
  wait_http "$BASE/health"
}

start_baseline() {
  PORT=$((PORT + 1))
  "$BASELINE" "127.0.0.1:$PORT" >"$WORK/server-baseline.log" 2>&1 &
  SERVER_PID=$!
  BASE=http://127.0.0.1:$PORT
  wait_http "$BASE/health"
}

stop_server() {
  kill -TERM "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=""
}

hwm_mib() { awk '/^VmHWM:/ {printf "%.0f", $2/1024}' "/proc/$1/status"; }
rss_mib() { awk '/^VmRSS:/ {printf "%.0f", $2/1024}' "/proc/$1/status"; }

# wrk_run LOGNAME DURATION URL [wrk args...]; request shape from KYROS_WRK_* variables.
# Sets R_RPS R_P50 R_P99 (ms) R_ERR (non-2xx/3xx + socket errors) R_REQ.
wrk_run() {
  local name secs=$2 url=$3
  name=$(printf '%s' "$1" | tr -c 'A-Za-z0-9_-' '_')
  shift 3
  wrk -s "$ROOT/bench/wrk.lua" --latency -d "${secs}s" "$@" "$url" >"$WORK/wrk-$name.log" 2>&1 || true
  local line
  line=$(grep '^KYROS ' "$WORK/wrk-$name.log" || true)
  if [ -z "$line" ]; then
    echo "wrk failed for $name:" >&2; cat "$WORK/wrk-$name.log" >&2; exit 1
  fi
  eval "$(echo "${line#KYROS }" | tr ' ' '\n' | sed 's/^/W_/')"
  R_REQ=$W_requests
  R_RPS=$(awk -v r="$W_requests" -v d="$W_duration_us" 'BEGIN {printf "%.0f", r / (d / 1e6)}')
  R_P50=$(awk -v v="$W_p50_us" 'BEGIN {printf "%.2f", v / 1000}')
  R_P99=$(awk -v v="$W_p99_us" 'BEGIN {printf "%.2f", v / 1000}')
  R_ERR=$((W_status_errors + W_socket_errors))
}

# measure ROWNAME URL: warm-up, measured run, peak RSS; one line in $RESULTS.
measure() {
  local row=$1 url=$2
  wrk_run "$row-warmup" "$WARMUP" "$url" -t"$WRK_THREADS" -c"$WRK_CONNS" >/dev/null
  wrk_run "$row" "$DURATION" "$url" -t"$WRK_THREADS" -c"$WRK_CONNS"
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$row" "$R_RPS" "$R_P50" "$R_P99" "$(hwm_mib "$SERVER_PID")" \
    "$R_ERR" "$R_REQ" >>"$RESULTS"
  printf '  %-44s %8s req/s  p50 %6s ms  p99 %6s ms  errors %s\n' "$row" "$R_RPS" "$R_P50" "$R_P99" "$R_ERR" >&2
}

with_header() { export KYROS_WRK_HEADER1=$1; }
plain() { unset KYROS_WRK_METHOD KYROS_WRK_BODY KYROS_WRK_HEADER1 KYROS_WRK_HEADER2 KYROS_WRK_HEADER3 KYROS_WRK_HEADER4; }
plain

# Per-thread CPU ticks of a process: "tid comm ticks", oldest thread first.
thread_ticks() {
  local pid=$1 t stat
  for t in /proc/"$pid"/task/*; do
    stat=$(cat "$t/stat" 2>/dev/null) || continue
    stat=${stat##*) }
    # After "pid (comm) ": state ppid ... utime is the 12th field, stime the 13th.
    echo "${t##*/} $(tr ' ' '_' <"$t/comm") $(echo "$stat" | awk '{print $12 + $13}')"
  done | sort -n
}

# Creates the bench user, an API key, a job, a token and a session cookie on a backend.
# Sets TOKEN_<b> APIKEY_<b> JOB_<b> COOKIE_<b>.
setup_backend() {
  local b=$1
  printf '%s\n' "$BENCH_PASS" | kyros_cmd "$b" user create --username "$BENCH_USER" \
    --email bench@example.org --role admin --password-stdin >"$WORK/setup-$b.log" 2>&1
  local key
  key=$(kyros_cmd "$b" apikey create --owner "$BENCH_USER" --name bench --scopes jobs:read,jobs:write 2>>"$WORK/setup-$b.log")
  start_kyros "$b" "setup-$b"
  local token job cookie
  token=$(curl -fs -X POST "$BASE/auth/login" -H 'Content-Type: application/json' -d "$LOGIN_BODY" | jq -r .access_token)
  job=$(curl -fs -X POST "$BASE/api/v1/jobs" -H "Authorization: Bearer $token" \
    -H 'Content-Type: application/json' -d '{"title":"benchmark job","description":"read by every GET row"}' | jq -r .id)
  cookie=$(curl -fs -D - -o /dev/null -X POST "$BASE/auth/session" -H 'Content-Type: application/json' \
    -d "$LOGIN_BODY" | tr -d '\r' | sed -n 's/^[Ss]et-[Cc]ookie: \(kyros_session=[^;]*\).*/\1/p')
  for h in "Authorization: Bearer $token" "X-API-Key: $key" "Cookie: $cookie"; do
    local code
    code=$(curl -s -o /dev/null -w '%{http_code}' "$BASE/api/v1/jobs/$job" -H "$h")
    [ "$code" = 200 ] || { echo "setup check failed ($b, ${h%%:*}): HTTP $code" >&2; exit 1; }
  done
  stop_server
  printf -v "TOKEN_$b" '%s' "$token"
  printf -v "APIKEY_$b" '%s' "$key"
  printf -v "JOB_$b" '%s' "$job"
  printf -v "COOKIE_$b" '%s' "$cookie"
}

get_rows() {
  local b=$1 label=$2 token key job cookie
  token=TOKEN_$b; key=APIKEY_$b; job=JOB_$b; cookie=COOKIE_$b
  for kind in bearer apikey cookie; do
    case $kind in
      bearer) with_header "Authorization: Bearer ${!token}"; title="bearer token" ;;
      apikey) with_header "X-API-Key: ${!key}"; title="API key" ;;
      cookie) with_header "Cookie: ${!cookie}"; title="cookie session" ;;
    esac
    start_kyros "$b" "get-$kind-$b"
    measure "GET /api/v1/jobs/{id}, $title, $label" "$BASE/api/v1/jobs/${!job}"
    stop_server
  done
  plain
}

# ---------------------------------------------------------------------------------------------
log "machine"
NPROC=$(nproc)
CPU_MODEL=$(lscpu 2>/dev/null | sed -n 's/^Model name:[[:space:]]*//p' | head -n 1)
MEM_TOTAL=$(awk '/^MemTotal:/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)
KERNEL=$(uname -r)
RUSTC=$(rustc -V)
WRK_VERSION=$( (wrk -v 2>&1 || true) | head -n 1 | sed "s/ Copyright.*//")
LOADAVG=$(cut -d' ' -f1-3 /proc/loadavg)
STARTED=$(date -u '+%Y-%m-%d %H:%M UTC')
echo "$NPROC cores, $CPU_MODEL, $MEM_TOTAL, Linux $KERNEL, $RUSTC, $WRK_VERSION, load $LOADAVG" >&2

PG_OK=0
if [ "$PG" = 1 ] && pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null && redis-cli -h 127.0.0.1 ping >/dev/null 2>&1; then
  PG_OK=1
  PG_VERSION=$(psql -h 127.0.0.1 -U postgres -tAc 'show server_version' 2>/dev/null | cut -d' ' -f1)
  REDIS_VERSION=$(redis-cli -h 127.0.0.1 info server 2>/dev/null | tr -d '\r' | sed -n 's/^redis_version://p')
fi

log "setting up users, API keys, jobs and sessions"
setup_backend sqlite
if [ "$PG_OK" = 1 ]; then
  createdb -h 127.0.0.1 -U postgres "$PGDB"
  PG_CREATED=1
  setup_backend pg
fi
HASH_PARAMS=$(sqlite3 "$WORK/data-sqlite/"*.db "select password_hash from users where username='$BENCH_USER'" 2>/dev/null |
  cut -d'$' -f2-4 | tr '$' ' ' || true)
if [ -z "$HASH_PARAMS" ] && [ "$PG_OK" = 1 ]; then
  HASH_PARAMS=$(psql -h 127.0.0.1 -U postgres -d "$PGDB" -tAc "select password_hash from users where username='$BENCH_USER'" |
    cut -d'$' -f2-4 | tr '$' ' ')
fi
HASH_PARAMS=${HASH_PARAMS:-"argon2id (KYROS_ARGON2_* defaults: m=19456,t=2,p=1)"}

log "throughput rows (${DURATION} s each, wrk -t$WRK_THREADS -c$WRK_CONNS)"
start_baseline
measure "baseline: bare axum GET /health" "$BASE/health"
stop_server

start_kyros sqlite health
measure "GET /health, full middleware chain" "$BASE/health"
stop_server

get_rows sqlite "SQLite + memory"
if [ "$PG_OK" = 1 ]; then
  get_rows pg "PostgreSQL + Redis"
fi

log "logins"
start_kyros sqlite login
export KYROS_WRK_METHOD=POST KYROS_WRK_BODY="$LOGIN_BODY"
wrk_run login-warmup "$WARMUP" "$BASE/auth/login" -t1 -c"$NPROC" --timeout 30s
wrk_run login "$DURATION" "$BASE/auth/login" -t1 -c"$NPROC" --timeout 30s
printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "POST /auth/login (logins/s), SQLite" "$R_RPS" "$R_P50" "$R_P99" \
  "$(hwm_mib "$SERVER_PID")" "$R_ERR" "$R_REQ" >>"$RESULTS"
LOGIN_RPS=$R_RPS
echo "  logins/s $R_RPS  p50 $R_P50 ms  p99 $R_P99 ms  errors $R_ERR" >&2
plain
stop_server

log "login flood with authenticated GETs measured during it"
start_kyros sqlite flood
with_header "Authorization: Bearer $TOKEN_sqlite"
wrk_run probe-warmup "$WARMUP" "$BASE/api/v1/jobs/$JOB_sqlite" -t1 -c"$PROBE_CONNS"
wrk_run probe-alone "$DURATION" "$BASE/api/v1/jobs/$JOB_sqlite" -t1 -c"$PROBE_CONNS"
ALONE_RPS=$R_RPS ALONE_P50=$R_P50 ALONE_P99=$R_P99
plain
(
  export KYROS_WRK_METHOD=POST KYROS_WRK_BODY="$LOGIN_BODY"
  exec wrk -s "$ROOT/bench/wrk.lua" --latency -d "$((DURATION + WARMUP + 2))s" -t1 -c"$FLOOD_CONNS" \
    --timeout 60s "$BASE/auth/login" >"$WORK/wrk-flood.log" 2>&1
) &
FLOOD_PID=$!
sleep "$WARMUP"
thread_ticks "$SERVER_PID" >"$WORK/ticks-before"
with_header "Authorization: Bearer $TOKEN_sqlite"
wrk_run probe-during-flood "$DURATION" "$BASE/api/v1/jobs/$JOB_sqlite" -t1 -c"$PROBE_CONNS"
thread_ticks "$SERVER_PID" >"$WORK/ticks-after"
FLOOD_RPS=$R_RPS FLOOD_P50=$R_P50 FLOOD_P99=$R_P99 FLOOD_ERR=$R_ERR
plain
wait "$FLOOD_PID" || true
FLOOD_LOGINS=$(sed -n 's/^KYROS requests=\([0-9]*\) duration_us=\([0-9]*\).*/\1 \2/p' "$WORK/wrk-flood.log" |
  awk '{printf "%.0f", $1 / ($2 / 1e6)}')
# CPU seconds per thread class during the measured window. The runtime's worker threads are the
# first NPROC tokio threads ("tokio-rt-worker", or "tokio-runtime-w" in older tokio; they start
# with the runtime); later ones of that name are the blocking pool, where spawn_blocking
# (password hashing) runs.
CLK_TCK=$(getconf CLK_TCK)
read -r CPU_WORKERS CPU_BLOCKING CPU_OTHER < <(awk -v n="$NPROC" -v hz="$CLK_TCK" '
    NR == FNR { before[$1] = $3; next }
    { d = $3 - before[$1]; if ($2 ~ /^tokio-r/) { seen++; if (seen <= n) w += d; else b += d } else o += d }
    END { printf "%.1f %.1f %.1f\n", w / hz, b / hz, o / hz }' "$WORK/ticks-before" "$WORK/ticks-after")
FLOOD_HWM=$(hwm_mib "$SERVER_PID")
stop_server
echo "  GET alone p99 $ALONE_P99 ms; during flood: p50 $FLOOD_P50 ms p99 $FLOOD_P99 ms, $FLOOD_LOGINS logins/s; CPU s workers $CPU_WORKERS blocking $CPU_BLOCKING other $CPU_OTHER" >&2

log "WebSocket: $WS_CONNS connections, $WS_EVENTS events"
start_kyros sqlite ws
WS_IDLE_RSS=$(rss_mib "$SERVER_PID")
"$WSLOAD" --base "$BASE" --token "$TOKEN_sqlite" --conns "$WS_CONNS" --events "$WS_EVENTS" \
  --pid "$SERVER_PID" >"$WORK/wsload.out" 2>"$WORK/wsload.err" || { cat "$WORK/wsload.err" >&2; exit 1; }
stop_server
cat "$WORK/wsload.out" >&2
ws() { sed -n "s/^$1=//p" "$WORK/wsload.out" | head -n 1; }

log "in-memory limiter with $LIMITER_KEYS distinct keys"
"$LIMITER_RSS" --keys "$LIMITER_KEYS" >"$WORK/limiter.out"
cat "$WORK/limiter.out" >&2
lim() { sed -n "s/^$1=//p" "$WORK/limiter.out" | head -n 1; }

log "criterion micro-benchmarks (cargo bench --bench micro -- ${CRITERION_ARGS[*]:-})"
cargo bench --bench micro -- "${CRITERION_ARGS[@]}" >"$WORK/criterion.log" 2>&1 ||
  { cat "$WORK/criterion.log" >&2; exit 1; }
grep -E 'time:|SKIPPED' "$WORK/criterion.log" >&2 || true

# ---------------------------------------------------------------------------------------------
REPORT=$WORK/report.md
BASE_RPS=$(awk -F'\t' 'NR == 1 {print $2}' "$RESULTS")
row_rps() { awk -F'\t' -v n="$1" '$1 == n {print $2}' "$RESULTS"; }
row_err() { awk -F'\t' -v n="$1" '$1 == n {print $6}' "$RESULTS"; }
pct() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0 && a != "") printf "%.0f", 100 * a / b; else print "n/a" }'; }
# verdict VALUE OP LIMIT: "met" / "**not met**" / "not measured"
verdict() {
  awk -v v="$1" -v op="$2" -v l="$3" 'BEGIN {
    if (v == "" || v == "n/a" || v == "nan" || v == "NaN") { print "not measured"; exit }
    ok = (op == ">=") ? (v + 0 >= l + 0) : (v + 0 < l + 0)
    print ok ? "met" : "**not met**" }'
}

SQL_BEARER="GET /api/v1/jobs/{id}, bearer token, SQLite + memory"
PG_BEARER="GET /api/v1/jobs/{id}, bearer token, PostgreSQL + Redis"
SQL_RATIO=$(pct "$(row_rps "$SQL_BEARER")" "$BASE_RPS")
PG_RATIO=$( [ "$PG_OK" = 1 ] && pct "$(row_rps "$PG_BEARER")" "$BASE_RPS" || echo n/a)
LIM_GROWTH=$(awk -v a="$(lim limiter_rss_full_kib)" -v b="$(lim limiter_rss_before_kib)" 'BEGIN {printf "%.0f", (a - b) / 1024}')
LIM_LEFT=$(awk -v a="$(lim limiter_rss_after_eviction_kib)" -v b="$(lim limiter_rss_before_kib)" 'BEGIN {printf "%.0f", (a - b) / 1024}')
LIM_SECOND=$(awk -v a="$(lim limiter_rss_second_flood_kib)" -v b="$(lim limiter_rss_before_kib)" 'BEGIN {printf "%.0f", (a - b) / 1024}')
# "Returning toward the baseline": at most half of the growth is still held after eviction.
LIM_RETURN=$(awk -v g="$LIM_GROWTH" -v l="$LIM_LEFT" 'BEGIN { if (g <= 0) print 0; else printf "%.0f", 100 * l / g }')
WS_RSS=$(awk -v k="$(ws ws_server_rss_kib)" 'BEGIN { if (k != "") printf "%.0f", k / 1024 }')
WS_HWM=$(awk -v k="$(ws ws_server_hwm_after_kib)" 'BEGIN { if (k != "") printf "%.0f", k / 1024 }')
WS_OPEN=$(ws ws_connections_open)
WS_P99=$(ws ws_p99_ms)
WS_DELIVERED=$(ws ws_delivered)
WS_EXPECTED=$(ws ws_expected)
WS_ALL_OPEN=$( [ "${WS_OPEN:-0}" -ge 10000 ] && echo 1 || echo 0)
WS_ALL_DELIVERED=$( [ -n "$WS_EXPECTED" ] && [ "$WS_DELIVERED" = "$WS_EXPECTED" ] && [ "$WS_EXPECTED" -gt 0 ] && echo 1 || echo 0)

{
  echo "# Benchmarks"
  echo
  echo "Generated by \`bench/run.sh$( [ "$SHORT" = 1 ] && echo ' --short')\` on $STARTED. Every figure below comes from"
  echo "this one run of the script on the machine described here; the file is rewritten as a whole by"
  echo "each run (the explanatory section at the end is the script's template \`bench/notes.md\`)."
  if [ "$SHORT" = 1 ]; then
    echo
    echo "> **Short mode** (smoke test: ${DURATION} s per row, $WS_CONNS WebSocket connections, criterion"
    echo "> \`--quick\`). Figures are indicative only; run \`bench/run.sh\` for the real measurement."
  fi
  echo
  echo "## Machine"
  echo
  echo "| | |"
  echo "|---|---|"
  echo "| CPU | $NPROC cores (\`nproc\`), $CPU_MODEL |"
  echo "| memory | $MEM_TOTAL |"
  echo "| kernel | Linux $KERNEL |"
  echo "| toolchain | $RUSTC, \`--release\` (thin LTO, one codegen unit) |"
  echo "| load generator | $WRK_VERSION, on the same machine |"
  echo "| load average at start | $LOADAVG |"
  [ "$PG_OK" = 1 ] && echo "| PostgreSQL / Redis | $PG_VERSION / $REDIS_VERSION, local (127.0.0.1) |"
  echo "| password hash | $HASH_PARAMS; at most $NPROC hashes at a time (one per core) |"
  echo
  echo "## Commands"
  echo
  echo '```sh'
  echo "bench/run.sh$( [ "$SHORT" = 1 ] && echo ' --short')   # this report"
  echo "cargo build --release --bin kyros --example baseline --example wsload --example limiter_rss"
  echo "wrk -s bench/wrk.lua --latency -t$WRK_THREADS -c$WRK_CONNS -d${DURATION}s URL   # each throughput row, after a ${WARMUP} s warm-up"
  echo "wrk ... -t1 -c$NPROC --timeout 30s POST /auth/login                            # logins/s"
  echo "wrk ... -t1 -c$FLOOD_CONNS POST /auth/login  &  wrk ... -t1 -c$PROBE_CONNS GET /api/v1/jobs/{id}   # flood"
  echo "target/release/examples/wsload --conns $WS_CONNS --events $WS_EVENTS --pid SERVER_PID ..."
  echo "target/release/examples/limiter_rss --keys $LIMITER_KEYS"
  echo "cargo bench --bench micro -- ${CRITERION_ARGS[*]:-}"
  echo '```'
  echo
  echo "Each row runs against a freshly started server (so its peak RSS, \`VmHWM\`, is its own), with"
  echo "rate limits raised so that every request pays for a limiter decision but none is refused."
  echo
  echo "## Throughput and latency"
  echo
  echo "| row | req/s | p50 | p99 | peak RSS | vs baseline | errors |"
  echo "|---|---:|---:|---:|---:|---:|---:|"
  while IFS=$'\t' read -r name rps p50 p99 hwm err total; do
    case $name in
      POST*) ratio="—" ;;  # bounded by the password hash, not comparable
      *) ratio="$(pct "$rps" "$BASE_RPS") %" ;;
    esac
    echo "| $name | $rps | $p50 ms | $p99 ms | $hwm MiB | $ratio | $err / $total |"
  done <"$RESULTS"
  if [ "$PG_OK" != 1 ]; then
    echo
    echo "PostgreSQL + Redis rows skipped: server not reachable, or \`--no-pg\`."
  fi
  echo
  echo "\"errors\" counts non-2xx/3xx answers and socket errors out of all requests; a row with errors"
  echo "did not measure what it claims."
  echo
  echo "## Login flood"
  echo
  echo "$FLOOD_CONNS connections sending \`POST /auth/login\` (valid credentials) as fast as they are answered,"
  echo "while $PROBE_CONNS connections send authenticated \`GET /api/v1/jobs/{id}\` (bearer, SQLite + memory)."
  echo
  echo "| | value |"
  echo "|---|---:|"
  echo "| logins/s during the flood | $FLOOD_LOGINS |"
  echo "| GET req/s, p50, p99 without flood | $ALONE_RPS, $ALONE_P50 ms, $ALONE_P99 ms |"
  echo "| GET req/s, p50, p99 during the flood | $FLOOD_RPS, $FLOOD_P50 ms, $FLOOD_P99 ms (errors $FLOOD_ERR) |"
  echo "| server CPU during the measured ${DURATION} s: async worker threads | $CPU_WORKERS s |"
  echo "| … blocking-pool threads (password hashing) | $CPU_BLOCKING s |"
  echo "| … other threads (SQLite workers, main) | $CPU_OTHER s |"
  echo "| server peak RSS | $FLOOD_HWM MiB |"
  echo
  echo "## WebSocket"
  echo
  echo "| | value |"
  echo "|---|---:|"
  echo "| connections opened (authenticated, subscribed) | $WS_OPEN of $(ws ws_connections_requested) in $(ws ws_open_seconds) s, $(ws ws_connect_failures) failed |"
  echo "| server RSS idle / with all connections open | $WS_IDLE_RSS MiB / $WS_RSS MiB |"
  echo "| server peak RSS (after the events) | $WS_HWM MiB |"
  echo "| events published / delivered / expected | $(ws ws_events_published) / $WS_DELIVERED / $WS_EXPECTED |"
  echo "| fan-out latency p50 / p99 / max | $(ws ws_p50_ms) ms / $WS_P99 ms / $(ws ws_max_ms) ms |"
  [ -n "$(ws ws_first_failure)" ] && echo "| first connection failure | \`$(ws ws_first_failure)\` |"
  echo
  echo "## In-memory limiter, $LIMITER_KEYS distinct client keys"
  echo
  echo "| | value |"
  echo "|---|---:|"
  echo "| policy | $(lim limiter_policy) |"
  echo "| decisions/s (one task, service's \`Limiter::check\`) | $(lim limiter_decisions_per_sec) |"
  echo "| keys tracked after the flood | $(lim limiter_tracked) |"
  echo "| RSS before / after the flood | $(( $(lim limiter_rss_before_kib) / 1024 )) MiB / $(( $(lim limiter_rss_full_kib) / 1024 )) MiB (+$LIM_GROWTH MiB) |"
  echo "| after idle eviction (service's 15 s task, $(lim limiter_evicted_after_s) s) | $(( $(lim limiter_rss_after_eviction_kib) / 1024 )) MiB (+$LIM_LEFT MiB, ${LIM_RETURN} % of the growth kept), $(lim limiter_tracked_after_eviction) keys left |"
  echo "| after a second flood of $LIMITER_KEYS other keys | $(( $(lim limiter_rss_second_flood_kib) / 1024 )) MiB (+$LIM_SECOND MiB) |"
  echo
  echo "## Micro-benchmarks (criterion)"
  echo
  echo "| benchmark | time (low / estimate / high) |"
  echo "|---|---|"
  awk '
    /time:/ {
      name = $0; sub(/time:.*/, "", name); gsub(/^[ \t]+|[ \t]+$/, "", name)
      if (name == "") name = prev
      v = $0; sub(/.*\[/, "", v); sub(/\].*/, "", v)
      n = split(v, f, " ")
      printf "| %s | %s %s / **%s %s** / %s %s |\n", name, f[1], f[2], f[3], f[4], f[5], f[6]
    }
    { if ($0 !~ /^[ \t]/ && $0 != "") prev = $0 }' "$WORK/criterion.log"
  grep -h '^SKIPPED' "$WORK/criterion.log" | sed 's/^/\n/' || true
  echo
  echo "## Targets"
  echo
  echo "Computed by the script from the figures above."
  echo
  echo "| target | measured | verdict |"
  echo "|---|---:|---|"
  echo "| authenticated GET, SQLite + memory ≥ 60 % of the baseline's req/s | $SQL_RATIO % | $(verdict "$SQL_RATIO" '>=' 60)$( [ "$(row_err "$SQL_BEARER")" = 0 ] || echo ' (row had errors)') |"
  echo "| authenticated GET, PostgreSQL + Redis ≥ 35 % | $PG_RATIO % | $(verdict "$PG_RATIO" '>=' 35) |"
  echo "| GET p99 during a login flood < 20 ms | $FLOOD_P99 ms | $(verdict "$FLOOD_P99" '<' 20) |"
  echo "| password hashing off the async workers (worker CPU ≪ blocking-pool CPU during the flood) | workers $CPU_WORKERS s, blocking pool $CPU_BLOCKING s | $(awk -v w="$CPU_WORKERS" -v b="$CPU_BLOCKING" 'BEGIN { print (b > 0 && w < b) ? "met" : "**not met**" }') |"
  echo "| limiter: RSS growth with $LIMITER_KEYS keys < 200 MB | +$LIM_GROWTH MiB | $(verdict "$LIM_GROWTH" '<' 191)$( [ "$LIMITER_KEYS" -ge 1000000 ] || echo " (at $LIMITER_KEYS keys)") |"
  echo "| limiter: RSS returns toward the baseline after idle eviction (≤ 50 % of the growth kept) | ${LIM_RETURN} % kept | $(verdict "$LIM_RETURN" '<' 50.0001) |"
  echo "| WebSocket: 10 000 authenticated connections under 1 GB RSS | $WS_OPEN open, $WS_RSS MiB | $( [ "$WS_ALL_OPEN" = 1 ] && verdict "$WS_RSS" '<' 954 || echo "not judged (only $WS_OPEN connections)") |"
  echo "| WebSocket: event to all connections, p99 < 250 ms | $WS_P99 ms, $WS_DELIVERED / $WS_EXPECTED delivered | $( [ "$WS_ALL_DELIVERED" = 1 ] && verdict "$WS_P99" '<' 250 || echo '**not met** (not every event reached every connection)')$( [ "$WS_ALL_OPEN" = 1 ] || echo " (at $WS_OPEN connections)") |"
  echo
  echo "MB in the targets are 10^6 bytes (200 MB = 191 MiB, 1 GB = 954 MiB); RSS figures are MiB."
  echo
  cat "$ROOT/bench/notes.md"
} >"$REPORT"

mkdir -p "$(dirname "$OUT")"
# The scale section (bench/scale.sh) is measured by its own script: kept as it is.
if [ -f "$OUT" ] && grep -q '^<!-- scale: written by bench/scale.sh -->' "$OUT"; then
  { echo; sed -n '/^<!-- scale: written by bench\/scale.sh -->/,/^<!-- \/scale -->/p' "$OUT"; } >>"$REPORT"
fi
cp "$REPORT" "$OUT"
cat "$REPORT"
echo >&2
echo "written to $OUT" >&2
