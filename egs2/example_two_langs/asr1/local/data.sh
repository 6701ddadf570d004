#!/usr/bin/env bash
# Data for this example: a two-language (en, nl) subset of the embedded corpus, built
# offline from Debian packages (installed by ../../TEMPLATE/asr_pathways/setup.sh) by the
# default recipe's builder (../../../local/data.sh, see docs/corpus.md), run by path.
# Any --option value pair is forwarded to it, e.g.
#   local/data.sh --max_lines_per_lang 50 --voices_per_line 1
# Writes data/{train,dev,test} (wav.scp text utt2spk spk2utt utt2lang utt2dur spk2voice)
# in this directory.
set -euo pipefail
cd "$(dirname "$0")/.."
../../../local/data.sh --langs en,nl \
  --low_resource_lang nl --low_resource_fraction 0.5 \
  --out_dir data --audio_dir downloads/embedded_corpus "$@"
