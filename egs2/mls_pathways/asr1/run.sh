#!/usr/bin/env bash
# ASR pathways on Multilingual LibriSpeech (en fr it nl) at paper scale (~100M params).
#   ./run.sh --mls_root /data/mls                          # everything, 1 GPU
#   ./run.sh --mls_root /data/mls --ngpu 8                 # one node, 8 GPUs (DDP)
#   cmd_backend=slurm ./run.sh --mls_root /data/mls --ngpu 8 --num_nodes 4
#   ./run.sh --stage 11 --stop_stage 13                    # redo decoding/scoring/RESULTS.md
# Italian is made low-resource as in the paper with --hours_cap (default "it=10"; give
# --hours_cap "" for the full corpus).  Other options go to pathways.sh (see its --help
# and ../../../docs/recipe.md).  Run from anywhere; it works in this directory.
set -euo pipefail
cd "$(dirname "$0")"

mls_root=${MLS_ROOT:-}
mls_langs=english,french,italian,dutch   # comma-separated: pathways.sh word-splits local_data_opts
hours_cap="it=10"
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --mls_root) mls_root=$2; shift 2 ;;
    --mls_langs) mls_langs=$2; shift 2 ;;
    --hours_cap) hours_cap=$2; shift 2 ;;
    *) args+=("$1"); shift ;;
  esac
done

../../TEMPLATE/asr_pathways/setup.sh ../../..   # the repository's .venv (no-op when ready)

# Stage 1 needs --mls_root (local/data.sh says so if it is missing); later stages read
# data/ and dump/ only.  No spaces in values: pathways.sh word-splits local_data_opts.
local_data_opts="--langs ${mls_langs// /,}"
[ -n "$mls_root" ] && local_data_opts+=" --mls_root ${mls_root}"
[ -n "$hours_cap" ] && local_data_opts+=" --hours_cap ${hours_cap// /,}"

# Language codes (utt2lang, language ids) in the order of --mls_langs.
languages=""
for l in ${mls_langs//,/ }; do
  case "$l" in
    english|en) c=en ;; french|fr) c=fr ;; italian|it) c=it ;; dutch|nl) c=nl ;;
    german|de) c=de ;; spanish|es) c=es ;; portuguese|pt) c=pt ;; polish|pl) c=pl ;;
    *) echo "$0: unknown MLS language $l" >&2; exit 1 ;;
  esac
  languages+="${languages:+ }$c"
done

# --match_compute false: the paper's step counts (conf/train_pathways.yaml), not the sum of
# the per-language pruning runs (4 x 350K steps); see docs/recipe.md.
./pathways.sh \
  --languages "$languages" \
  --train_set train --valid_set dev --test_sets test \
  --local_data_opts "$local_data_opts" \
  --token_mode merged --nbpe 512 \
  --dense_config conf/train_dense.yaml \
  --dense_small_config conf/train_dense_small.yaml \
  --prune_config conf/prune_lsp.yaml \
  --lap_config conf/prune_lap.yaml \
  --pathways_config conf/train_pathways.yaml \
  --decode_config conf/decode.yaml \
  --target_sparsity 0.7 \
  --match_compute false \
  --nj 8 --ngpu 1 \
  "${args[@]}"
