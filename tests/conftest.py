"""Test setup: 8 fake CPU devices (set before jax is imported) and the real MNIST location.

MNIST comes from $TFDS_DATA_DIR (prepared by .ci/run or scripts/test.sh from the original
archives in ../shared/data/mnist); tests that need it skip, saying why, when it is absent.

Child processes (`spawn`) write their output to files, never to pipes that a test could forget
to read, and are killed and reaped at the end of the test whatever its outcome.
"""
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                           " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import pytest  # noqa: E402


def pytest_configure(config):
  config.addinivalue_line(
      "markers", "slow: a long end-to-end check (several processes, kills and resumes, a study); "
      "CI runs them all, `bash scripts/test.sh -m 'not slow'` skips them")
  if not hasattr(config, "workerinput"):  # the main pytest process, before xdist starts workers
    # One persistent compilation cache for the whole run (workers and the processes the tests
    # start inherit it): the many short runs of the same models load their programs instead of
    # compiling them again. A cached executable is the one a compile produces: same numbers.
    # Removed at the end, so runs never read one left from other code.
    config.jax_cache_dir = tempfile.mkdtemp(prefix="dvc-test-jax-cache-")
    os.environ.update(JAX_COMPILATION_CACHE_DIR=config.jax_cache_dir,
                      JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
                      JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")


def pytest_unconfigure(config):
  if getattr(config, "jax_cache_dir", None):
    shutil.rmtree(config.jax_cache_dir, ignore_errors=True)


def mnist_available() -> tuple[bool, str]:
  data_dir = os.environ.get("TFDS_DATA_DIR")
  if not data_dir:
    return False, "TFDS_DATA_DIR is not set (scripts/test.sh sets it up from ../shared/data/mnist)"
  if os.path.isdir(os.path.join(data_dir, "mnist")):
    return True, ""
  from research import data
  manual = data.manual_dir(data_dir, "mnist")
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
  c.steps_per_call = 5  # compile time grows with the steps unrolled into one call
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
  full_env = dict(os.environ)
  full_env.update(env or {})
  return subprocess.run([sys.executable, "-m", "research.main", *args], cwd=ROOT, env=full_env,
                        capture_output=True, text=True, timeout=timeout)


def cli_args(*args, child=False):
  """The command line of `research.main ARGS`; child=True: through tests/child_main.py, which
  honours the CHILD_* test delays."""
  if child:
    return [sys.executable, os.path.join(ROOT, "tests", "child_main.py"), *args]
  return [sys.executable, "-m", "research.main", *args]


# Run in front of every child: SIGKILL it when the process that started it dies (Linux's
# PR_SET_PDEATHSIG), so no child outlives a killed pytest run (whose fixtures never tear down),
# then exec the child's command. (A preexec_fn would do the same, but it runs Python between
# fork and exec in a multithreaded process, which can deadlock.)
_DIE_WITH_PARENT = """
import ctypes, os, signal, sys
parent = os.getppid()
try:
  ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1: PR_SET_PDEATHSIG
except (OSError, AttributeError):  # not Linux: the fixture's kill is all there is
  pass
if os.getppid() != parent:  # the parent died before prctl took effect
  sys.exit(137)
os.execvp(sys.argv[1], sys.argv[1:])
"""


class Child:
  """A child process with its stdout and stderr in one log file."""

  def __init__(self, args, log_path, env=None):
    self.args = args
    self.log_path = str(log_path)
    with open(self.log_path, "w") as log:
      self.popen = subprocess.Popen([sys.executable, "-c", _DIE_WITH_PARENT, *args], cwd=ROOT,
                                    env=env, stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)

  @property
  def returncode(self):
    return self.popen.poll()

  def output(self) -> str:
    with open(self.log_path, errors="replace") as f:
      return f.read()

  def wait_for(self, text: str, timeout: float) -> bool:
    """True once `text` is in the output; False if the process ended or the time ran out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
      if text in self.output():
        return True
      if self.popen.poll() is not None:
        return text in self.output()
      time.sleep(0.05)
    return False

  def wait(self, timeout: float) -> int | None:
    """The exit code, or None (and the process killed) if it ran past `timeout` seconds."""
    try:
      return self.popen.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
      self.kill()
      return None

  def signal(self, sig):
    if self.popen.poll() is None:
      self.popen.send_signal(sig)

  def kill(self):
    if self.popen.poll() is None:
      try:
        os.killpg(self.popen.pid, signal.SIGKILL)
      except ProcessLookupError:
        pass
    self.popen.wait(timeout=30)

  def tail(self, chars: int = 3000) -> str:
    return f"--- {os.path.basename(self.log_path)} (exit {self.returncode}) ---\n" + (
        self.output()[-chars:])


@pytest.fixture
def spawn(tmp_path):
  """spawn(args, name, env=None) -> Child; every child is killed and reaped after the test."""
  children = []

  def start(args, name, env=None):
    child = Child(args, tmp_path / f"{name}.log", env)
    children.append(child)
    return child

  yield start
  for child in children:
    child.kill()


def report(*children) -> str:
  """The ends of the children's logs, for an assertion message."""
  return "\n".join(child.tail() for child in children)
