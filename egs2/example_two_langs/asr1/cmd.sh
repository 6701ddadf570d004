# How jobs are run (see ../../mls_pathways/asr1/cmd.sh for the Slurm variant).
decode_cmd="utils/run_local.sh"
cuda_cmd="$decode_cmd"
