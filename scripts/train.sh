#!/usr/bin/env bash
# The main job: set up (venv, install, data) then train the default experiment, the seed CNN.
#   bash scripts/train.sh [extra flags, e.g. --config.num_epochs=1]
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
CONFIG="${CONFIG:-configs/mnist_cnn.py}"
WORKDIR="${WORKDIR:-runs/$(basename "$CONFIG" .py)}"
python -m research.main --config="$CONFIG" --workdir="$WORKDIR" "$@"
echo "results: $WORKDIR/results.json"
cat "$WORKDIR/results.json"
