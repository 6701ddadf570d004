#!/usr/bin/env bash
# Data preparation for Multilingual LibriSpeech (openslr.org/94, flac version).
#
# Usage: local/data.sh --mls_root /path/to/mls [--langs english,french,italian,dutch]
#                      [--hours_cap it=10,nl=20] [--cap_by speaker|utt]
#                      [--data_dir data] [--check_audio true|false] [--python python3]
#   Expects <mls_root>/mls_<language>/{train,dev,test}/{transcripts.txt,audio/...};
#   writes <data_dir>/{train,dev,test}/{wav.scp,text,utt2spk,spk2utt,utt2lang} (all
#   languages pooled, utt2lang = en fr it nl ...) and <data_dir>/local/corpus_summary.tsv.
#   --hours_cap caps a language's train split (deterministic) to make it low-resource.
#   Anything missing (language dir, split, transcripts.txt, audio) is named exactly.
set -euo pipefail

log() {
    local fname=${BASH_SOURCE[1]##*/}
    echo -e "$(date '+%Y-%m-%dT%H:%M:%S') (${fname}:${BASH_LINENO[0]}:${FUNCNAME[1]}) $*" >&2
}

python=${PYTHON:-python3}
mls_root=
langs="english french italian dutch"
hours_cap=""
cap_by=speaker
data_dir=data
check_audio=true
while [ $# -gt 0 ]; do
    case "$1" in
        -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        --python|--mls_root|--langs|--hours_cap|--cap_by|--data_dir|--check_audio)
            [ $# -ge 2 ] || { log "Error: option $1 needs a value"; exit 1; }
            name=${1#--}; printf -v "$name" '%s' "$2"; shift 2 ;;
        *) log "Error: unknown argument '$1' (see $0 --help)"; exit 1 ;;
    esac
done
[ -n "$mls_root" ] || { log "Error: --mls_root is required (the directory holding mls_<language>/)"; exit 1; }

here=$(cd "$(dirname "$0")" && pwd)
log "Preparing MLS (${langs}) from ${mls_root} -> ${data_dir}${hours_cap:+ (train caps: ${hours_cap})}"
"$python" "${here}/prepare_mls.py" --mls_root "$mls_root" --langs "$langs" \
    --hours_cap "$hours_cap" --cap_by "$cap_by" --data_dir "$data_dir" --check_audio "$check_audio"
log "Successfully finished. [elapsed=${SECONDS}s]"
