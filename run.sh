#!/usr/bin/env bash
# The default recipe: dense multilingual streaming RNN-T (and its pathways) on the
# embedded four-language corpus (en fr it nl) built offline from Debian packages.
#   ./run.sh                          # everything, set-up included
#   ./run.sh --stage 11 --stop_stage 13   # redo decoding, scoring and RESULTS.md
# Options: see egs2/TEMPLATE/asr_pathways/pathways.sh --help and docs/recipe.md.
# --lsp_prune_every: the LSP-IMP pruning interval per language, chosen on the dev set
# (conf/tuning/dev_choices.md); --use_lm true: one RNN LM per language fused into every
# system's beam search, as asr.sh's default use_lm=true (chosen on dev:
# conf/tuning/dense_tuning.md, round 17; `./run.sh --use_lm false` decodes without);
# the other defaults are pathways.sh's and the configs'.
set -euo pipefail
cd "$(dirname "$0")"
egs2/TEMPLATE/asr_pathways/setup.sh .
egs2/TEMPLATE/asr_pathways/pathways.sh \
  --languages "en fr it nl" \
  --train_set train --valid_set dev --test_sets test \
  --token_mode shared --bpe_model_type char --nbpe 80 \
  --dense_config conf/train_dense.yaml \
  --lsp_prune_every "en=20 fr=30 it=40 nl=20" \
  --decode_config conf/decode.yaml --use_lm true \
  --nj 2 \
  "$@"
