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
# libtpu, for the TPU preflight (research/preflight.py) only: the version jax[tpu] pins for the
# installed jax, put in its own folder with `pip install --target`. Importable from
# site-packages it would make every JAX program on this CPU box probe for a TPU at start and
# print warnings about TPU_* environment variables; research.preflight adds the folder to its
# own sys.path. Skipped (the preflight then says how to install it) when pip cannot get it.
TPU_COMPILER="$VENV/tpu-compiler"
LIBTPU_REQ="$("$VENV/bin/python" -c 'from importlib import metadata
print(next((r.split(";")[0] for r in metadata.requires("jax") or [] if r.startswith("libtpu")
            and "tpu" in r.split(";")[-1]), "libtpu"))')"
if [ "$(cat "$TPU_COMPILER/.requirement" 2>/dev/null)" != "$LIBTPU_REQ" ]; then
  rm -rf "$TPU_COMPILER"
  if "$VENV/bin/pip" install --quiet --target "$TPU_COMPILER" --no-deps "$LIBTPU_REQ"; then
    echo "$LIBTPU_REQ" > "$TPU_COMPILER/.requirement"
  else
    echo "warning: could not install $LIBTPU_REQ; the TPU preflight and its tests will skip" >&2
  fi
fi
# Offline MNIST: TFDS reads the original archives from $TFDS_DATA_DIR/downloads/manual/.
export TFDS_DATA_DIR="${TFDS_DATA_DIR:-$ROOT/.tfds}"
SHARED_MNIST="${SHARED_MNIST:-$ROOT/../shared/data/mnist}"
if [ -d "$SHARED_MNIST" ] && [ ! -f "$TFDS_DATA_DIR/downloads/manual/train-images-idx3-ubyte.gz" ]; then
  mkdir -p "$TFDS_DATA_DIR/downloads/manual"
  cp "$SHARED_MNIST"/*.gz "$TFDS_DATA_DIR/downloads/manual/"  # copies: ../shared stays untouched
fi
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
cd "$ROOT"
