# How jobs are run: decode_cmd (parallel decoding jobs) and cuda_cmd (multi-node training
# through espnet2.bin.launch).  Default: this machine.  For Slurm, set
#   cmd_backend=slurm   (and adapt conf/slurm.conf partitions)
cmd_backend=${cmd_backend:-local}
case "$cmd_backend" in
  local) decode_cmd="egs2/TEMPLATE/asr_pathways/utils/run_local.sh"
         cuda_cmd="$decode_cmd" ;;
  *) echo "cmd.sh: unknown cmd_backend=$cmd_backend" >&2; exit 1 ;;
esac
