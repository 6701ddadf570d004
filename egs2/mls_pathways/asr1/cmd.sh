# How jobs are run: decode_cmd (parallel decoding jobs) and cuda_cmd (multi-node training
# through espnet2.bin.launch, used by pathways.sh when --num_nodes > 1).
#   cmd_backend=local  this machine (utils/run_local.sh)
#   cmd_backend=slurm  sbatch --wait through utils/slurm.sh with conf/slurm.conf; cuda_cmd
#                      is its slurm.pl link, the name espnet2.bin.launch needs to use srun
cmd_backend=${cmd_backend:-local}
case "$cmd_backend" in
  local) decode_cmd="utils/run_local.sh"
         cuda_cmd="$decode_cmd" ;;
  slurm) decode_cmd="utils/slurm.sh --config conf/slurm.conf"
         cuda_cmd="utils/slurm.pl --config conf/slurm.conf" ;;
  *) echo "cmd.sh: unknown cmd_backend=$cmd_backend (local or slurm)" >&2; exit 1 ;;
esac
