#!/usr/bin/env bash
# The test command: set-up (Debian packages, .venv, pip install -e .) then the suite,
# including a smoke run of the whole recipe on a tiny corpus and tiny models.
#   bash tests/run_tests.sh [pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
egs2/TEMPLATE/asr_pathways/setup.sh .
exec .venv/bin/python -m pytest tests -q "$@"
