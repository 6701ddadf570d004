#!/usr/bin/env bash
# A recipe of its own reusing the pathways stages: two languages (en, nl), its own data
# dirs, the repository's small configs.  See ../../../docs/reuse.md.
#   ./run.sh                              # everything (a few CPU hours on 2 cores)
#   ./run.sh --stage 11 --stop_stage 13   # any stage range
set -euo pipefail
cd "$(dirname "$0")"
../../TEMPLATE/asr_pathways/setup.sh ../../..    # the repository's .venv (no-op when ready)
./pathways.sh \
  --languages "en nl" \
  --train_set train --valid_set dev --test_sets test \
  --token_mode shared --nbpe 100 \
  --dense_config conf/train_dense.yaml \
  --dense_small_config conf/train_dense_small.yaml \
  --prune_config conf/prune_lsp.yaml \
  --lap_config conf/prune_lap.yaml \
  --pathways_config conf/train_pathways.yaml \
  --decode_config conf/decode.yaml \
  --nj 2 \
  "$@"
