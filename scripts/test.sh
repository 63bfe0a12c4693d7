#!/usr/bin/env bash
# The test suite: set up (venv, install, data) then pytest. Extra args go to pytest.
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
python -m pytest -q tests "$@"
