#!/usr/bin/env bash
# The test command: set-up (Debian packages, .venv, pip install -e .) then the suite,
# including a smoke run of the whole recipe on a tiny corpus and tiny models.
#   bash tests/run_tests.sh [pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
egs2/TEMPLATE/asr_pathways/setup.sh .
# Two workers, one test file at a time each (tests/conftest.py starts the smoke file
# first): the smoke run's process starts and one-thread stages leave a core idle that the
# unit tests fill.  `bash tests/run_tests.sh -n 0` runs everything in one process.
exec .venv/bin/python -m pytest tests -q -n 2 --dist loadfile "$@"
