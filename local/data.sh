#!/usr/bin/env bash
# Data preparation for the embedded corpus (default en/fr/it/nl; see docs/corpus.md).
#
# Usage: local/data.sh [--python python3] [--<option> <value> ...]
#   Every --<option> <value> pair is forwarded to local/build_corpus.py, e.g.
#   local/data.sh --nj 2 --seed 0 --langs en,fr,it,nl --voices_per_line 2
#   local/data.sh --langs cs --out_dir data/lang_cs      (Czech, real speech)
#   (run `PYTHONPATH=. python3 local/build_corpus.py --help` for all options).
# Relative paths are relative to the current directory. Checks that the Debian
# packages providing the sources/voices are installed and prints the exact
# `apt-get install` line if not; it never installs.
set -euo pipefail

log() {
    local fname=${BASH_SOURCE[1]##*/}
    echo -e "$(date '+%Y-%m-%dT%H:%M:%S') (${fname}:${BASH_LINENO[0]}:${FUNCNAME[1]}) $*" >&2
}

python=${PYTHON:-python3}
args=()
langs=""
while [ $# -gt 0 ]; do
    case "$1" in
        -h|--help)
            sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'
            exit 0 ;;
        --python)
            [ $# -ge 2 ] || { log "Error: --python needs a value"; exit 1; }
            python=$2; shift 2 ;;
        --*)
            [ $# -ge 2 ] || { log "Error: option $1 needs a value"; exit 1; }
            [ "$1" = --langs ] && langs=$2
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
)
# The recorded languages' packages are needed only when they are built (default: nl).
for lang in nl cs; do
    case ",${langs:-en,fr,it,nl}," in
        *,${lang},*) required+=("fillets-ng-data-${lang} ${fillets}/sound/airplane/${lang}") ;;
    esac
done
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

here=$(cd "$(dirname "$0")" && pwd)
log "Building the embedded corpus: ${python} ${here}/build_corpus.py ${args[*]:-}"
PYTHONPATH="${here}/..${PYTHONPATH:+:${PYTHONPATH}}" \
    "${python}" "${here}/build_corpus.py" "${args[@]}"
log "Successfully finished. [elapsed=${SECONDS}s]"
