#!/usr/bin/env bash
# Start a small Slurm cluster on this host without systemd, for the Slurm tests.
#
# Starts munged, mariadbd, slurmdbd, slurmctld and one slurmd per virtual
# node, in that order, and waits until every node is idle. Every virtual node
# is this host: TorchX submits each role replica as one part of a
# heterogeneous job, and Slurm reserves a whole node per part, so a job with a
# client and two worker hosts needs three nodes.
#
# Must run as root. Writes /etc/slurm/slurm.conf (or $SLURM_CONF) and keeps
# all state, logs and pid files under $FORGE_SLURM_DIR. Stop it with
# stop-cluster.sh.
#
# Environment:
#   FORGE_SLURM_DIR    state directory (default /tmp/forge-slurm)
#   FORGE_SLURM_NODES  number of virtual nodes (default 4)
#   SLURM_CONF         slurm.conf to write (default /etc/slurm/slurm.conf)
set -euo pipefail

STATE_DIR="${FORGE_SLURM_DIR:-/tmp/forge-slurm}"
NODES="${FORGE_SLURM_NODES:-4}"
CONF="${SLURM_CONF:-/etc/slurm/slurm.conf}"
HOST="$(hostname -s)"
# Ports away from Slurm's defaults so a system cluster on this host is left alone.
CTLD_PORT=16817
DBD_PORT=16819
DB_PORT=16306
NODE_PORT_BASE=16900
# Memory each virtual node offers, in MB. TorchX 0.7.0 drops memory requests
# on partitions with 1000 MB or less, so stay above that.
NODE_MEMORY_MB=2048

if [[ $EUID -ne 0 ]]; then
  echo "start-cluster.sh must run as root (it starts munged, mariadbd and the Slurm daemons)" >&2
  exit 1
fi
for tool in munged mariadbd mariadb-install-db slurmdbd slurmctld slurmd sinfo; do
  if ! command -v "$tool" >/dev/null; then
    echo "$tool not found. Install it with: apt-get install slurmctld slurmd slurm-client munge slurmdbd mariadb-server" >&2
    exit 1
  fi
done

mkdir -p "$STATE_DIR"/{run,log,state,spool,mysql} "$(dirname "$CONF")"
RUN="$STATE_DIR/run"
LOG="$STATE_DIR/log"

# True when the pid file names a running process.
running() {
  [[ -f "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null
}

# Wait up to $2 seconds for the command in $1 to succeed.
wait_for() {
  local deadline=$((SECONDS + $2))
  until eval "$1" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      echo "timed out after $2 s waiting for: $1" >&2
      return 1
    fi
    sleep 0.2
  done
}

# -- munged -------------------------------------------------------------------
if [[ ! -f /etc/munge/munge.key ]]; then
  mungekey --create --keyfile=/etc/munge/munge.key
  chown munge:munge /etc/munge/munge.key
  chmod 400 /etc/munge/munge.key
fi
mkdir -p /run/munge
chown munge:munge /run/munge
if ! munge -n >/dev/null 2>&1; then
  runuser -u munge -- munged --pid-file=/run/munge/munged.pid
  cp /run/munge/munged.pid "$RUN/munged.pid"
  wait_for "munge -n" 10
fi

# -- mariadbd (accounting database) -------------------------------------------
DB_SOCKET="$RUN/mysqld.sock"
if [[ ! -d "$STATE_DIR/mysql/mysql" ]]; then
  mariadb-install-db --datadir="$STATE_DIR/mysql" --user=root --auth-root-authentication-method=socket >"$LOG/mariadb-install.log" 2>&1
fi
if ! running "$RUN/mariadbd.pid"; then
  mariadbd --user=root --datadir="$STATE_DIR/mysql" --socket="$DB_SOCKET" --port="$DB_PORT" \
    --bind-address=127.0.0.1 --pid-file="$RUN/mariadbd.pid" --log-error="$LOG/mariadbd.log" \
    --innodb-buffer-pool-size=32M --performance-schema=OFF >/dev/null 2>&1 &
  wait_for "mariadb --socket='$DB_SOCKET' -u root -e 'select 1'" 60
fi
# A fresh password on every start; it only guards a database bound to 127.0.0.1.
DB_PASSWORD="$(head -c 18 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')"
mariadb --socket="$DB_SOCKET" -u root <<SQL
CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1';
ALTER USER 'slurm'@'127.0.0.1' IDENTIFIED BY '$DB_PASSWORD';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
SQL

# -- configuration ------------------------------------------------------------
DBD_CONF="$(dirname "$CONF")/slurmdbd.conf"
cat >"$DBD_CONF" <<CONF
# Written by forge-launcher's tests/slurm/start-cluster.sh.
AuthType=auth/munge
DbdHost=$HOST
DbdAddr=127.0.0.1
DbdPort=$DBD_PORT
SlurmUser=root
PidFile=$RUN/slurmdbd.pid
LogFile=$LOG/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=$DB_PASSWORD
StorageLoc=slurm_acct_db
CONF
chmod 600 "$DBD_CONF"

{
  cat <<CONF
# Written by forge-launcher's tests/slurm/start-cluster.sh: $NODES virtual nodes on this host.
ClusterName=forge-test
SlurmctldHost=$HOST(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$STATE_DIR/state
SlurmdSpoolDir=$STATE_DIR/spool/%n
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd-%n.pid
SlurmctldLogFile=$LOG/slurmctld.log
SlurmdLogFile=$LOG/slurmd-%n.log
# No cgroups in containers: track processes by parent pid and bind no tasks.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
# Backfill every second so heterogeneous jobs start within seconds.
SchedulerType=sched/backfill
SchedulerParameters=bf_interval=1
# The virtual nodes claim more CPUs and memory than this host may have.
SlurmdParameters=config_overrides
ReturnToService=2
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$DBD_PORT
KillWait=5
CONF
  for i in $(seq 1 "$NODES"); do
    echo "NodeName=n$i NodeHostname=$HOST NodeAddr=127.0.0.1 Port=$((NODE_PORT_BASE + i)) CPUs=2 RealMemory=$NODE_MEMORY_MB State=UNKNOWN"
  done
  echo "PartitionName=debug Nodes=n[1-$NODES] Default=YES MaxTime=INFINITE State=UP"
} >"$CONF"

# -- slurmdbd, slurmctld, slurmd ----------------------------------------------
if ! running "$RUN/slurmdbd.pid"; then
  slurmdbd
  wait_for "sacctmgr -i show cluster" 30
fi
if ! sacctmgr -n -P show cluster format=cluster | grep -qx forge-test; then
  sacctmgr -i add cluster forge-test >/dev/null
fi
if ! running "$RUN/slurmctld.pid"; then
  slurmctld
fi
for i in $(seq 1 "$NODES"); do
  mkdir -p "$STATE_DIR/spool/n$i"
  if ! running "$RUN/slurmd-n$i.pid"; then
    slurmd -N "n$i"
  fi
done

# A node that runs a job recovered from the saved state reads mixed or allocated.
wait_for "[[ \$(sinfo -h -N -t idle,mixed,allocated -o %N | sort -u | wc -l) -ge $NODES ]]" 60
# Nodes left DOWN by an earlier run come back without a restart of the state.
scontrol update nodename="n[1-$NODES]" state=resume >/dev/null 2>&1 || true
sinfo
echo "Slurm cluster up: state in $STATE_DIR, config $CONF"
