# Sourced by scripts/train.sh and scripts/test.sh: a virtualenv with the project installed,
# and TFDS pointed at a writable data dir that holds the original archives when we have them.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
VENV="${VENV:-$ROOT/.venv}"
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
# Install (or refresh) when setup.py is newer than the last install.
if [ ! -f "$VENV/.installed" ] || [ "$ROOT/setup.py" -nt "$VENV/.installed" ]; then
  echo "installing the project into $VENV (a few minutes the first time)" >&2
  "$VENV/bin/pip" install --quiet --disable-pip-version-check --upgrade pip 2>/dev/null
  "$VENV/bin/pip" install --quiet --disable-pip-version-check -e "$ROOT[test]" 2>&1 \
    | grep -vE "^WARNING: Location|BuildBackendWarning|^ *(!!|\*+)?$|careful with folders|take precedence during imports|WheelFile\(wheel_path" >&2 || true
  "$VENV/bin/python" -c "import research, jax, flax, tensorflow_datasets" \
    || { echo "error: installing the project into $VENV failed (see above)" >&2; return 1 2>/dev/null || exit 1; }
  touch "$VENV/.installed"
fi
export PATH="$VENV/bin:$PATH"
# libtpu, for the TPU preflight (research/tpu/preflight.py) only: the version jax[tpu] pins for the
# installed jax, put in its own folder with `pip install --target`. Importable from
# site-packages it would make every JAX program on this CPU box probe for a TPU at start and
# print warnings about TPU_* environment variables; research.tpu.preflight adds the folder to its
# own sys.path. Skipped (the preflight then says how to install it) when pip cannot get it.
TPU_COMPILER="$VENV/tpu-compiler"
LIBTPU_REQ="$("$VENV/bin/python" -c 'from importlib import metadata
print(next((r.split(";")[0] for r in metadata.requires("jax") or [] if r.startswith("libtpu")
            and "tpu" in r.split(";")[-1]), "libtpu"))')"
if [ "$(cat "$TPU_COMPILER/.requirement" 2>/dev/null)" != "$LIBTPU_REQ" ]; then
  rm -rf "$TPU_COMPILER"
  if "$VENV/bin/pip" install --quiet --disable-pip-version-check --target "$TPU_COMPILER" \
      --no-deps "$LIBTPU_REQ" 2> >(grep -v "^WARNING: Location" >&2); then
    echo "$LIBTPU_REQ" > "$TPU_COMPILER/.requirement"
  else
    echo "warning: could not install $LIBTPU_REQ; the TPU preflight and its tests will skip" >&2
  fi
fi
# Offline data: TFDS reads the original archives from $TFDS_DATA_DIR/downloads/manual/NAME/.
# MNIST and Fashion-MNIST archives have the same file names, so each gets its own folder.
export TFDS_DATA_DIR="${TFDS_DATA_DIR:-$ROOT/.tfds}"
SHARED_DATA="${SHARED_DATA:-$ROOT/../shared/data}"
for name in mnist fashion_mnist; do
  if [ -d "$SHARED_DATA/$name" ] && [ ! -f "$TFDS_DATA_DIR/downloads/manual/$name/train-images-idx3-ubyte.gz" ]; then
    mkdir -p "$TFDS_DATA_DIR/downloads/manual/$name"
    cp "$SHARED_DATA/$name"/*.gz "$TFDS_DATA_DIR/downloads/manual/$name/"  # copies: ../shared stays untouched
  fi
done
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
cd "$ROOT"
