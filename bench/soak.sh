#!/usr/bin/env bash
# Soak test of a multi-instance deployment (PostgreSQL + Redis): K instances of `kyros serve`
# sharing one database, one Redis and one SECRET_KEY get a mixed workload for N minutes
# (bench/soak.rs: logins, cookie sessions with CSRF, jobs, agents, WebSocket subscribers, a
# password-guessing attacker and an anonymous flood). Writes the report to docs/reliability.md.
#
#   bench/soak.sh                              # 10 minutes, 3 instances
#   bench/soak.sh --minutes 1                  # smoke run
#   bench/soak.sh --minutes N --instances K --out FILE
#   bench/soak.sh --server-env MALLOC_MMAP_THRESHOLD_=1048576   # extra variable for the instances
#   bench/soak.sh … -- --users 12 --ws-per-instance 100   # extra arguments for bench/soak.rs
#
# Needs PostgreSQL at 127.0.0.1:5432 (user postgres, trust authentication; createdb/dropdb) and
# Redis at 127.0.0.1:6379 (redis-cli), curl. A fresh database and Redis key prefix are made for
# the run and removed afterwards. Exit code: 0 when every check passed, 1 when one failed, 2 when
# the run could not be made.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
COMMAND="bench/soak.sh${*:+ $*}"

MINUTES=10
INSTANCES=3
OUT=docs/reliability.md
EXTRA=()
SERVER_ENV=()
while [ $# -gt 0 ]; do
  case "$1" in
    --minutes) MINUTES=$2; shift ;;
    --instances) INSTANCES=$2; shift ;;
    --out) OUT=$2; shift ;;
    --server-env)
      # Shown in the report, so never a secret; the names the soak sets itself are refused.
      [[ "$2" =~ ^[A-Za-z_][A-Za-z0-9_]*= ]] || { echo "--server-env needs NAME=VALUE" >&2; exit 2; }
      case "${2%%=*}" in
        *SECRET*|*PASSWORD*|*TOKEN*|DATABASE_URL|REDIS_*|KYROS_BIND|KYROS_DATA_DIR|FIRST_SUPERUSER*)
          echo "--server-env cannot set ${2%%=*}" >&2; exit 2 ;;
      esac
      SERVER_ENV+=("$2"); shift ;;
    --) shift; EXTRA=("$@"); break ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
[[ "$MINUTES" =~ ^[0-9]+([.][0-9]+)?$ ]] || { echo "--minutes needs a number" >&2; exit 2; }
[[ "$INSTANCES" =~ ^[1-9][0-9]*$ ]] || { echo "--instances needs a positive whole number" >&2; exit 2; }
SECONDS_RUN=$(awk -v m="$MINUTES" 'BEGIN { s = int(m * 60 + 0.5); print (s < 10 ? 10 : s) }')

log() { printf '== %s\n' "$*" >&2; }

# The budgets of the deployment. Legitimate clients stay far below them (each simulated client
# has its own address, each user its own account); the attackers exceed them.
#  - general (authenticated users, the agents' API key, the WebSocket handshakes of the
#    subscribers, who are all the administrator): 200/s per principal with a burst of 1000;
#  - anonymous, by address: 2/s, capacity 130 — a user's address only sends its logins
#    (< 0.6/s), the flood sends 40/s;
#  - login-type endpoints, by address and by account: 1/s, capacity 60 — a user logs in about
#    once per cycle of 2–5 s (plus a cookie session every third cycle);
#  - adaptive penalty and lockout: the service's defaults;
#  - a job lease long enough that a loaded machine never lets one expire between claim and
#    completion (an expired lease hands the job out again, by design).
# /ws has no handshake budget of its own (Policy::WebSocket exists but the middleware counts
# upgrades under the general budget of the principal), so the general budget covers it.
BUDGETS=(
  RATE_LIMIT_ENABLED=true
  RATE_LIMIT_REQUESTS=12000 RATE_LIMIT_WINDOW=60 RATE_LIMIT_BURST=1000
  KYROS_ANON_RATE_LIMIT_REQUESTS=120 KYROS_ANON_RATE_LIMIT_WINDOW=60 KYROS_ANON_RATE_LIMIT_BURST=10
  AUTH_RATE_LIMIT_REQUESTS=60 AUTH_RATE_LIMIT_WINDOW=60
  KYROS_PENALTY_STRIKES=10 KYROS_PENALTY_WINDOW=600 KYROS_PENALTY_COOLING=900 KYROS_PENALTY_FACTOR=4
  KYROS_LOCKOUT_THRESHOLD=5 KYROS_LOCKOUT_BASE_SECONDS=60 KYROS_LOCKOUT_MAX_SECONDS=3600
  KYROS_JOB_LEASE_SECS=300
  ACCESS_TOKEN_EXPIRE_MINUTES=120
)

for tool in createdb dropdb psql redis-cli curl; do
  command -v "$tool" >/dev/null 2>&1 || { echo "$tool is needed (see --help)" >&2; exit 2; }
done
pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null || psql -h 127.0.0.1 -U postgres -tAc 'select 1' >/dev/null 2>&1 ||
  { echo "PostgreSQL is not answering at 127.0.0.1:5432" >&2; exit 2; }
[ "$(redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null)" = PONG ] ||
  { echo "Redis is not answering at 127.0.0.1:6379" >&2; exit 2; }

RUN_ID=$(od -An -tx1 -N6 /dev/urandom | tr -d ' \n')
WORK=$(mktemp -d "/tmp/kyros-soak.$RUN_ID.XXXXXX")
PGDB="kyros_soak_$RUN_ID"
REDIS_PREFIX="kyros-soak-$RUN_ID:"
PG_CREATED=0
PIDS=()
PORTS=()
KEEP_WORK=0

cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
    fi
  done
  if [ "$PG_CREATED" = 1 ]; then
    dropdb -h 127.0.0.1 -U postgres --if-exists "$PGDB" 2>/dev/null ||
      dropdb -h 127.0.0.1 -U postgres --if-exists --force "$PGDB" 2>/dev/null || true
  fi
  redis-cli -h 127.0.0.1 --scan --pattern "${REDIS_PREFIX}*" 2>/dev/null |
    xargs -r -n 500 redis-cli -h 127.0.0.1 del >/dev/null 2>&1 || true
  if [ "$KEEP_WORK" = 1 ]; then
    rm -rf "$WORK"/data-* 2>/dev/null || true
    echo "server logs kept in $WORK" >&2
  else
    rm -rf "$WORK"
  fi
}
trap cleanup EXIT
trap 'exit 2' INT TERM

log "building (release): kyros and the soak client"
nice -n 10 cargo build --release --bin kyros --example soak >&2
KYROS=$ROOT/target/release/kyros
SOAK=$ROOT/target/release/examples/soak

# Secrets of this run only: in the processes' environments, never in a file.
SECRET=$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')
ADMIN_USER=soakadmin
ADMIN_PASS=$(od -An -tx1 -N18 /dev/urandom | tr -d ' \n')

createdb -h 127.0.0.1 -U postgres "$PGDB"
PG_CREATED=1
DATABASE_URL="postgres://postgres@127.0.0.1:5432/$PGDB"

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
free_port() {
  local p used
  while true; do
    p=$((20000 + $(od -An -tu2 -N2 /dev/urandom | tr -d ' ') % 40000))
    used=0
    for q in "${PORTS[@]}"; do [ "$q" = "$p" ] && used=1; done
    [ "$used" = 0 ] && port_free "$p" && { echo "$p"; return; }
  done
}

# start_instance N: the N-th instance (1-based) in the background; the first creates the admin.
start_instance() {
  local n=$1 port
  port=$(free_port)
  PORTS+=("$port")
  mkdir -p "$WORK/data-$n"
  local vars=(
    PATH="$PATH" HOME="$HOME"
    ENVIRONMENT=local LOG_LEVEL=WARNING
    SECRET_KEY="$SECRET"
    DATABASE_URL="$DATABASE_URL"
    REDIS_URL=redis://127.0.0.1:6379 REDIS_KEY_PREFIX="$REDIS_PREFIX"
    KYROS_BIND="127.0.0.1:$port" KYROS_DATA_DIR="$WORK/data-$n"
    TRUSTED_PROXIES=127.0.0.1/32
    "${BUDGETS[@]}"
    "${SERVER_ENV[@]}"
  )
  if [ "$n" = 1 ]; then
    vars+=(FIRST_SUPERUSER="$ADMIN_USER" FIRST_SUPERUSER_EMAIL=soakadmin@soak.kyros.test
      FIRST_SUPERUSER_PASSWORD="$ADMIN_PASS")
  fi
  # A clean environment (and $WORK as working directory, so no developer .env is read).
  (cd "$WORK" && exec env -i "${vars[@]}" "$KYROS" serve) >"$WORK/instance-$n.log" 2>&1 &
  PIDS+=("$!")
}

wait_health() {
  local n=$1 port=${PORTS[$(($1 - 1))]} pid=${PIDS[$(($1 - 1))]}
  for _ in $(seq 1 300); do
    curl -fs -o /dev/null "http://127.0.0.1:$port/health" && return 0
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "instance $n exited during start-up:" >&2
      tail -n 20 "$WORK/instance-$n.log" >&2
      KEEP_WORK=1
      exit 2
    fi
    sleep 0.2
  done
  echo "instance $n did not answer /health within 60 s" >&2
  KEEP_WORK=1
  exit 2
}

log "starting $INSTANCES instances (PostgreSQL database $PGDB, Redis prefix $REDIS_PREFIX)"
# The first applies the migrations and creates the administrator; the others start after it.
start_instance 1
wait_health 1
for n in $(seq 2 "$INSTANCES"); do start_instance "$n"; done
for n in $(seq 2 "$INSTANCES"); do wait_health "$n"; done
URLS=$(printf 'http://127.0.0.1:%s,' "${PORTS[@]}"); URLS=${URLS%,}
PIDLIST=$(IFS=,; echo "${PIDS[*]}")

PG_VERSION=$(psql -h 127.0.0.1 -U postgres -tAc 'show server_version' 2>/dev/null | head -n 1 || true)
REDIS_VERSION=$(redis-cli -h 127.0.0.1 info server 2>/dev/null | tr -d '\r' | sed -n 's/^redis_version://p')
ulimit -n "$(ulimit -Hn | sed 's/unlimited/65536/')" 2>/dev/null || true

log "soak: $SECONDS_RUN s against $URLS"
set +e
env "${BUDGETS[@]}" "${SERVER_ENV[@]}" KYROS_SOAK_ADMIN_PASSWORD="$ADMIN_PASS" KYROS_SOAK_COMMAND="$COMMAND" \
  KYROS_SOAK_SERVER_ENV="${SERVER_ENV[*]}" \
  "$SOAK" --urls "$URLS" --pids "$PIDLIST" --admin "$ADMIN_USER" --seconds "$SECONDS_RUN" \
  --report "$WORK/body.md" \
  --postgres "PostgreSQL ${PG_VERSION:-?} at 127.0.0.1:5432, fresh database \`$PGDB\` (dropped afterwards)" \
  --redis "Redis ${REDIS_VERSION:-?} at redis://127.0.0.1:6379, key prefix \`$REDIS_PREFIX\` (deleted afterwards)" \
  "${EXTRA[@]}"
SOAK_RC=$?
set -e
if [ ! -s "$WORK/body.md" ]; then
  echo "the soak client wrote no report (exit code $SOAK_RC)" >&2
  KEEP_WORK=1
  exit 2
fi

log "stopping the instances (SIGTERM)"
SHUTDOWN_ROWS=""
SHUTDOWN_OK=1
for i in "${!PIDS[@]}"; do kill -TERM "${PIDS[$i]}" 2>/dev/null || true; done
STOP_START=$(date +%s.%N)
for i in "${!PIDS[@]}"; do
  pid=${PIDS[$i]}
  # KYROS_SHUTDOWN_GRACE_SECS (10) for requests in flight, plus time to write pending audit rows.
  for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then
    kill -KILL "$pid" 2>/dev/null || true
    rc=killed
  else
    rc=0
    wait "$pid" || rc=$?
  fi
  secs=$(awk -v a="$STOP_START" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
  if [ "$rc" = 0 ]; then res=PASS; else res="**FAIL**"; SHUTDOWN_OK=0; fi
  SHUTDOWN_ROWS+="| $((i + 1)) | $pid | $rc | ≤ $secs | $res |"$'\n'
done
PIDS=()

# Warnings and errors the instances logged (LOG_LEVEL=WARNING: nothing else is logged).
LOG_ROWS=""
LOG_SAMPLES=""
for n in $(seq 1 "$INSTANCES"); do
  f="$WORK/instance-$n.log"
  total=$(grep -c . "$f" || true)
  errors=$(grep -Eci '(^|[^a-z])error([^a-z]|$)' "$f" || true)
  LOG_ROWS+="| $n | $total | $errors |"$'\n'
  if [ "$total" -gt 0 ]; then
    # Timestamps and ids removed, so that repeated messages collapse into one line.
    LOG_SAMPLES+=$(sed -E 's/\x1b\[[0-9;]*m//g; s/^[0-9T:.Z-]+ +//; s/[0-9a-f]{8}-[0-9a-f-]{27}/<id>/g' "$f" |
      cut -c1-240 | sort | uniq -c | sort -rn | head -n 8 | sed "s/^ */- instance $n: /; s/|/\\\\|/g")$'\n'
  fi
done

if [ "$SOAK_RC" = 0 ] && [ "$SHUTDOWN_OK" = 1 ]; then VERDICT=PASS; else VERDICT=FAIL; fi
# The names of the failed checks, for the summary line.
FAILED_CHECKS=$(grep -F '| **FAIL** |' "$WORK/body.md" | cut -d'|' -f2 | sed 's/^ *//; s/ *$//' |
  paste -sd ';' - | sed 's/;/; /g' || true)
[ "$VERDICT" = PASS ] || KEEP_WORK=1

mkdir -p "$(dirname "$OUT")"
{
  cat <<EOF
# Reliability: soak test

\`bench/soak.sh\` starts a multi-instance deployment (PostgreSQL + Redis, $INSTANCES instances of
\`kyros serve\` sharing one \`SECRET_KEY\`) and runs \`bench/soak.rs\` against it: users logging in
(bearer tokens and cookie sessions with CSRF-protected writes), submitting and reading jobs,
agents claiming and completing them, WebSocket subscribers following every job event, and two
attackers — one guessing a victim's password, one flooding \`GET /\` anonymously. Every response
is classified: only the statuses listed per kind are expected (401/403/429 only where an attack
or a revoked token must get them); everything else — any 5xx, an unexpected 401/403/429, a
timeout, a transport error — is an error. The instances' memory is sampled every 10 s, the
limiter's accuracy is measured on the flood, and the instances are stopped with SIGTERM at the
end.

\`\`\`sh
bench/soak.sh                    # 10 minutes, 3 instances (the defaults)
bench/soak.sh --minutes 1        # smoke run
bench/soak.sh --minutes N --instances K --out FILE
\`\`\`

**Result: $VERDICT** — soak client checks $([ "$SOAK_RC" = 0 ] && echo passed || echo "**failed** (${FAILED_CHECKS:-exit code $SOAK_RC})"), clean shutdown $([ "$SHUTDOWN_OK" = 1 ] && echo passed || echo "**failed**").

EOF
  cat "$WORK/body.md"
  cat <<EOF
## Clean shutdown

SIGTERM to every instance at once; each must exit with code 0 within 30 s
(\`KYROS_SHUTDOWN_GRACE_SECS\` = 10 for requests in flight, WebSockets closed with 1001).

| instance | PID | exit code | seconds after SIGTERM | result |
|---|---:|---|---|---|
$SHUTDOWN_ROWS
## Server logs

Lines the instances wrote at \`LOG_LEVEL=WARNING\` (warnings and errors only):

| instance | lines | lines mentioning an error |
|---|---:|---:|
$LOG_ROWS
EOF
  if [ -n "$LOG_SAMPLES" ]; then
    printf '\nMost frequent lines (count, timestamp removed, cut at 240 characters):\n\n%s\n' "$LOG_SAMPLES"
  fi
  cat <<'EOF'

## How to read this

*This section is fixed text of `bench/soak.sh`; every number above is measured.*

- **Errors.** Each request kind has its expected statuses (table "Requests by kind"). A 401 is
  expected only for the password guesser and for a logged-out token; a 429 only for the two
  attackers; no kind expects a 403 or a 5xx. Anything else, a timeout (30 s) or a transport error
  is counted as an error with up to three samples (instance, request, status, body cut to 240
  characters with every credential-like JSON field replaced). WebSocket error frames (for example
  "N events were dropped") count as errors too.
- **Addresses.** The instances trust `127.0.0.1` as a proxy, and the client sends
  `X-Forwarded-For` with one address per simulated client, so each user, agent, subscriber and
  attacker has the budget of its own address, as behind a real load balancer. Without it every
  client would share 127.0.0.1's budget.
- **Budgets.** Chosen so that legitimate clients stay well below every limit while the attackers
  exceed theirs: a 429 on a legitimate request is an error. `/ws` has no handshake budget of its
  own; the upgrade is counted under the general budget of the principal (here the administrator,
  for all subscribers).
- **Jobs.** The agents' lease (`KYROS_JOB_LEASE_SECS`) is long enough that no lease expires
  between claim and completion, so a job handed out twice is always a bug (two agents got the same
  job). After the workload the agents empty the queue; every submitted job must then have been
  claimed once and completed.
- **WebSocket delivery.** Every subscriber is the administrator, who may see every job event; a
  job is expected on a connection when it was created while the subscription was live (see the
  section's definition). Jobs are created on every instance, so most events reach a subscriber
  through Redis pub/sub from another instance.
- **Rate-limit accuracy.** The flood's admitted requests are compared with two references: the
  hard GCRA bound B + elapsed/T (exceeding it means the instances did not share one budget), and
  an exact replay of the service's limiter (GCRA, strikes and penalty) on the flood's send times.
- **Memory.** RSS normally rises during the first seconds of traffic (connection pools, the
  allocator's arenas, Argon2id's 19 MiB working memory per password hash) and must then stay
  flat. The check compares the last sample with one taken after a warm-up (a fifth of the run, at
  most 120 s), so a slow leak shows as growth over the rest of the run. VmHWM is the peak.
  `--server-env NAME=VALUE` passes an extra variable to the instances. A run with
  `--server-env MALLOC_MMAP_THRESHOLD_=1048576` (glibc then returns large blocks such as the
  Argon2id memory to the system at once) tells memory the allocator keeps after it was freed —
  RSS stays flat with the setting — from a leak, which grows with it too.
- **Shutdown.** All instances get SIGTERM at once and must exit 0: requests in flight finish
  within `KYROS_SHUTDOWN_GRACE_SECS`, WebSockets are closed with 1001, pending audit rows are
  written.
- **Noise.** The load generator runs on the same machine as the instances, PostgreSQL and Redis;
  latencies depend on what else the machine does. Errors, duplicates, delivery, accuracy and
  memory do not.
EOF
} >"$OUT"

cat "$OUT"
log "report written to $OUT: $VERDICT"
[ "$VERDICT" = PASS ] && exit 0 || exit 1
