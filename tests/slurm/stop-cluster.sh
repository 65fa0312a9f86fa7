#!/usr/bin/env bash
# Stop the daemons that start-cluster.sh started, by the pids it recorded.
#
# Cancels the cluster's jobs, then stops the slurmds, slurmctld, slurmdbd,
# mariadbd and munged (munged only if start-cluster.sh started it) and waits
# for each to exit. State stays in
# $FORGE_SLURM_DIR, so the next start reuses the accounting database.
set -euo pipefail

STATE_DIR="${FORGE_SLURM_DIR:-/tmp/forge-slurm}"
RUN="$STATE_DIR/run"

stop() {
  local pid_file="$1"
  [[ -f "$pid_file" ]] || return 0
  local pid
  pid="$(cat "$pid_file")"
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid"
    for _ in $(seq 1 100); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
      echo "pid $pid ($pid_file) did not stop within 10 s; sending KILL" >&2
      kill -9 "$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$pid_file"
}

# Jobs outlive slurmd (their slurmstepd processes keep running), so cancel
# every job of this test cluster first and wait up to 30 s for them to end.
if [[ -f "$RUN/slurmctld.pid" ]] && kill -0 "$(cat "$RUN/slurmctld.pid")" 2>/dev/null; then
  jobs="$(squeue --noheader --format=%A 2>/dev/null || true)"
  if [[ -n "$jobs" ]]; then
    # shellcheck disable=SC2086 # one job id per word
    scancel $jobs || true
    for _ in $(seq 1 60); do
      [[ -z "$(squeue --noheader --format=%A 2>/dev/null)" ]] && break
      sleep 0.5
    done
  fi
fi

for pid_file in "$RUN"/slurmd-*.pid; do
  [[ -e "$pid_file" ]] && stop "$pid_file"
done
stop "$RUN/slurmctld.pid"
stop "$RUN/slurmdbd.pid"
stop "$RUN/mariadbd.pid"
stop "$RUN/munged.pid"
echo "Slurm cluster stopped"
