# Sourced by pathways.sh: the repository's environment (its .venv, made by
# egs2/TEMPLATE/asr_pathways/setup.sh); VENV=/path overrides it.
. "$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)/path.sh"
