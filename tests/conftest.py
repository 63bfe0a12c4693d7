"""Test setup: 8 fake CPU devices (set before jax is imported) and the real MNIST location.

MNIST comes from $TFDS_DATA_DIR (prepared by .ci/run or scripts/test.sh from the original
archives in ../shared/data/mnist); tests that need it skip, saying why, when it is absent.
"""
import os
import sys

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                           " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import pytest  # noqa: E402


def mnist_available() -> tuple[bool, str]:
  data_dir = os.environ.get("TFDS_DATA_DIR")
  if not data_dir:
    return False, "TFDS_DATA_DIR is not set (scripts/test.sh sets it up from ../shared/data/mnist)"
  if os.path.isdir(os.path.join(data_dir, "mnist")):
    return True, ""
  manual = os.path.join(data_dir, "downloads", "manual")
  if os.path.isfile(os.path.join(manual, "train-images-idx3-ubyte.gz")):
    return True, ""
  return False, f"no prepared mnist and no MNIST archives in {manual}"


@pytest.fixture(scope="session")
def mnist():
  ok, why = mnist_available()
  if not ok:
    pytest.skip(f"real MNIST unavailable: {why}")
  from research import data
  return data.load_tfds("mnist")


def tiny_config(model="mlp", **overrides):
  """A short real run: a few dozen steps of a small batch."""
  from configs import mnist_cnn, mnist_mlp
  c = (mnist_mlp if model == "mlp" else mnist_cnn).get_config()
  c.model = model
  c.num_train_steps = 40
  c.batch_size = 32
  c.steps_per_call = 10
  c.log_every_steps = 10
  c.checkpoint_every_steps = 20
  c.eval_batch_size = 2000
  c.eval_train = False
  c.parallelism = "single"
  for k, v in overrides.items():
    c[k] = v
  return c


def run_cli(args, timeout=300, env=None):
  """Runs `python -m research.main ARGS` and returns the CompletedProcess."""
  import subprocess
  full_env = dict(os.environ)
  full_env.update(env or {})
  return subprocess.run([sys.executable, "-m", "research.main", *args], cwd=ROOT, env=full_env,
                        capture_output=True, text=True, timeout=timeout)
