# How jobs are run: decode_cmd (parallel decoding jobs) and cuda_cmd (multi-node training
# through espnet2.bin.launch).  Default: this machine.  For Slurm, set
#   cmd_backend=slurm   (and adapt conf/slurm.conf partitions)
cmd_backend=${cmd_backend:-local}
case "$cmd_backend" in
  local) decode_cmd="egs2/TEMPLATE/asr_pathways/utils/run_local.sh"
         cuda_cmd="$decode_cmd" ;;
  # sbatch --wait job arrays; cuda_cmd is the slurm.pl link (espnet2.bin.launch uses srun
  # for multi-node training only for a runner of that name).  Without conf/slurm.conf the
  # runner's built-in defaults apply (see the header of utils/slurm.sh).
  slurm) slurm_conf=$([ -f conf/slurm.conf ] && echo conf/slurm.conf || echo egs2/mls_pathways/asr1/conf/slurm.conf)
         decode_cmd="egs2/TEMPLATE/asr_pathways/utils/slurm.sh --config ${slurm_conf}"
         cuda_cmd="egs2/TEMPLATE/asr_pathways/utils/slurm.pl --config ${slurm_conf}" ;;
  *) echo "cmd.sh: unknown cmd_backend=$cmd_backend (local or slurm)" >&2; exit 1 ;;
esac
