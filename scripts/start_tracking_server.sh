#!/usr/bin/env bash
# Start a shared MLflow tracking server in the background and print its PID (= its process group:
# stop it, workers included, with `kill -- -PID`).
#
#   scripts/start_tracking_server.sh                          # sqlite ./mlserver/mlflow.db, :5000
#   scripts/start_tracking_server.sh --port 5001 \
#       --backend-store-uri postgresql://mlflow@db.example/mlflow \
#       --artifacts-destination /shared/mlflow-artifacts
#   python train.py -m tracking=server init=xavier,he seed=0,1   # MLFLOW_TRACKING_URI or :5000
#
# Options (or the environment variable in brackets):
#   --host HOST                   [MLFLOW_SERVER_HOST]  default 127.0.0.1: this machine only. Bind
#                                 0.0.0.0 only behind a firewall or with auth: the server has none.
#   --port PORT                   [MLFLOW_SERVER_PORT]  default 5000
#   --backend-store-uri URI       [MLFLOW_BACKEND_STORE_URI] a SQL store: sqlite:////abs/path.db or
#                                 postgresql://user@host/db (needs `pip install 'psycopg[binary]'`);
#                                 default sqlite:///$PWD/mlserver/mlflow.db
#   --artifacts-destination DIR   [MLFLOW_ARTIFACTS_DESTINATION] where the server stores artifacts
#                                 (a path, s3://..., ...); default $PWD/mlserver/artifacts. Clients
#                                 upload through the server (--serve-artifacts), so jobs need no
#                                 access to it.
#   --workers N                   [MLFLOW_SERVER_WORKERS] default 2
#   --log FILE                    [MLFLOW_SERVER_LOG]   default $PWD/mlserver/server.log
#   --pid-file FILE               also write the PID there
# Credentials never go on this command line or into the repo: PostgreSQL reads ~/.pgpass or
# PGPASSWORD.
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
host="${MLFLOW_SERVER_HOST:-127.0.0.1}"
port="${MLFLOW_SERVER_PORT:-5000}"
backend="${MLFLOW_BACKEND_STORE_URI:-sqlite:///$PWD/mlserver/mlflow.db}"
artifacts="${MLFLOW_ARTIFACTS_DESTINATION:-$PWD/mlserver/artifacts}"
workers="${MLFLOW_SERVER_WORKERS:-2}"
logfile="${MLFLOW_SERVER_LOG:-$PWD/mlserver/server.log}"
pidfile=""
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x "$repo/.venv/bin/python" ]]; then PYTHON="$repo/.venv/bin/python"; else PYTHON=python3; fi
fi

while [[ $# -gt 0 ]]; do
    case "$1" in
        --host) host="$2"; shift 2 ;;
        --port) port="$2"; shift 2 ;;
        --backend-store-uri) backend="$2"; shift 2 ;;
        --artifacts-destination) artifacts="$2"; shift 2 ;;
        --workers) workers="$2"; shift 2 ;;
        --log) logfile="$2"; shift 2 ;;
        --pid-file) pidfile="$2"; shift 2 ;;
        -h|--help) sed -n '2,27p' "$0"; exit 0 ;;
        *) echo "error: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done

case "$backend" in
    sqlite:///*) mkdir -p "$(dirname "${backend#sqlite:///}")" ;;
    postgresql*|mysql*|mssql*) ;;
    *) echo "error: --backend-store-uri must be a SQL store (sqlite:///... or postgresql://...)," \
            "got '${backend%%://*}://...'" >&2; exit 2 ;;
esac
case "$artifacts" in
    *://*) ;;
    *) mkdir -p "$artifacts"; artifacts="$(cd "$artifacts" && pwd)" ;;
esac
mkdir -p "$(dirname "$logfile")"

# MLflow 3's server also starts a job runner (8 huey worker processes) for GenAI evaluation jobs,
# which this project never submits: off unless asked for.
export MLFLOW_SERVER_ENABLE_JOB_EXECUTION="${MLFLOW_SERVER_ENABLE_JOB_EXECUTION:-false}"
# setsid: the server (and the workers it forks) get their own process group whose id is the
# printed PID, so one `kill -- -PID` stops all of them and nothing is left behind.
setsid "$PYTHON" -m mlflow server \
    --host "$host" --port "$port" --workers "$workers" \
    --backend-store-uri "$backend" \
    --serve-artifacts --artifacts-destination "$artifacts" \
    >"$logfile" 2>&1 </dev/null &
pid=$!
# Print the PID only once it is a process group id (setsid runs a moment after the fork), so a
# caller can always stop the whole server with it.
for _ in $(seq 1 100); do
    stat="$(cat "/proc/$pid/stat" 2>/dev/null)" || { echo "error: server exited, see $logfile" >&2; exit 1; }
    read -r -a fields <<<"${stat##*) }"  # the fields after "(comm) "; [2] is the pgid
    [[ "${fields[2]}" == "$pid" ]] && break
    sleep 0.05
done
[[ -n "$pidfile" ]] && echo "$pid" >"$pidfile"
echo "$pid"
# What the user needs, on stderr so that `pid=$(scripts/start_tracking_server.sh)` stays clean.
echo "mlflow server pid $pid on http://$host:$port (log: $logfile; stop: kill -- -$pid)" >&2
