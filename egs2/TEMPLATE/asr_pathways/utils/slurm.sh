#!/usr/bin/env bash
# Slurm job runner with the run.pl / run_local.sh calling convention:
#   slurm.sh [options] JOB=1:N exp/log/decode.JOB.log python -m ... --key_file keys.JOB
#   slurm.sh [options] exp/log/train.log srun --export=ALL python -m ...   (one job)
# Options (Kaldi slurm.pl names): --config FILE [conf/slurm.conf if present]
#   --gpu N  --num_threads N  --mem SIZE  --time D-HH:MM:SS  --num_nodes N
#   --max_jobs_run N (array throttle)   any other --name value is looked up in the config.
# Submits one job array with `sbatch --wait` (one task per JOB value) and waits for it;
# "JOB" in the log path and in the command is replaced by the task's number.  Each job
# writes its log like run_local.sh ("# Accounting: ... rc=N" at the end); the runner
# fails, listing the failed logs, if any task fails.  Slurm's own output (e.g. an OOM
# kill) goes to <logdir>/q/<name>.<task>.out.
#
# Config file format (the one of Kaldi's/ESPnet's slurm.pl conf/slurm.conf):
#   command sbatch --export=ALL          # the submit command and fixed options
#   default gpu=0                        # value used when the option is not given
#   option gpu=0                         # exact value -> these sbatch options (none here)
#   option gpu=* --gres=gpu:$0 -p gpu    # any value, $0 = the value
# Without a config: sbatch --export=ALL, --gpu N -> --gres=gpu:N, --num_threads N ->
# --cpus-per-task=N, --mem -> --mem-per-cpu, --time -> --time, --num_nodes N -> --nodes=N.
#
# Multi-node training: espnet2.bin.launch picks its Slurm path (srun, one task per node,
# --dist_launcher slurm) only for a runner *named* slurm.pl, so point cuda_cmd at the
# slurm.pl link next to this file (see cmd.sh).
set -u
declare -A opt=()
config=
[ -f conf/slurm.conf ] && config=conf/slurm.conf
max_jobs_run=
while [[ $# -gt 0 && "$1" == --* ]]; do
  [ $# -ge 2 ] || { echo "$0: option $1 needs a value" >&2; exit 1; }
  case "$1" in
    --config) config=$2 ;;
    --max_jobs_run) max_jobs_run=$2 ;;
    *) opt[${1#--}]=$2 ;;
  esac
  shift 2
done
array=
if [[ $# -ge 1 && "$1" =~ ^([A-Za-z]+)=([0-9]+):([0-9]+)$ ]]; then
  var=${BASH_REMATCH[1]}; first=${BASH_REMATCH[2]}; last=${BASH_REMATCH[3]}; array=1; shift
else
  var=JOB; first=1; last=1
fi
if [ $# -lt 2 ]; then
  echo "usage: $0 [--gpu N ...] [JOB=1:N] LOG COMMAND..." >&2; exit 1
fi
log=$1; shift
[ "$first" -le "$last" ] || { echo "$0: empty job range $first:$last" >&2; exit 1; }

# ---- sbatch options from the config (or the built-in defaults)
submit=(sbatch --export=ALL)
sbatch_opts=()
if [ -n "$config" ]; then
  [ -f "$config" ] || { echo "$0: no config file $config" >&2; exit 1; }
  declare -A exact=() wild=()
  while read -r kind rest; do
    case "$kind" in
      command) read -r -a submit <<<"$rest" ;;
      default) n=${rest%%=*}; [ -n "${opt[$n]+x}" ] || opt[$n]=${rest#*=} ;;
      option) spec=${rest%% *}; args=""; [[ "$rest" == *" "* ]] && args=${rest#* }
              n=${spec%%=*}; v=${spec#*=}
              if [ "$v" = "*" ]; then wild[$n]=$args; else exact["$n=$v"]=$args; fi ;;
      ""|\#*) ;;
      *) echo "$0: $config: cannot parse line: $kind $rest" >&2; exit 1 ;;
    esac
  done < <(sed 's/#.*//' "$config")
  for n in "${!opt[@]}"; do
    v=${opt[$n]}
    if [ -n "${exact["$n=$v"]+x}" ]; then args=${exact["$n=$v"]}
    elif [ -n "${wild[$n]+x}" ]; then args=${wild[$n]//\$0/$v}
    else echo "$0: option --$n is not in $config" >&2; exit 1; fi
    read -r -a a <<<"$args"; sbatch_opts+=("${a[@]}")
  done
else
  for n in "${!opt[@]}"; do
    v=${opt[$n]}
    case "$n" in
      gpu) [ "$v" -gt 0 ] && sbatch_opts+=("--gres=gpu:$v") ;;
      num_threads) sbatch_opts+=("--cpus-per-task=$v") ;;
      mem) sbatch_opts+=("--mem-per-cpu=$v") ;;
      time) sbatch_opts+=("--time=$v") ;;
      num_nodes) sbatch_opts+=("--nodes=$v" "--ntasks-per-node=1") ;;
      *) echo "$0: unknown option --$n (give a --config)" >&2; exit 1 ;;
    esac
  done
fi

# ---- the job script: the command stored as an array, JOB substituted at run time
logdir=$(dirname "$log"); mkdir -p "$logdir/q"
name=$(basename "$log"); name=${name//.$var/}; name=${name%.log}
script=$logdir/q/$name.sh
{
  echo "#!/usr/bin/env bash"
  printf 'cd %q\n' "$PWD"
  printf 'task=${SLURM_ARRAY_TASK_ID:-%s}\n' "$first"
  printf 'log=%q\n' "$log"
  printf 'log=${log//%s/$task}\n' "$var"
  printf 'cmd=('; printf ' %q' "$@"; printf ' )\n'
  printf 'for i in "${!cmd[@]}"; do cmd[$i]=${cmd[$i]//%s/$task}; done\n' "$var"
  cat <<'EOS'
mkdir -p "$(dirname "$log")"
( echo "# ${cmd[*]}"; echo "# Started at $(date) on $(hostname) (slurm job ${SLURM_JOB_ID:-?})"
  "${cmd[@]}"; rc=$?
  echo "# Accounting: end at $(date), rc=$rc"; exit $rc ) >"$log" 2>&1
EOS
} >"$script"
chmod +x "$script"
for ((j = first; j <= last; j++)); do rm -f "${log//$var/$j}"; done

range=
if [ -n "$array" ]; then
  range="--array=${first}-${last}${max_jobs_run:+%${max_jobs_run}}"
  out="$logdir/q/$name.%a.out"
else
  out="$logdir/q/$name.out"
fi
"${submit[@]}" --wait --job-name="$name" --output="$out" ${range:+"$range"} "${sbatch_opts[@]}" "$script"
src=$?

failed=()
for ((j = first; j <= last; j++)); do
  jlog=${log//$var/$j}
  grep -q "^# Accounting: .*rc=0$" "$jlog" 2>/dev/null || failed+=("$jlog")
done
if [ ${#failed[@]} -gt 0 ] || [ $src -ne 0 ]; then
  echo "$0: ${#failed[@]} job(s) failed (sbatch exit $src); see ${failed[*]:-$logdir/q/}" >&2
  for f in "${failed[@]}"; do tail -n 5 "$f" >&2 2>/dev/null; done
  exit 1
fi
