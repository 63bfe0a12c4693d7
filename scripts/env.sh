# Sourced by scripts/train.sh and scripts/test.sh: a virtualenv with the project installed, the
# CPU kernels built, and TFDS pointed at a writable data dir that holds the original archives
# when ../shared/data has them. Sets no shell options: sourcing it leaves the shell as it was.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
VENV="${VENV:-$ROOT/.venv}"
_env_fail() { echo "error: $1" >&2; return 1; }
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV" || _env_fail "cannot create a virtualenv in $VENV" || return 1
fi
# Install (or refresh) when setup.py is newer than the last install.
if [ ! -f "$VENV/.installed" ] || [ "$ROOT/setup.py" -nt "$VENV/.installed" ]; then
  echo "installing the project into $VENV (a few minutes the first time)" >&2
  "$VENV/bin/pip" install --quiet --disable-pip-version-check --upgrade pip 2>/dev/null
  "$VENV/bin/pip" install --quiet --disable-pip-version-check -e "$ROOT[${EXTRAS:-test}]" 2>&1 \
    | grep -vE "^WARNING: Location|BuildBackendWarning|^ *(!!|\*+)?$|careful with folders|take precedence during imports|WheelFile\(wheel_path" >&2 || true
  "$VENV/bin/python" -c "import research, configs, jax, flax, tensorflow_datasets" \
    || _env_fail "installing the project into $VENV failed (see above)" || return 1
  touch "$VENV/.installed"
fi
export PATH="$VENV/bin:$PATH"
# The CPU kernels (research/cpu/build.py): built once per source and CPU, cached; a kernel that
# cannot build is said in one line and its layers run on XLA's formulation.
"$VENV/bin/python" -m research.cpu.build || true
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
cd "$ROOT" || return 1
