#!/usr/bin/env bash
# A real single-node SLURM cluster (with accounting, so `sacct` answers) and a PostgreSQL-backed
# `mlflow server`, on this machine, for the cluster tests (tests/test_cluster.py) and for trying
# `hydra/launcher=slurm` by hand. Debian's own packages: slurm-wlm, slurmdbd, munge,
# mariadb-server, postgresql.
#
#   scripts/local_cluster.sh start [all|slurm|server]   # install what is missing, start, print env
#   scripts/local_cluster.sh stop  [all|slurm|server]   # stop what it started (by PID), clean up
#   scripts/local_cluster.sh status                     # what runs; exit 0 only if all of it runs
#   scripts/local_cluster.sh install [all|slurm|server] # only the packages
#
#   eval "$(scripts/local_cluster.sh start)"            # SLURM_CONF, MLFLOW_TRACKING_URI, ...
#   python train.py -m hydra/launcher=slurm hydra.launcher.partition=$INITSWEEP_PARTITION \
#       hydra.launcher.gpus_per_node=0 hydra.launcher.cpus_per_task=1 hydra.launcher.mem_gb=2 \
#       tracking=server init=he,zeros seed=0,1
#
# `start` prints `export NAME=value` lines on stdout (also written to $STATE/cluster.env) and its
# progress on stderr. It is idempotent: what already runs (its PID file names a live process of
# the right program) is left alone. `stop` stops each daemon by the PID in its PID file, never by
# process name, and removes the state folder. Everything listens on 127.0.0.1 only, on ports away
# from the defaults so that a system SLURM/MariaDB/PostgreSQL/mlflow on this machine is untouched.
#
# Needs root (CI runs as root): apt-get, and slurmd/slurmctld run as root (SlurmUser=root), so
# jobs may be submitted by root (Slurm's DisableRootJobs defaults to NO) or by any other user.
# The server part alone also works without root when postgresql is installed.
#
# Environment (defaults in brackets):
#   INITSWEEP_CLUSTER_DIR   [/tmp/initsweep-cluster]  the state folder: configs, data, logs, PIDs
#   INITSWEEP_PORT_BASE     [16800] ports: +6 MariaDB, +17 slurmctld, +18 slurmd, +19 slurmdbd,
#                                   +32 PostgreSQL, +50 mlflow
#   INITSWEEP_MLFLOW_PORT   [PORT_BASE+50]
#   INITSWEEP_PARTITION     [debug]
#   VENV                    [<repo>/.venv]  the project's virtualenv: runs `mlflow server`;
#                                           psycopg[binary] is installed there when missing
#   INITSWEEP_START_TIMEOUT_S [120] how long to wait for each daemon
#   MLFLOW_SERVER_WORKERS   [2]  the mlflow server's workers (scripts/start_tracking_server.sh);
#                           about one per core the server has to itself (docs/scaling.md)
#
# Layout of the state folder (what to look at when something does not start):
#   cluster.env            the export lines `start` printed
#   pids/NAME.pid          one per daemon: munged mariadb slurmdbd slurmctld slurmd postgres mlflow
#   logs/NAME.log          their logs (a SLURM daemon in the foreground also copies its log
#                          file to stderr, which lands here too: lines appear twice)
#   secrets/               0700: munge.key, the MariaDB and PostgreSQL passwords, pgpass
#   slurm/                 slurm.conf, slurmdbd.conf, slurmctld state, slurmd spool
#   mysql/ pg/             the databases' data folders;  mlflow/artifacts  the server's artifacts
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
STATE="${INITSWEEP_CLUSTER_DIR:-/tmp/initsweep-cluster}"
PORT_BASE="${INITSWEEP_PORT_BASE:-16800}"
MYSQL_PORT=$((PORT_BASE + 6))
SLURMCTLD_PORT=$((PORT_BASE + 17))
SLURMD_PORT=$((PORT_BASE + 18))
SLURMDBD_PORT=$((PORT_BASE + 19))
PG_PORT=$((PORT_BASE + 32))
MLFLOW_PORT="${INITSWEEP_MLFLOW_PORT:-$((PORT_BASE + 50))}"
PARTITION="${INITSWEEP_PARTITION:-debug}"
VENV="${VENV:-$repo/.venv}"
[[ -d "$VENV" ]] && VENV="$(cd "$VENV" && pwd)"  # absolute: daemons do not run in this folder
PYTHON="$VENV/bin/python"
TIMEOUT_S="${INITSWEEP_START_TIMEOUT_S:-120}"
CLUSTER_NAME=initsweep
NODE="$(hostname -s)"

SLURM_PACKAGES=(slurm-wlm slurmdbd munge mariadb-server)
SERVER_PACKAGES=(postgresql)

export SLURM_CONF="$STATE/slurm/slurm.conf"

say() { echo "local_cluster: $*" >&2; }
die() { echo "local_cluster: error: $*" >&2; exit 1; }
is_root() { [[ "$(id -u)" == 0 ]]; }

# ------------------------------------------------------------------------------- processes
pidfile() { echo "$STATE/pids/$1.pid"; }

# The program each PID file must point at: a PID file whose process is gone or is now another
# program (PID reuse after a reboot or a crash) counts as not running.
program_of() {
    case "$1" in
        munged) echo munged ;; mariadb) echo mariadbd ;; slurmdbd) echo slurmdbd ;;
        slurmctld) echo slurmctld ;; slurmd) echo slurmd ;; postgres) echo postgres ;;
        mlflow) echo mlflow ;;
    esac
}

# alive NAME: its PID file names a live, non-zombie process running the expected program.
alive() {
    local file pid
    file="$(pidfile "$1")"
    [[ -s "$file" ]] || return 1
    pid="$(head -n1 "$file")"
    [[ "$pid" =~ ^[0-9]+$ && -r "/proc/$pid/cmdline" ]] || return 1
    [[ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != Z ]] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "$(program_of "$1")"
}

# launch NAME CMD...: start a foreground daemon in its own session (a Ctrl-C in the caller's
# terminal or pytest's process group does not reach it), log to logs/NAME.log, record its PID.
# In a non-interactive shell a background job is no process-group leader, so setsid execs the
# daemon in place and $! is the daemon's own PID.
launch() {
    local name="$1"; shift
    setsid "$@" >>"$STATE/logs/$name.log" 2>&1 </dev/null &
    echo $! >"$(pidfile "$name")"
}

# wait_until WHAT CMD...: poll CMD until it succeeds; fail with the log's tail after TIMEOUT_S,
# or at once if the daemon NAME (first word of WHAT) died.
wait_until() {
    local what="$1" name="${1%% *}"; shift
    local deadline=$((SECONDS + TIMEOUT_S))
    until "$@" >/dev/null 2>&1; do
        if [[ -e "$(pidfile "$name")" ]] && ! alive "$name"; then
            tail -n 25 "$STATE/logs/$name.log" >&2 2>/dev/null || true
            die "$what: $name exited (log: $STATE/logs/$name.log)"
        fi
        ((SECONDS < deadline)) || { tail -n 25 "$STATE/logs/$name.log" >&2 2>/dev/null || true
                                    die "$what: not after ${TIMEOUT_S}s (log: $STATE/logs/$name.log)"; }
        sleep 0.2
    done
}

# stop_pid NAME [GROUP]: SIGTERM the PID (or its whole process group), SIGKILL after 30 s.
stop_pid() {
    local name="$1" group="${2:-}" file pid target
    file="$(pidfile "$name")"
    if alive "$name"; then
        pid="$(head -n1 "$file")"
        target="$pid"; [[ -n "$group" ]] && target="-$pid"
        say "stopping $name (pid $pid)"
        kill -TERM -- "$target" 2>/dev/null || true
        for _ in $(seq 1 300); do alive "$name" || break; sleep 0.1; done
        if alive "$name"; then
            say "$name did not stop in 30 s: SIGKILL"
            kill -KILL -- "$target" 2>/dev/null || true
            for _ in $(seq 1 50); do alive "$name" || break; sleep 0.1; done
        fi
        # a group: whatever outlived its leader (a worker) goes too
        [[ -n "$group" ]] && kill -KILL -- "$target" 2>/dev/null || true
    fi
    rm -f "$file"
}

random_secret() { head -c 18 /dev/urandom | base64 | tr -d '/+=' ; }

# secret NAME: a password generated once per state folder, kept in secrets/ (0600), never printed.
secret() {
    local file="$STATE/secrets/$1"
    [[ -s "$file" ]] || (umask 077; random_secret >"$file")
    cat "$file"
}

# ------------------------------------------------------------------------------- packages
missing_packages() {
    local p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || echo "$p"
    done
}

# apt_install PKG...: install the missing ones; `apt-get update` once, only if something is
# missing. Package scripts must not start the system's own daemons (munge, mariadb, slurm*,
# postgresql on their default ports): a policy-rc.d that says "no" is put in place for the
# install when the machine has none (Debian's Docker images ship one; a fresh VM does not).
apt_install() {
    local missing
    mapfile -t missing < <(missing_packages "$@")
    ((${#missing[@]})) || return 0
    is_root || die "packages missing (${missing[*]}): run this script as root, or apt-get install them"
    say "installing ${missing[*]} (apt-get)"
    if [[ ! -e "$POLICY" ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$POLICY"; chmod 755 "$POLICY"; ADDED_POLICY=1
        trap remove_policy EXIT
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
    remove_policy
}
POLICY=/usr/sbin/policy-rc.d
ADDED_POLICY=""
remove_policy() { if [[ -n "$ADDED_POLICY" ]]; then rm -f "$POLICY"; ADDED_POLICY=""; fi; }

# SQLAlchemy 2.1 (what MLflow 3 installs) maps a plain postgresql:// URI to psycopg 3, not
# psycopg2: `psycopg[binary]` is the driver a user's `postgresql://user@host/db` needs.
install_python_driver() {
    [[ -x "$PYTHON" ]] || die "no virtualenv at $VENV (run \`make install\`, or set VENV=...)"
    "$PYTHON" -c 'import psycopg' 2>/dev/null && return 0
    say "installing psycopg[binary] into $VENV (the mlflow server's PostgreSQL driver)"
    "$PYTHON" -m pip install --quiet --disable-pip-version-check 'psycopg[binary]>=3.2' >&2
}

install_for() {
    case "$1" in
        slurm) apt_install "${SLURM_PACKAGES[@]}" ;;
        server) apt_install "${SERVER_PACKAGES[@]}"; install_python_driver ;;
        all) apt_install "${SLURM_PACKAGES[@]}" "${SERVER_PACKAGES[@]}"; install_python_driver ;;
    esac
}

make_dirs() {
    mkdir -p "$STATE"/{pids,logs,slurm/ctld,slurm/spool,mysql,mlflow}
    mkdir -p "$STATE/secrets"
    chmod 700 "$STATE/secrets"  # also when it exists (mkdir -m would leave its mode)
    # Others may read (the munge socket's folder must be reachable to submit jobs as another
    # user), only the owner may write: munged, slurmdbd and PostgreSQL check such permissions.
    chmod 755 "$STATE" "$STATE/pids" "$STATE/logs"
}

# ------------------------------------------------------------------------------- munge
MUNGE_SOCKET="$STATE/munge/munge.socket"

start_munge() {
    alive munged && return 0
    mkdir -p "$STATE/munge"
    chmod 755 "$STATE/munge"
    local key="$STATE/secrets/munge.key"
    if [[ ! -s "$key" ]]; then  # one key for this cluster's daemons and clients
        (umask 077; dd if=/dev/urandom of="$key" bs=1024 count=1 status=none)
    fi
    rm -f "$MUNGE_SOCKET"
    launch munged munged --foreground --key-file="$key" --socket="$MUNGE_SOCKET" \
        --pid-file="$STATE/munge/munged.pid" --seed-file="$STATE/munge/munged.seed" \
        --log-file="$STATE/logs/munged.log"
    wait_until "munged socket" test -S "$MUNGE_SOCKET"
}

# ------------------------------------------------------------------------------- MariaDB
MYSQL_SOCKET="$STATE/mysql/mysqld.sock"

start_mariadb() {
    alive mariadb && return 0
    local data="$STATE/mysql/data"
    if [[ ! -d "$data/mysql" ]]; then
        say "initializing MariaDB in $data"
        mkdir -p "$data"; chown -R mysql:mysql "$STATE/mysql"
        mariadb-install-db --no-defaults --datadir="$data" --user=mysql \
            --auth-root-authentication-method=socket --skip-test-db >>"$STATE/logs/mariadb.log" 2>&1
    fi
    # Small buffers (a test cluster); innodb_lock_wait_timeout as slurmdbd wants it.
    launch mariadb mariadbd --no-defaults --user=mysql --datadir="$data" \
        --socket="$MYSQL_SOCKET" --port="$MYSQL_PORT" --bind-address=127.0.0.1 \
        --skip-name-resolve --pid-file="$STATE/mysql/mariadbd.pid" \
        --innodb-buffer-pool-size=128M --innodb-lock-wait-timeout=900 \
        --innodb-log-file-size=64M --performance-schema=OFF
    wait_until "mariadb socket" mariadb-admin --no-defaults --socket="$MYSQL_SOCKET" -u root ping
    # slurmdbd's database user, reachable over loopback TCP only (root: the socket, as OS root).
    mariadb --no-defaults --socket="$MYSQL_SOCKET" -u root <<SQL
CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$(secret mariadb_password)';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
SQL
}

# ------------------------------------------------------------------------------- SLURM
write_slurm_conf() {
    local cpus mem_mb margin
    cpus="$(nproc)"
    mem_mb=$(( $(awk '/^MemTotal:/ {print $2}' /proc/meminfo) / 1024 ))
    # Leave the OS and the daemons room: RealMemory above what slurmd finds drains the node.
    margin=$(( mem_mb / 10 > 512 ? mem_mb / 10 : 512 ))
    cat >"$STATE/slurm/slurm.conf" <<CONF
# Written by scripts/local_cluster.sh for $NODE: one node, one partition, accounting in slurmdbd.
ClusterName=$CLUSTER_NAME
SlurmctldHost=$NODE(127.0.0.1)
SlurmctldPort=$SLURMCTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
# cred_expire also sets how long a requeued job waits before it may start again (default 120 s):
# 30 s keeps the requeue tests short; a real cluster keeps its own.
AuthInfo=socket=$MUNGE_SOCKET,cred_expire=30
CredType=cred/munge
# Bind to the configured (loopback) addresses, not to every interface (slurmctld has its own).
CommunicationParameters=NoInAddrAny,NoCtldInAddrAny
StateSaveLocation=$STATE/slurm/ctld
SlurmdSpoolDir=$STATE/slurm/spool
SlurmctldPidFile=$STATE/slurm/slurmctld.pid
SlurmdPidFile=$STATE/slurm/slurmd.pid
SlurmctldLogFile=$STATE/logs/slurmctld.log
SlurmdLogFile=$STATE/logs/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# No cgroups needed: processes are tracked by parent PID, tasks are not bound to cores.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
MpiDefault=none
SwitchType=switch/none
MailProg=/bin/true
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# A job that gives no --mem gets its CPUs' share of the node, not the whole node.
DefMemPerCPU=$(( (mem_mb - margin) / cpus ))
# A node back from a restart of slurmd takes jobs again; trust this file for its size.
ReturnToService=2
SlurmdParameters=config_overrides
# Between SIGTERM and SIGKILL when a job is cancelled, requeued or times out.
KillWait=30
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$SLURMDBD_PORT
# For slurmdbd connections the munge socket is this, not AuthInfo (slurm.conf(5)).
AccountingStoragePass=$MUNGE_SOCKET
JobCompType=jobcomp/none
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$((mem_mb - margin)) State=UNKNOWN
PartitionName=$PARTITION Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
CONF
    # slurmdbd refuses a slurmdbd.conf others can read (it holds the database password).
    (umask 077; cat >"$STATE/slurm/slurmdbd.conf" <<CONF
# Written by scripts/local_cluster.sh: accounting in the MariaDB this script started.
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCKET
DbdHost=$NODE
DbdAddr=127.0.0.1
DbdPort=$SLURMDBD_PORT
CommunicationParameters=NoInAddrAny
SlurmUser=root
PidFile=$STATE/slurm/slurmdbd.pid
LogFile=$STATE/logs/slurmdbd.log
DebugLevel=info
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$MYSQL_PORT
StorageUser=slurm
StoragePass=$(secret mariadb_password)
StorageLoc=slurm_acct_db
CONF
    )
}

start_slurm() {
    is_root || die "the SLURM daemons run as root: run \`$0 start slurm\` as root"
    make_dirs
    start_munge
    start_mariadb
    # (Re)written only while no SLURM daemon runs: a running one keeps the file it read.
    alive slurmdbd || alive slurmctld || alive slurmd || write_slurm_conf
    if ! alive slurmdbd; then
        # slurmdbd has no -f: it reads slurmdbd.conf beside $SLURM_CONF
        launch slurmdbd slurmdbd -D
    fi
    wait_until "slurmdbd answering" sacctmgr -n list cluster
    # The cluster, an account and the users who submit (root in CI) in the accounting database.
    if [[ -z "$(sacctmgr -n -P list cluster "$CLUSTER_NAME" format=cluster)" ]]; then
        sacctmgr -i add cluster "$CLUSTER_NAME" >&2
    fi
    if [[ -z "$(sacctmgr -n -P list account initsweep format=account)" ]]; then
        sacctmgr -i add account initsweep Cluster="$CLUSTER_NAME" \
            Description="initsweep tests" Organization=initsweep >&2
    fi
    local user
    for user in root ${SUDO_USER:-}; do
        if [[ -z "$(sacctmgr -n -P list user "$user" format=user)" ]]; then
            sacctmgr -i add user "$user" Account=initsweep >&2
        fi
    done
    alive slurmctld || launch slurmctld slurmctld -D -f "$SLURM_CONF"
    wait_until "slurmctld answering" scontrol ping
    alive slurmd || launch slurmd slurmd -D -f "$SLURM_CONF"
    wait_until "slurmd: node $NODE idle" node_idle
    say "SLURM up: partition $PARTITION, node $NODE ($(sinfo -h -n "$NODE" -o '%c CPUs, %m MB'))"
}

node_idle() { [[ "$(sinfo -h -n "$NODE" -o %t)" == idle ]]; }

stop_slurm() {
    if alive slurmctld && [[ -f "$SLURM_CONF" ]]; then
        # Cancel what is still queued or running (by job id), so no job step outlives slurmd.
        local jobs
        jobs="$(squeue -h -o %A 2>/dev/null | sort -u | tr '\n' ' ')"
        if [[ -n "${jobs// }" ]]; then
            say "cancelling jobs $jobs"
            # shellcheck disable=SC2086
            scancel $jobs 2>/dev/null || true
            for _ in $(seq 1 100); do [[ -z "$(squeue -h -o %A 2>/dev/null)" ]] && break; sleep 0.5; done
        fi
    fi
    stop_pid slurmd
    stop_pid slurmctld
    stop_pid slurmdbd
    stop_pid mariadb
    stop_pid munged
}

# ------------------------------------------------------------------------------- PostgreSQL
PG_DB=mlflow
PG_USER=mlflow

# PG_BIN: the newest installed PostgreSQL's programs (Debian keeps them off the PATH).
find_pg_bin() {
    PG_BIN="$(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V | tail -n1)"
    [[ -d "$PG_BIN" ]] || die "PostgreSQL's programs not found under /usr/lib/postgresql/*/bin"
}

# PostgreSQL refuses to run as root: as root it runs as Debian's `postgres` user.
as_pg() {
    if is_root; then runuser -u postgres -- "$@"; else "$@"; fi
}

start_postgres() {
    alive postgres && return 0
    find_pg_bin
    local data="$STATE/pg/data" run="$STATE/pg/run"
    mkdir -p "$STATE/pg"
    if [[ ! -s "$data/PG_VERSION" ]]; then
        say "initializing PostgreSQL in $data"
        mkdir -p "$data" "$run"
        chmod 700 "$data" "$run"
        is_root && chown -R postgres: "$STATE/pg"
        # Local socket (in a 0700 folder): trust, for this script's setup only; TCP: password.
        as_pg "$PG_BIN/initdb" -D "$data" -U postgres --auth-local=trust \
            --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 >>"$STATE/logs/postgres.log" 2>&1
    fi
    is_root && touch "$STATE/logs/postgres.log" && chown postgres: "$STATE/logs/postgres.log"
    as_pg "$PG_BIN/pg_ctl" start -D "$data" -w -t "$TIMEOUT_S" -l "$STATE/logs/postgres.log" \
        -o "-c listen_addresses=127.0.0.1 -c port=$PG_PORT -c unix_socket_directories=$run" \
        >/dev/null
    head -n1 "$data/postmaster.pid" >"$(pidfile postgres)"
    # The server's role and database; the password goes in on stdin (never on a command line).
    local password
    password="$(secret pg_password)"
    as_pg "$PG_BIN/psql" -q -v ON_ERROR_STOP=1 -h "$run" -p "$PG_PORT" -U postgres -d postgres \
        >/dev/null <<SQL
SELECT 'CREATE ROLE $PG_USER LOGIN' WHERE NOT EXISTS
    (SELECT FROM pg_roles WHERE rolname = '$PG_USER') \gexec
ALTER ROLE $PG_USER PASSWORD '$password';
SELECT 'CREATE DATABASE $PG_DB OWNER $PG_USER' WHERE NOT EXISTS
    (SELECT FROM pg_database WHERE datname = '$PG_DB') \gexec
SQL
    # libpq (under psycopg) reads the password from this file: no password in the server's URI,
    # command line or environment.
    (umask 077; echo "127.0.0.1:$PG_PORT:$PG_DB:$PG_USER:$password" >"$STATE/secrets/pgpass")
}

stop_postgres() {
    if alive postgres; then
        find_pg_bin
        say "stopping postgres (pid $(head -n1 "$(pidfile postgres)"))"
        as_pg "$PG_BIN/pg_ctl" stop -D "$STATE/pg/data" -m fast -w -t 60 >/dev/null || true
    fi
    stop_pid postgres  # if pg_ctl could not stop it
}

# ------------------------------------------------------------------------------- mlflow server
start_mlflow() {
    alive mlflow && return 0
    say "starting mlflow server on 127.0.0.1:$MLFLOW_PORT (PostgreSQL backend)"
    # scripts/start_tracking_server.sh: setsid, so the PID is the process group of the server
    # and its workers; stop_pid kills the whole group.
    PGPASSFILE="$STATE/secrets/pgpass" PYTHON="$PYTHON" bash "$repo/scripts/start_tracking_server.sh" \
        --host 127.0.0.1 --port "$MLFLOW_PORT" \
        --backend-store-uri "postgresql://$PG_USER@127.0.0.1:$PG_PORT/$PG_DB" \
        --artifacts-destination "$STATE/mlflow/artifacts" \
        --log "$STATE/logs/mlflow.log" --pid-file "$(pidfile mlflow)" >/dev/null 2>&1 \
        || die "mlflow server did not start (log: $STATE/logs/mlflow.log)"
    wait_until "mlflow server healthy" "$PYTHON" -c \
        "import urllib.request as u; u.urlopen('http://127.0.0.1:$MLFLOW_PORT/health', timeout=2)"
}

start_server() {
    apt_install "${SERVER_PACKAGES[@]}"
    install_python_driver
    make_dirs
    start_postgres
    start_mlflow
    say "mlflow server up: http://127.0.0.1:$MLFLOW_PORT (store: PostgreSQL on 127.0.0.1:$PG_PORT)"
}

stop_server() {
    stop_pid mlflow group
    stop_postgres
}

# ------------------------------------------------------------------------------- env, status
write_env() {
    {
        echo "export INITSWEEP_CLUSTER_DIR=$STATE"
        if alive slurmctld; then
            echo "export SLURM_CONF=$SLURM_CONF"
            echo "export INITSWEEP_PARTITION=$PARTITION"
        fi
        if alive postgres; then  # the database itself, for a client with the password
            echo "export INITSWEEP_PG_URI=postgresql://$PG_USER@127.0.0.1:$PG_PORT/$PG_DB"
        fi
        if alive mlflow; then
            echo "export MLFLOW_TRACKING_URI=http://127.0.0.1:$MLFLOW_PORT"
            echo "export INITSWEEP_MLFLOW_PID=$(head -n1 "$(pidfile mlflow)")"
        fi
    } >"$STATE/cluster.env"
    cat "$STATE/cluster.env"
}

any_alive() {
    local name
    for name in munged mariadb slurmdbd slurmctld slurmd postgres mlflow; do
        alive "$name" && return 0
    done
    return 1
}

status() {
    local name all=0
    for name in munged mariadb slurmdbd slurmctld slurmd postgres mlflow; do
        if alive "$name"; then
            printf '%-10s running (pid %s)\n' "$name" "$(head -n1 "$(pidfile "$name")")"
        else
            printf '%-10s stopped\n' "$name"; all=1
        fi
    done
    if alive slurmctld; then sinfo -h -o "partition %P: node %N %t (%c CPUs, %m MB)"; fi
    if alive mlflow; then echo "mlflow     http://127.0.0.1:$MLFLOW_PORT"; fi
    return $all
}

# ------------------------------------------------------------------------------- main
command="${1:-}"
part="${2:-all}"
case "$part" in all|slurm|server) ;; *) die "unknown part '$part' (all, slurm or server)" ;; esac
case "$command" in
    install) install_for "$part" ;;
    start)
        install_for "$part"
        [[ "$part" == server ]] || start_slurm
        [[ "$part" == slurm ]] || start_server
        write_env ;;
    stop)
        [[ -d "$STATE" ]] || exit 0
        [[ "$part" == slurm ]] || stop_server
        [[ "$part" == server ]] || stop_slurm
        if ! any_alive; then
            rm -rf "$STATE"  # nothing left running: data, logs and secrets go too
        else
            write_env >/dev/null
        fi ;;
    status) status ;;
    *) sed -n '2,12p' "$0" >&2; exit 2 ;;
esac
