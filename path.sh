# Sourced by the recipe scripts: the environment made by egs2/TEMPLATE/asr_pathways/setup.sh.
MAIN_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export VIRTUAL_ENV=${VENV:-${MAIN_ROOT}/.venv}
export PATH=${VIRTUAL_ENV}/bin:${PATH}
export PYTHONUNBUFFERED=1
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
export MPLBACKEND=Agg
