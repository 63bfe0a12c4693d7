#!/usr/bin/env bash
# The main job: set up (venv, install, kernels, data) then train the default experiment, the
# seed CNN, into WORKDIR (default runs/CONFIG_NAME; a workdir holding a run of another config is
# refused, so give a new WORKDIR= when changing flags):
#   bash scripts/train.sh
#   WORKDIR=runs/short bash scripts/train.sh --config.num_epochs=1
#   CONFIG=configs/mnist_mlp.py bash scripts/train.sh
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
CONFIG="${CONFIG:-configs/mnist_cnn.py}"
WORKDIR="${WORKDIR:-runs/$(basename "$CONFIG" .py)}"
python -m research.main --config="$CONFIG" --workdir="$WORKDIR" "$@"
echo "results: $WORKDIR/results.json"
cat "$WORKDIR/results.json"
