#!/usr/bin/env bash
# Data preparation for the embedded en/fr/it/nl corpus (see docs/corpus.md).
#
# Usage: local/data.sh [--python python3] [--<option> <value> ...]
#   Every --<option> <value> pair is forwarded to
#   `python -m espnet_pathways.bin.build_corpus`, e.g.
#   local/data.sh --nj 2 --seed 0 --langs en,fr,it,nl --voices_per_line 2
#   (run `python3 -m espnet_pathways.bin.build_corpus --help` for all options).
# Checks that the Debian packages providing the sources/voices are installed
# and prints the exact `apt-get install` line if not; it never installs.
set -euo pipefail

log() {
    local fname=${BASH_SOURCE[1]##*/}
    echo -e "$(date '+%Y-%m-%dT%H:%M:%S') (${fname}:${BASH_LINENO[0]}:${FUNCNAME[1]}) $*" >&2
}

python=${PYTHON:-python3}
args=()
while [ $# -gt 0 ]; do
    case "$1" in
        -h|--help)
            sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'
            exit 0 ;;
        --python)
            [ $# -ge 2 ] || { log "Error: --python needs a value"; exit 1; }
            python=$2; shift 2 ;;
        --*)
            [ $# -ge 2 ] || { log "Error: option $1 needs a value"; exit 1; }
            args+=("$1" "$2"); shift 2 ;;
        *)
            log "Error: unexpected argument '$1' (options are --key value)"; exit 1 ;;
    esac
done

# "<package> <check>" pairs: a binary name or an absolute path that must exist.
fillets=/usr/share/games/fillets-ng
voices=/usr/share/festival/voices
required=(
    "sox sox"
    "libsox-fmt-all ogg-support"
    "espeak-ng espeak-ng"
    "festival text2wave"
    "festvox-kallpc16k ${voices}/english/kal_diphone"
    "festvox-kdlpc16k ${voices}/english/ked_diphone"
    "festvox-us-slt-hts ${voices}/us/cmu_us_slt_arctic_hts"
    "festvox-italp16k ${voices}/italian/lp_diphone"
    "festvox-itapc16k ${voices}/italian/pc_diphone"
    "flite flite"
    "fillets-ng-data ${fillets}/script"
    "fillets-ng-data-nl ${fillets}/sound/airplane/nl"
)
missing=()
for entry in "${required[@]}"; do
    pkg=${entry%% *}; check=${entry#* }
    case "${check}" in
        ogg-support) command -v sox >/dev/null && sox -h 2>&1 | grep -qw vorbis ;;
        /*) [ -e "${check}" ] ;;
        *) command -v "${check}" >/dev/null ;;
    esac || missing+=("${pkg}")
done
if [ ${#missing[@]} -gt 0 ]; then
    log "Error: missing Debian packages; install them with:"
    log "  sudo apt-get install -y ${missing[*]}"
    exit 1
fi

cd "$(dirname "$0")/.."
log "Building the embedded corpus: ${python} -m espnet_pathways.bin.build_corpus ${args[*]:-}"
PYTHONPATH="${PWD}${PYTHONPATH:+:${PYTHONPATH}}" \
    "${python}" -m espnet_pathways.bin.build_corpus "${args[@]}"
log "Successfully finished. [elapsed=${SECONDS}s]"
