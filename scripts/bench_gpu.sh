#!/usr/bin/env bash
# Every GPU figure genaug lacks, in one command: results.json + results.md in --out DIR (default ./bench-gpu-<date>/).
#   bash scripts/bench_gpu.sh [--out DIR] [--peak-tflops N] [--no-compile] ...   # needs a CUDA GPU (else exit 2)
#   bash scripts/bench_gpu.sh --cpu-smoke --out DIR                                # reduced CPU run, rows say "smoke"
# Python: $PYTHON, else the active virtualenv's, else the repo's .venv, else python3. `--help` lists every flag.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [[ -n "${PYTHON:-}" ]]; then
  py="$PYTHON"
elif [[ -n "${VIRTUAL_ENV:-}" && -x "$VIRTUAL_ENV/bin/python" ]]; then
  py="$VIRTUAL_ENV/bin/python"
elif [[ -x "$here/../.venv/bin/python" ]]; then
  py="$here/../.venv/bin/python"
else
  py=python3
fi
if [[ " $* " == *" --cpu-smoke "* ]]; then
  export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
fi
exec "$py" "$here/bench_gpu.py" "$@"
