#!/usr/bin/env bash
# The test suite: set up (venv, install, kernels, data) then pytest, the test files spread over
# two workers (pytest-xdist; a file's tests stay on one worker, so its fixtures are built once).
# Extra args go to pytest: `-m "not slow"` skips the long end-to-end checks, `-n 0` runs serially.
# The TPU preflight's tests need the TPU compiler (`python -m research.tpu.preflight
# --install_compiler`, which .ci/run does); without it they skip, saying so.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
python -m pytest -q -n 2 --dist loadfile tests "$@"
