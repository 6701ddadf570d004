#!/usr/bin/env bash
# Data for this example: a two-language (en, nl) subset of the embedded corpus, built
# offline from Debian packages (installed by ../../TEMPLATE/asr_pathways/setup.sh).
# Any --option value pair is forwarded to espnet_pathways.bin.build_corpus, e.g.
#   local/data.sh --max_lines_per_lang 50 --voices_per_line 1
# Writes data/{train,dev,test} (wav.scp text utt2spk spk2utt utt2lang) in this directory.
set -euo pipefail
python=${PYTHON:-python3}
cd "$(dirname "$0")/.."
"$python" -m espnet_pathways.bin.build_corpus --langs en,nl \
  --low_resource_lang nl --low_resource_fraction 0.5 \
  --out_dir data --audio_dir downloads/embedded_corpus "$@"
