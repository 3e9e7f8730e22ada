#!/usr/bin/env bash
# Scale rows: whether the request path's costs stay flat as data grows. For each engine (SQLite +
# memory, PostgreSQL + Redis) the same five requests are measured on a small database and again
# after seeding a large one with the service's own store code (bench/scale_seed.rs):
#
#   - GET /api/v1/jobs/{id}                      a point read
#   - GET /api/v1/jobs?limit=100                 the first page (an administrator: every job)
#   - GET /api/v1/jobs?limit=100&after=ID        a deep keyset page (the cursor ~100 000 jobs in)
#   - POST /api/v1/agents/claim                  a claim by an agent (highest priority, oldest),
#                                                after CLAIM_POOL pending jobs are added, so that
#                                                every claim of the row hands out a job
#   - GET /api/v1/orchestrator/events/stream?once=true with Last-Event-ID 100 events back
#
# plus, for contrast, the same deep page by offset (`skip`), which has to walk the rows before it.
# Writes the "Scale" section of docs/benchmarks.md (between its markers; bench/run.sh keeps it).
#
#   bench/scale.sh [--jobs 1000000] [--owners 10000] [--events 10000000] [--duration 5] [--no-pg]
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

JOBS=1000000
OWNERS=10000
EVENTS=10000000
DURATION=5
PG=1
while [ $# -gt 0 ]; do
  case "$1" in
    --jobs) JOBS=$2; shift ;;
    --owners) OWNERS=$2; shift ;;
    --events) EVENTS=$2; shift ;;
    --duration) DURATION=$2; shift ;;
    --no-pg) PG=0 ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
SMALL_JOBS=1000 SMALL_OWNERS=10 SMALL_EVENTS=1000
DEEP=100000 # the cursor's position in the list (at most the number of jobs)
CLAIM_POOL=40000 # pending jobs added before each claim row: more than it can claim in 6 s

log() { printf '\n== %s\n' "$*" >&2; }
command -v wrk >/dev/null || { echo "wrk is needed (apt-get install wrk)" >&2; exit 1; }

log "building release binaries"
cargo build --release --bin kyros --example scale_seed >&2
KYROS=$ROOT/target/release/kyros
SEED=$ROOT/target/release/examples/scale_seed

WORK=$(mktemp -d /tmp/kyros-scale.XXXXXX)
RESULTS=$WORK/rows.tsv
: >"$RESULTS"
SERVER_PID=""
PGDB="kyros_scale_$$"
PG_CREATED=0
cleanup() {
  if [ -n "$SERVER_PID" ]; then kill -KILL "$SERVER_PID" 2>/dev/null || true; fi
  if [ "$PG_CREATED" = 1 ]; then dropdb -h 127.0.0.1 -U postgres --if-exists "$PGDB" 2>/dev/null || true; fi
  redis-cli -h 127.0.0.1 --scan --pattern "kyros-scale-$$:*" 2>/dev/null |
    xargs -r -n 500 redis-cli -h 127.0.0.1 del >/dev/null 2>&1 || true
  echo "logs kept in $WORK" >&2
}
trap cleanup EXIT

SECRET=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
PASS=$(head -c 18 /dev/urandom | od -An -tx1 | tr -d ' \n')
ENV_COMMON=(ENVIRONMENT=local SECRET_KEY="$SECRET" LOG_LEVEL=WARNING
  RATE_LIMIT_REQUESTS=1000000 RATE_LIMIT_WINDOW=1
  KYROS_ANON_RATE_LIMIT_REQUESTS=1000000 KYROS_ANON_RATE_LIMIT_WINDOW=1
  AUTH_RATE_LIMIT_REQUESTS=1000000 AUTH_RATE_LIMIT_WINDOW=1)

engine_env() { # engine -> env assignments
  if [ "$1" = pg ]; then
    printf '%s\n' "${ENV_COMMON[@]}" KYROS_DATA_DIR="$WORK/data-pg" \
      DATABASE_URL="postgres://postgres@127.0.0.1:5432/$PGDB" REDIS_URL=redis://127.0.0.1:6379 \
      REDIS_KEY_PREFIX="kyros-scale-$$:"
  else
    printf '%s\n' "${ENV_COMMON[@]}" KYROS_DATA_DIR="$WORK/data-sqlite"
  fi
}
run_in() { # engine cmd...
  local e=$1; shift
  local vars=()
  mapfile -t vars < <(engine_env "$e")
  (cd "$WORK" && env -u DATABASE_URL -u REDIS_URL "${vars[@]}" "$@")
}
sql() { # engine query -> rows
  if [ "$1" = pg ]; then psql -h 127.0.0.1 -U postgres -d "$PGDB" -tAc "$2"
  else sqlite3 "$WORK/data-sqlite/kyros.db" "$2"; fi
}

PORT=$((20000 + $$ % 20000))
start() {
  PORT=$((PORT + 1))
  local vars=()
  mapfile -t vars < <(engine_env "$1")
  # `exec` all the way down, so that $! is the server itself and `stop` ends it (a subshell in
  # between kept the server of the previous rows running, and answering, while the next were
  # measured).
  (cd "$WORK" && exec env -u DATABASE_URL -u REDIS_URL "${vars[@]}" "$KYROS" serve \
    --bind "127.0.0.1:$PORT") >"$WORK/server-$1-$2.log" 2>&1 &
  SERVER_PID=$!
  BASE=http://127.0.0.1:$PORT
  for _ in $(seq 1 300); do curl -fs -o /dev/null "$BASE/health" && return; sleep 0.2; done
  echo "server did not start; see $WORK" >&2; exit 1
}
stop() {
  kill -TERM "$SERVER_PID" 2>/dev/null || true
  for _ in $(seq 1 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.2; done
  kill -KILL "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=""
}

# row ENGINE SIZE NAME URL [header...]: 1 s warm-up, DURATION s measured (wrk -t1 -c32).
row() {
  local engine=$1 size=$2 name=$3 url=$4; shift 4
  local i=1 h
  unset KYROS_WRK_METHOD KYROS_WRK_HEADER1 KYROS_WRK_HEADER2 KYROS_WRK_HEADER3 KYROS_WRK_COUNT_EMPTY
  for h in "$@"; do
    case $h in
      POST) export KYROS_WRK_METHOD=POST ;;
      EMPTY-IS-ERROR) export KYROS_WRK_COUNT_EMPTY=1 ;;
      *) export "KYROS_WRK_HEADER$i=$h"; i=$((i + 1)) ;;
    esac
  done
  wrk -s "$ROOT/bench/wrk.lua" -d1s -t1 -c32 "$url" >/dev/null 2>&1 || true
  wrk -s "$ROOT/bench/wrk.lua" --latency -d"${DURATION}s" -t1 -c32 "$url" >"$WORK/wrk.log" 2>&1 || true
  local line
  line=$(grep '^KYROS ' "$WORK/wrk.log") || { cat "$WORK/wrk.log" >&2; exit 1; }
  eval "$(echo "${line#KYROS }" | tr ' ' '\n' | sed 's/^/W_/')"
  local rps p99
  rps=$(awk -v r="$W_requests" -v d="$W_duration_us" 'BEGIN {printf "%.0f", r / (d / 1e6)}')
  p99=$(awk -v v="$W_p99_us" 'BEGIN {printf "%.2f", v / 1000}')
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$engine" "$size" "$name" "$rps" "$p99" \
    "$((W_status_errors + W_socket_errors + W_empty))" >>"$RESULTS"
  printf '  %-6s %-6s %-28s %8s req/s  p99 %7s ms  errors %s\n' "$engine" "$size" "$name" "$rps" "$p99" \
    "$((W_status_errors + W_socket_errors + W_empty))" >&2
}

measure() { # engine size
  local e=$1 size=$2
  start "$e" "$size"
  local token job cursor last
  token=$(curl -fs -X POST "$BASE/auth/login" -H 'Content-Type: application/json' \
    -d "{\"username\":\"bench\",\"password\":\"$PASS\"}" | jq -r .access_token)
  if [ "$e" = pg ]; then
    job=$(sql pg "select id from jobs order by created_at desc limit 1")
  else
    job=$(sql sqlite "select lower(hex(id)) from jobs order by created_at desc limit 1" |
      sed -E 's/^(.{8})(.{4})(.{4})(.{4})(.{12})$/\1-\2-\3-\4-\5/')
  fi
  local n
  n=$(sql "$e" "select count(*) from jobs")
  # A full page after the cursor on either size: position DEEP, or 100 before the end.
  local deep=$(( DEEP < n - 100 ? DEEP : n - 100 ))
  if [ "$e" = pg ]; then
    cursor=$(sql pg "select id from jobs order by created_at desc, id desc offset $deep limit 1")
  else
    cursor=$(sql sqlite "select lower(hex(id)) from jobs order by created_at desc, id desc limit 1 offset $deep" |
      sed -E 's/^(.{8})(.{4})(.{4})(.{4})(.{12})$/\1-\2-\3-\4-\5/')
  fi
  last=$(sql "$e" "select coalesce(max(id), 0) from events")
  local auth="Authorization: Bearer $token"
  row "$e" "$size" "GET job by id" "$BASE/api/v1/jobs/$job" "$auth"
  row "$e" "$size" "first page (100)" "$BASE/api/v1/jobs?limit=100" "$auth"
  row "$e" "$size" "deep page, keyset" "$BASE/api/v1/jobs?limit=100&after=$cursor" "$auth"
  row "$e" "$size" "deep page, offset (skip)" "$BASE/api/v1/jobs?limit=100&skip=$deep" "$auth"
  row "$e" "$size" "SSE resume, 100 back" "$BASE/api/v1/orchestrator/events/stream?once=true" "$auth" \
    "Last-Event-ID: $((last > 100 ? last - 100 : 0))"
  # Every claim of the row must hand out a job: an empty queue answers 204 at a fraction of the
  # cost, which made the small database's claim row (200 pending jobs, gone in the warm-up) look
  # many times faster than the large one's. Each size gets the same pool of pending jobs first,
  # and a 204 during the row counts as an error.
  stop
  seed_pool "$e"
  start "$e" "$size-claims"
  row "$e" "$size" "claim" "$BASE/api/v1/agents/claim" "X-API-Key: $AGENT_KEY" POST EMPTY-IS-ERROR
  stop
  # The row's agent never comes back for the thousands of jobs it leased; an agent would have
  # completed them. Left leased, their leases (60 s) expire while the next rows run and turn
  # those rows into a measure of a mass expiry. Settle them as completed, outside the service.
  sql "$e" "UPDATE jobs SET status = 'completed', completed_at = updated_at, lease_owner = NULL, lease_expires_at = NULL, lease_token = NULL WHERE lease_owner IS NOT NULL" >/dev/null
}

# seed_pool ENGINE: CLAIM_POOL pending jobs of one new owner, for the claim row.
seed_pool() {
  log "$1: $CLAIM_POOL pending jobs for the claim row"
  run_in "$1" "$SEED" --jobs "$CLAIM_POOL" --owners 1 --events 0 --status pending >>"$WORK/seed-$1.txt"
}

seed() { # engine jobs owners events
  log "$1: seeding $2 jobs, $3 owners, $4 events"
  run_in "$1" "$SEED" --jobs "$2" --owners "$3" --events "$4" | tee -a "$WORK/seed-$1.txt" >&2
}

engine() {
  local e=$1
  printf '%s\n' "$PASS" | run_in "$e" "$KYROS" user create --username bench --email bench@example.org \
    --role admin --password-stdin >"$WORK/setup-$e.log" 2>&1
  AGENT_KEY=$(run_in "$e" "$KYROS" apikey create --owner bench --name agent --scopes jobs:claim,jobs:read 2>>"$WORK/setup-$e.log")
  seed "$e" "$SMALL_JOBS" "$SMALL_OWNERS" "$SMALL_EVENTS"
  measure "$e" small
  seed "$e" "$JOBS" "$OWNERS" "$EVENTS"
  measure "$e" large
  log "$e: query plans"
  {
    echo "$e"
    if [ "$e" = pg ]; then
      sql pg "analyze jobs; analyze events" >/dev/null
      sql pg "explain select * from jobs where (created_at, id) < (now(), gen_random_uuid()) order by created_at desc, id desc limit 100"
      sql pg "explain select * from jobs where status = 'pending' order by priority desc, created_at, id limit 1"
      sql pg "explain select * from events where id > 1000 and stream = 'orchestrator' order by id limit 1000"
    else
      sql sqlite "explain query plan select * from jobs where (created_at, id) < ('2100', x'00') order by created_at desc, id desc limit 100"
      sql sqlite "explain query plan select * from jobs where status = 'pending' order by priority desc, created_at, id limit 1"
      sql sqlite "explain query plan select * from events where id > 1000 and stream = 'orchestrator' order by id limit 1000"
    fi
  } >>"$WORK/plans.txt" 2>&1
}

engine sqlite
if [ "$PG" = 1 ] && pg_isready -h 127.0.0.1 -q && redis-cli -h 127.0.0.1 ping >/dev/null 2>&1; then
  createdb -h 127.0.0.1 -U postgres "$PGDB"
  PG_CREATED=1
  engine pg
fi

SECTION=$WORK/section.md
{
  echo "<!-- scale: written by bench/scale.sh -->"
  echo "## Scale"
  echo
  echo "Generated by \`bench/scale.sh --jobs $JOBS --owners $OWNERS --events $EVENTS\` on $(date -u '+%Y-%m-%d %H:%M UTC')."
  echo "Each row: \`wrk -t1 -c32\`, ${DURATION} s after a 1 s warm-up, bearer token of an administrator"
  echo "(the claim: an agent key), on a small database ($SMALL_JOBS jobs, $SMALL_OWNERS owners, $SMALL_EVENTS events)"
  echo "and on the same database after seeding the large one. Before each claim row $CLAIM_POOL pending"
  echo "jobs are added and the server restarted, so that every claim hands out a job; a 204"
  echo "(\"no job waiting\") counts as an error; after the row, the jobs it leased are marked completed"
  echo "in SQL (its agent never completes them, and their expiring leases would load the next rows)."
  echo "\"large / small\" is the ratio of req/s; the target"
  echo "(issue 16) is at most a 2× slowdown, i.e. ≥ 50 %."
  echo
  echo "| engine | request | small req/s | large req/s | large / small | large p99 | errors |"
  echo "|---|---|---:|---:|---:|---:|---:|"
  awk -F'\t' '
    $2 == "small" { small[$1 FS $3] = $4 }
    $2 == "large" { k = $1 FS $3; order[++n] = k; large[k] = $4; p99[k] = $5; err[k] = $6 }
    END {
      for (i = 1; i <= n; i++) {
        k = order[i]; split(k, p, FS)
        r = small[k] > 0 ? sprintf("%.0f %%", 100 * large[k] / small[k]) : "n/a"
        printf "| %s | %s | %s | %s | %s | %s ms | %s |\n", p[1], p[2], small[k], large[k], r, p99[k], err[k]
      }
    }' "$RESULTS"
  echo
  echo "Seeding (the service's store code: owners one by one, jobs and events in multi-row inserts of 2 000):"
  echo
  echo '```'
  cat "$WORK"/seed-*.txt
  echo '```'
  echo
  echo "Query plans on the large database:"
  echo
  echo '```'
  cat "$WORK/plans.txt"
  echo '```'
  echo "<!-- /scale -->"
} >"$SECTION"

OUT=docs/benchmarks.md
if grep -q '^<!-- scale: written by bench/scale.sh -->' "$OUT"; then
  awk -v f="$SECTION" '
    /^<!-- scale: written by bench\/scale.sh -->/ { while ((getline l < f) > 0) print l; skip = 1; next }
    /^<!-- \/scale -->/ { skip = 0; next }
    !skip' "$OUT" >"$WORK/out.md"
  cp "$WORK/out.md" "$OUT"
else
  { echo; cat "$SECTION"; } >>"$OUT"
fi
cat "$SECTION"
