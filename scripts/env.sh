# Sourced by scripts/train.sh and scripts/test.sh: a virtualenv with the project installed,
# and TFDS pointed at a writable data dir that holds the MNIST archives when we have them.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
VENV="${VENV:-$ROOT/.venv}"
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
# Install (or refresh) when setup.py is newer than the last install.
if [ ! -f "$VENV/.installed" ] || [ "$ROOT/setup.py" -nt "$VENV/.installed" ]; then
  "$VENV/bin/pip" install --quiet --upgrade pip
  "$VENV/bin/pip" install --quiet -e "$ROOT[test]"
  touch "$VENV/.installed"
fi
export PATH="$VENV/bin:$PATH"
# Offline MNIST: TFDS reads the original archives from $TFDS_DATA_DIR/downloads/manual/.
export TFDS_DATA_DIR="${TFDS_DATA_DIR:-$ROOT/.tfds}"
SHARED_MNIST="${SHARED_MNIST:-$ROOT/../shared/data/mnist}"
if [ -d "$SHARED_MNIST" ] && [ ! -f "$TFDS_DATA_DIR/downloads/manual/train-images-idx3-ubyte.gz" ]; then
  mkdir -p "$TFDS_DATA_DIR/downloads/manual"
  cp "$SHARED_MNIST"/*.gz "$TFDS_DATA_DIR/downloads/manual/"  # copies: ../shared stays untouched
fi
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
cd "$ROOT"
