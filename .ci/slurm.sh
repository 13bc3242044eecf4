#!/usr/bin/env bash
# A real one-node SLURM on this machine, for the tests and benchmarks that
# run processing through dask-jobqueue (tests/test_slurm.py,
# benchmarks/slurm.py).
#
#   bash .ci/slurm.sh start    install (once) and start munge and SLURM
#   bash .ci/slurm.sh stop     cancel every job, then stop the daemons
#   bash .ci/slurm.sh status   exit 0 when the node answers
#
# Debian's packages, without their recommends (8 packages, not 43); no
# systemd: the daemons are started here and stopped by their PID files.
# The node is this machine (`hostname -s`) at 127.0.0.1, its CPUs and
# memory as `slurmd -C` reports them; no cgroups (proctrack/linuxproc,
# task/none), no accounting.  Everything SLURM writes (state, spool, PID
# and log files) is under $NDI_SLURM_DIR (default /var/tmp/ndi-slurm).
#
# Both commands are idempotent.  `start` refuses to replace a
# /etc/slurm/slurm.conf it did not write (a real cluster's).
set -euo pipefail

DIR="${NDI_SLURM_DIR:-/var/tmp/ndi-slurm}"
CONF=/etc/slurm/slurm.conf
MARK="# written by napari-diskimage .ci/slurm.sh"
PACKAGES=(slurmctld slurmd slurm-client munge)

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

alive() { # pid file -> 0 when its process runs
  [ -s "$1" ] && $SUDO kill -0 "$(cat "$1")" 2>/dev/null
}

install_packages() {
  local missing=()
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
  done
  if ((${#missing[@]})); then
    echo "slurm.sh: installing ${missing[*]}" >&2
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq \
      --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

write_conf() {
  if [ -e "$CONF" ] && ! grep -qF "$MARK" "$CONF"; then
    echo "slurm.sh: $CONF exists and was not written by this script; not touching it" >&2
    exit 1
  fi
  local host node
  host="$(hostname -s)"
  # "NodeName=vm CPUs=2 Boards=1 ... RealMemory=24105"
  node="$(slurmd -C | head -n 1)"
  $SUDO mkdir -p "$DIR/state" "$DIR/spool" /etc/slurm
  $SUDO tee "$CONF" >/dev/null <<EOF
$MARK
ClusterName=ndi
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
ReturnToService=2
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MailProg=/bin/true
KillWait=5
MinJobAge=30
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/slurmctld.log
SlurmdLogFile=$DIR/slurmd.log
$node NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
}

start() {
  install_packages
  write_conf
  if ! alive "$DIR/munged.pid"; then
    $SUDO mkdir -p /run/munge
    $SUDO chown munge:munge /run/munge
    $SUDO chmod 0755 /run/munge
    $SUDO runuser -u munge -- /usr/sbin/munged --pid-file=/run/munge/munged.pid
    $SUDO cp /run/munge/munged.pid "$DIR/munged.pid"
  fi
  alive "$DIR/slurmctld.pid" || $SUDO slurmctld -c -i
  alive "$DIR/slurmd.pid" || $SUDO slurmd
  local host
  host="$(hostname -s)"
  for _ in $(seq 100); do
    if sinfo -h -n "$host" -o %t 2>/dev/null | grep -Eq '^(idle|mix|alloc)'; then
      echo "slurm.sh: SLURM is up ($(sinfo -h -o '%P %D %c %t' | head -n 1))" >&2
      return 0
    fi
    # a node left down or drained by an earlier run
    $SUDO scontrol update nodename="$host" state=resume 2>/dev/null || true
    sleep 0.2
  done
  echo "slurm.sh: the node did not become idle; see $DIR/slurmctld.log and $DIR/slurmd.log" >&2
  sinfo >&2 || true
  exit 1
}

stop_daemon() { # pid file
  local pidfile="$1" pid
  alive "$pidfile" || return 0
  pid="$(cat "$pidfile")"
  $SUDO kill -TERM "$pid"
  for _ in $(seq 100); do
    $SUDO kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  $SUDO kill -KILL "$pid" 2>/dev/null || true
}

stop() {
  if alive "$DIR/slurmctld.pid"; then
    # jobs first: their slurmstepd outlives slurmd
    $SUDO scancel --full --user "$(id -un)" 2>/dev/null || true
    $SUDO scancel --full 2>/dev/null || true
    for _ in $(seq 150); do
      [ -z "$(squeue -h -o %i 2>/dev/null)" ] && break
      sleep 0.2
    done
  fi
  stop_daemon "$DIR/slurmd.pid"
  stop_daemon "$DIR/slurmctld.pid"
  stop_daemon "$DIR/munged.pid"
  echo "slurm.sh: SLURM stopped" >&2
}

status() {
  alive "$DIR/slurmctld.pid" && alive "$DIR/slurmd.pid" && sinfo -h >/dev/null 2>&1
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *)
    echo "usage: $0 start|stop|status" >&2
    exit 2
    ;;
esac
