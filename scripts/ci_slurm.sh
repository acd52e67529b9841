#!/usr/bin/env bash
# Install and start a single-node Slurm on this machine, for the `xbench run --executor slurm`
# integration test (tests/scale/test_slurm_integration.py, `pytest -m slurm tests/scale`).
#
#   bash scripts/ci_slurm.sh          # idempotent: returns at once when the node is already idle
#
# Debian's slurm-wlm (slurmctld + slurmd + client tools) and munge; every daemon runs as root
# (CI machines are throw-away); the node is described by `slurmd -C` (this host's CPUs and
# memory); one partition `debug`, consumable cores so that several one-CPU tasks run at once;
# no accounting database (xbench follows jobs with squeue and its own results store).
# The shared filesystem is the local disk. Logs: /var/log/slurm/.
set -euo pipefail

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

if sinfo -h -o %t 2>/dev/null | grep -qx idle; then
  echo "ci_slurm: a Slurm node is already idle"; sinfo; exit 0
fi

if ! command -v slurmctld >/dev/null 2>&1 || ! command -v slurmd >/dev/null 2>&1 \
   || ! command -v munged >/dev/null 2>&1 || ! command -v sbatch >/dev/null 2>&1; then
  echo "ci_slurm: installing slurm-wlm and munge"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    slurm-wlm slurm-client munge >/dev/null
fi

# munge: a key, then the daemon as the munge user
if [ ! -s /etc/munge/munge.key ]; then
  if command -v mungekey >/dev/null 2>&1; then $SUDO mungekey --create --force; \
  else $SUDO dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none; fi
fi
$SUDO chown munge:munge /etc/munge/munge.key
$SUDO chmod 0400 /etc/munge/munge.key
$SUDO mkdir -p /run/munge /var/log/munge /var/lib/munge
$SUDO chown munge:munge /run/munge /var/log/munge /var/lib/munge
if ! pgrep -u munge -x munged >/dev/null 2>&1; then
  $SUDO runuser -u munge -- /usr/sbin/munged
fi
for _ in $(seq 1 20); do munge -n </dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.5; done
munge -n </dev/null | unmunge >/dev/null

# slurm.conf for this host (which must resolve: slurmd and slurmctld find each other by name)
host="$(hostname -s)"
if ! getent hosts "$host" >/dev/null 2>&1; then
  echo "127.0.0.1 $host" | $SUDO tee -a /etc/hosts >/dev/null
fi
node_line="$(slurmd -C | head -n 1)"           # NodeName=<host> CPUs=.. Boards=.. ... RealMemory=..
$SUDO mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm
$SUDO tee /etc/slurm/slurm.conf >/dev/null <<EOF
ClusterName=xbench-ci
SlurmctldHost=${host}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
MinJobAge=600
KillWait=10
${node_line} State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF

if ! pgrep -x slurmctld >/dev/null 2>&1; then $SUDO slurmctld; fi
if ! pgrep -x slurmd >/dev/null 2>&1; then $SUDO slurmd; fi

for _ in $(seq 1 60); do
  state="$(sinfo -h -o %t 2>/dev/null | head -n 1 || true)"
  if [ "$state" = "idle" ]; then echo "ci_slurm: node ${host} idle"; sinfo; exit 0; fi
  if [ "$state" = "down" ] || [ "$state" = "drain" ] || [ "$state" = "down*" ]; then
    $SUDO scontrol update NodeName="${host}" State=RESUME >/dev/null 2>&1 || true
  fi
  sleep 1
done
echo "ci_slurm: the node did not become idle (state: ${state:-none}); see /var/log/slurm/*.log" >&2
sinfo >&2 || true
tail -n 20 /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log >&2 || true
exit 1
