#!/usr/bin/env bash
# One-time set-up, safe to rerun (does only what is missing):
#  1. Debian packages for data preparation and scoring (sox, TTS voices, sctk, corpora);
#  2. a Python 3.11 virtual environment (default .venv in the current directory) with
#     this repository installed in it (pip install -e ., which pulls espnet/torch/...).
# Usage: setup.sh [REPO_ROOT]   (env: VENV=path, SKIP_APT=1, PYTHON=python3.11)
set -euo pipefail
repo=$(cd "${1:-$(dirname "$0")/../../..}" && pwd)
venv=${VENV:-${repo}/.venv}
log() { echo "$(date '+%Y-%m-%dT%H:%M:%S') (setup.sh) $*"; }

apt_packages=(sox libsox-fmt-all espeak-ng festival festvox-kallpc16k festvox-kdlpc16k
  festvox-us-slt-hts festvox-italp16k festvox-itapc16k flite sctk fillets-ng-data
  fillets-ng-data-nl fillets-ng-data-cs)
if [ -z "${SKIP_APT:-}" ]; then
  missing=()
  for p in "${apt_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing Debian packages: ${missing[*]}"
    sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
    # Another set-up (the tests beside a run, two clones) may hold the dpkg lock: wait for
    # it (apt's own lock timeout) instead of failing on "Could not get lock".
    wait_lock=(-o DPkg::Lock::Timeout=900)
    $sudo apt-get "${wait_lock[@]}" update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get "${wait_lock[@]}" install -y -qq \
      --no-install-recommends "${missing[@]}" >/dev/null
  fi
fi

if [ ! -x "${venv}/bin/python" ]; then
  py=${PYTHON:-$(command -v python3.11 || command -v python3)}
  "$py" -c 'import sys; assert sys.version_info[:2] == (3, 11), sys.version' \
    || { echo "setup.sh: Python 3.11 is needed (espnet 202511); set PYTHON=" >&2; exit 1; }
  log "creating ${venv} with $py"
  "$py" -m venv "$venv"
fi
stamp=${venv}/.espnet_pathways_setup
want=$(md5sum "${repo}/setup.py" | cut -c1-32)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  log "installing espnet_pathways and its dependencies into ${venv} (first time: a few minutes)"
  # --no-compile: byte-compiling all of torch/espnet at install time took about a minute
  # on 2 cores (4.0 against 3.1 min, session 12); Python compiles what it imports instead.
  "${venv}/bin/pip" install -q --disable-pip-version-check --no-compile -e "${repo}[test]"
  echo "$want" >"$stamp"
fi
log "environment ready: ${venv}"
