#!/usr/bin/env bash
# Minimal local job runner with the run.pl calling convention:
#   run_local.sh JOB=1:4 exp/log/decode.JOB.log python -m ... --key_file keys.JOB
# Runs the jobs in parallel on this machine; "JOB" in the log path and the command is
# replaced by the job number.  Fails (listing the logs) if any job fails.
# Also the call espnet2.bin.launch makes on one node: run_local.sh --gpu N LOG COMMAND...
# (one job; the GPUs are the machine's own, so --gpu is accepted and not needed).
set -u
[ "${1:-}" = --gpu ] && shift 2
[[ $# -ge 2 && ! "$1" =~ = ]] && set -- RUNLOCALSINGLEJOB=1:1 "$@"
if [[ $# -lt 3 || ! "$1" =~ ^([A-Za-z]+)=([0-9]+):([0-9]+)$ ]]; then
  echo "usage: $0 JOB=1:N LOG COMMAND..." >&2; exit 1
fi
var=${BASH_REMATCH[1]}; first=${BASH_REMATCH[2]}; last=${BASH_REMATCH[3]}
log=$2; shift 2
pids=()
for ((j = first; j <= last; j++)); do
  jlog=${log//$var/$j}
  mkdir -p "$(dirname "$jlog")"
  cmd=()
  for a in "$@"; do cmd+=("${a//$var/$j}"); done
  ( echo "# ${cmd[*]}"; echo "# Started at $(date)"; "${cmd[@]}"; rc=$?
    echo "# Accounting: end at $(date), rc=$rc"; exit $rc ) >"$jlog" 2>&1 &
  pids+=($!)
done
failed=()
for i in "${!pids[@]}"; do
  wait "${pids[$i]}" || failed+=("${log//$var/$((first + i))}")
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "$0: ${#failed[@]} job(s) failed; see ${failed[*]}" >&2
  for f in "${failed[@]}"; do tail -n 5 "$f" >&2; done
  exit 1
fi
