#!/usr/bin/env bash
# GPU check of pathway training at scale (issue 8, item 7): on one CUDA device,
#   1. a tiny pathway model trains 50 steps with AMP; asserts the masks are on the GPU and
#      never copied in a forward;
#   2. dense vs pathway step time (homogeneous and mixed batches) and peak GPU memory at
#      the MLS recipe's paper-scale configuration (read from the config, not hard-coded);
#   3. a few utterances decoded streaming.
# Usage: benchmarks/gpu_check.sh [CONFIG] [gpu_check.py options, e.g. --batch 16 --seconds 15]
# Without CUDA it stops with a message (the CPU proof of DDP is tests/test_ddp.py).
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-.venv/bin/python}
config=${1:-egs2/mls_pathways/asr1/conf/train_dense.yaml}
[ $# -gt 0 ] && shift
if ! "$python" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
  echo "gpu_check.sh: CUDA is not available: this check needs a GPU" \
       "(dry run on the CPU: $python benchmarks/gpu_check.py --device cpu --tiny)" >&2
  exit 1
fi
[ -f "$config" ] || { echo "gpu_check.sh: no config $config" >&2; exit 1; }
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
exec "$python" benchmarks/gpu_check.py --device cuda --config "$config" "$@"
