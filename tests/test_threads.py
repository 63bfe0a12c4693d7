"""Same seed, same bits, whatever the number of threads (README: a run is deterministic for its
config.seed on one machine).

The knob: XLA:CPU sizes the intra-op thread pool that runs its Eigen dots and convolutions and
hands our kernels (their `ffi::ThreadPool`) once, at client start: PJRT_NPROC threads if set, else
as many as the CPUs the process may run on (`taskset`, cgroups, a Ray worker's slot), and never
fewer than the CPU devices (conftest's 8 fake ones would make every pool 8). Each child here runs
on one device with PJRT_NPROC set (the last test leaves it to `research`), so its pool size is
what the test asks even on a machine with one core, and a child reports that size through the kernels' own ThreadPoolSize target
(research/cpu/kernels/dense.cc) to show that the knob took.

What is promised: `conv_impl='fused'` where its kernels run every layer of the seed CNN (an
AVX-512 CPU with a C++ compiler) gives the same bits with 1, 2 or N threads for the seed CNN and
the seed MLP (whose dense layers are dense.cc's too), and a run stopped
with one thread count and resumed with another gives the uninterrupted run's bits. Its kernels sum
in an order fixed by the shapes (threads only pick which block of outputs they compute); the
classifier is dense.cc's kernel (XLA's dot, Eigen's contraction, splits [B, 1600] x [1600, 10] by
the pool size); the second convolution's bias gradient (convdot.bias_grad) is a matrix-vector
product that XLA compiles into its own loop; the rest of the step is XLA's own loops too, which
split outputs, never a sum, across threads.

What XLA sums (`hybrid`, what 'auto' picks without the kernels or under jit over several devices;
`xla`; nn.Conv; the MLP's dots outside `fused`): Eigen splits its convolution gradients' and dots'
sums by the pool's size, so those bits follow PJRT_NPROC. Importing `research` sets it to the
machine's CPU count (research.machine.fix_xla_threads), so a process on 1 core and one on 2 give
the same bits, and so does a run stopped on 1 core and resumed on 2: the last test here, with
PJRT_NPROC unset as a user's shell has it. Another PJRT_NPROC gives other bits there.
"""
import json
import os
import signal
import subprocess
import sys

import jax
import numpy as np
import pytest

from conftest import ROOT, cli_args, mnist_available
from research import experiment

STEPS = 20
FLAGS = ["--config=configs/mnist_cnn.py", f"--config.num_train_steps={STEPS}",
         "--config.batch_size=128", "--config.steps_per_call=2", "--config.log_every_steps=5",
         f"--config.checkpoint_every_steps={STEPS}", "--config.parallelism=single",
         "--config.eval_batch_size=2000", "--config.eval_train=False", "--config.seed=21"]


def _require_dense_kernel():
  """Fails, saying why, where the fused block does not run its dense layers as dense.cc."""
  from research.cpu import blocks, build, fused
  if not ("dense.cc" in build.KERNELS and hasattr(fused, "dense")
          and hasattr(blocks.CpuBlock, "dense")):
    pytest.fail("research/cpu/kernels/dense.cc is not wired in (build.KERNELS, fused.dense, "
                "CpuBlock.dense): fused's classifier would be XLA's dot, whose sums depend on the "
                "thread count")


def _fused_runs_every_layer() -> tuple[bool, str]:
  """Whether conv_impl='fused' runs the whole seed CNN (both conv layers, the second one's relu
  and pool, the classifier) as kernels on this machine, and if not why."""
  import jax.numpy as jnp
  from research.cpu import fused
  f32 = jnp.float32
  ok, why = fused.available()
  if not ok:
    return False, f"the CPU kernels are unavailable: {why}"
  if not fused.tuned():
    return False, "conv2d.cc's kernels are not used on a CPU without AVX-512 (Eigen runs the layer)"
  pieces = {"conv_relu_pool.cc": fused.fits(1, 3, 32, 2, f32),
            "conv2d.cc": fused.conv_fits(32, 3, 64, 1, f32),
            "relu_pool.cc": fused.pool_fits(64, 2, f32), "dense.cc": fused.dense_fits(f32)}
  missing = [name for name, fits in pieces.items() if not fits]
  return not missing, f"not run as kernels here: {', '.join(missing)}"


@pytest.fixture(scope="module")
def fused_everywhere():
  _require_dense_kernel()
  ok, why = _fused_runs_every_layer()
  if not ok:
    pytest.skip(f"conv_impl='fused' is not all kernels on this machine ({why}); its XLA "
                "fallbacks split sums by the thread count")


def _env(threads: int, **extra) -> dict:
  """A child's environment with `threads` in XLA's pool: PJRT_NPROC, and one CPU device (the
  pool has at least as many threads as devices: conftest's 8 would make it 8 whatever else)."""
  flags = [f for f in os.environ.get("XLA_FLAGS", "").split()
           if not f.startswith("--xla_force_host_platform_device_count")]
  env = dict(os.environ, PJRT_NPROC=str(threads), XLA_FLAGS=" ".join(flags), **extra)
  env.pop("JAX_COMPILATION_CACHE_DIR", None)  # each child compiles its own programs
  return env


def _results_and_params(workdir):
  with open(os.path.join(workdir, "results.json")) as f:
    results = json.load(f)
  numbers = {k: results[k] for k in ("test_loss", "test_accuracy", "steps")}
  return numbers, experiment.load_model(str(workdir))[1]


def _assert_same_bits(a, b, what):
  (numbers_a, params_a), (numbers_b, params_b) = a, b
  assert numbers_a == numbers_b, what
  leaves_a, leaves_b = jax.tree_util.tree_leaves_with_path(params_a), jax.tree.leaves(params_b)
  differing = [jax.tree_util.keystr(path) for (path, x), y in zip(leaves_a, leaves_b)
               if not np.array_equal(x, y)]  # bitwise
  assert not differing, f"{what}: {differing} differ"


def _preempt(child) -> int:
  """SIGTERMs `child` once it has logged step 10 (a preemption: it saves a checkpoint where it
  stands and exits 143); returns the checkpoint's step."""
  assert child.wait_for(f"step 10/{STEPS}", timeout=300), child.tail()
  child.signal(signal.SIGTERM)
  assert child.wait(300) == 143, child.tail()
  saved = [l for l in child.output().splitlines() if l.startswith("preempted: checkpoint at step")]
  assert len(saved) == 1 and int(saved[0].split()[4]) < STEPS, child.tail()
  return int(saved[0].split()[4])


def _agree_across_counts_and_a_resume(spawn, tmp_path, args, env, counts, unit):
  """Runs `args(name, n, child)` under `env(n, **extra)` uninterrupted with n = counts[0] and
  counts[1], and stopped by SIGTERM (a preemption: it saves a checkpoint where it stands) at
  counts[0], then resumed with counts[2]; asserts all three end with the same bits.
  tests/child_main.py delays each call of 2 steps by 0.3 s in the stopped child, so the run is
  still going when the test has seen a step's log line. Two children at a time (each compiles on
  one core)."""
  first, second, resume = counts
  stopped = spawn(args("resumed", first, True), "stopped", env(first, CHILD_CHUNK_DELAY="0.3"))
  one = spawn(args("one", first, False), "one", env(first))
  saved = _preempt(stopped)
  resumed = spawn(args("resumed", resume, False), "resumed", env(resume))
  assert one.wait(600) == 0, one.tail()
  two = spawn(args("two", second, False), "two", env(second))
  for child in (resumed, two):
    assert child.wait(600) == 0, child.tail()
  assert "resumed from the checkpoint at step" in resumed.output(), resumed.tail()
  reference = _results_and_params(tmp_path / "one")
  _assert_same_bits(reference, _results_and_params(tmp_path / "two"),
                    f"{first} {unit} against {second}")
  _assert_same_bits(reference, _results_and_params(tmp_path / "resumed"),
                    f"{first} {unit} against {first} until step {saved}, then {resume}")


# --- the kernels alone: a process with 1 thread and one with 3 --------------------------------

# Each kernel's outputs and gradients (and the XLA bias gradient the fused path uses) on an odd
# batch, so that blocks of rows and images end part-full. Prints the pool's size and a digest
# of the bytes.
_CHILD_SCRIPT = r"""
import hashlib, jax, jax.numpy as jnp, numpy as np
from research import parallel
from research.cpu import convdot, fused
rng = np.random.default_rng(0)
r = lambda *s: jnp.asarray(rng.standard_normal(s, np.float32))
jit = lambda f: jax.jit(f, compiler_options=parallel.compiler_options())
digest = lambda arrays: hashlib.sha256(b"".join(np.asarray(a).tobytes() for a in arrays)).hexdigest()
b = 37
cases = [
    (lambda x, k, c: fused.conv_relu_pool(x, k, c, 1, 2), (r(b, 28, 28, 1), r(3, 3, 1, 32), r(32))),
    (fused.conv2d, (r(b, 13, 13, 32), r(3, 3, 32, 64) * 0.1, r(64))),
    (lambda y: fused.relu_max_pool(y, 2), (r(b, 11, 11, 64),)),
    (fused.dense, (r(b, 1600), r(1600, 10), r(10))),
    (convdot.bias_grad, (r(b, 26, 26, 32),)),
]
kernels = []
for f, args in cases:
  out = jit(f)(*args)
  kernels += [out, *jit(lambda *a, f=f: jax.vjp(f, *a)[1](out * 0.5 + 1.0))(*args)]
size = jax.ffi.ffi_call("research_ThreadPoolSize", jax.ShapeDtypeStruct((1,), jnp.int32))()
print("pool", int(size[0]), "kernels", digest(kernels))
"""


@pytest.fixture(scope="module")
def children():
  """{threads: {"pool": size, "kernels": digest}} of _CHILD_SCRIPT run with
  1 and with 3 threads, side by side."""
  import shutil
  if not (os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")):
    pytest.skip("no C++ compiler: the CPU kernels are unavailable")
  _require_dense_kernel()
  from research.cpu import build
  build.available()  # builds every kernel once here, not in both children at a time
  runs = {n: subprocess.Popen([sys.executable, "-c", _CHILD_SCRIPT], cwd=ROOT, env=_env(n),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
          for n in (1, 3)}
  out = {}
  for n, proc in runs.items():
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr[-3000:]
    words = stdout.strip().splitlines()[-1].split()
    out[n] = dict(zip(words[::2], words[1::2]))
  assert [out[n]["pool"] for n in runs] == ["1", "3"], f"PJRT_NPROC did not size XLA's pool: {out}"
  return out


def test_kernels_give_the_same_bits_with_any_number_of_threads(children):
  assert children[1]["kernels"] == children[3]["kernels"], "a kernel depends on the thread count"


# --- a training run: the seed CNN, fused -------------------------------------------------------

def test_fused_training_gives_the_same_bits_with_any_number_of_threads_and_across_a_resume(
    fused_everywhere, tmp_path, spawn):
  ok, why = mnist_available()
  if not ok:
    pytest.skip(f"real MNIST unavailable: {why}")
  args = lambda name, n, child: cli_args(*FLAGS, "--config.conv_impl=fused",
                                        f"--workdir={tmp_path / name}", child=child)
  _agree_across_counts_and_a_resume(spawn, tmp_path, args, _env, (1, 2, 3), "threads")


def test_fused_mlp_gives_the_same_bits_with_one_and_two_threads(fused_everywhere, tmp_path, spawn):
  ok, why = mnist_available()
  if not ok:
    pytest.skip(f"real MNIST unavailable: {why}")
  flags = [f.replace("mnist_cnn", "mnist_mlp") for f in FLAGS] + ["--config.conv_impl=fused"]
  runs = {n: spawn(cli_args(*flags, f"--workdir={tmp_path / str(n)}"), str(n), _env(n))
          for n in (1, 2)}
  for child in runs.values():
    assert child.wait(600) == 0, child.tail()
  _assert_same_bits(_results_and_params(tmp_path / "1"), _results_and_params(tmp_path / "2"),
                    "the MLP with 1 thread against 2")


# --- XLA's own sums: hybrid, xla, the MLP's XLA dots, on 1 core and on 2 ----------------------

# Runs a command on the given CPUs: the affinity is set, then the command is exec'd (it inherits it).
_ON_CPUS = "import os, sys; os.sched_setaffinity(0, map(int, sys.argv[1].split(','))); " \
           "os.execv(sys.argv[2], sys.argv[2:])"


def _on_cores(cores: int, args: list[str]) -> list[str]:
  cpus = sorted(os.sched_getaffinity(0))
  if len(cpus) < 2:
    pytest.skip("one CPU: nothing to compare a run on one core with")
  return [sys.executable, "-c", _ON_CPUS, ",".join(map(str, cpus[:cores])), *args]


def _env_unset(**extra) -> dict:
  """A child's environment as a user's shell has it: one CPU device and no PJRT_NPROC, so the
  pool's size is what importing `research` chooses."""
  env = {k: v for k, v in _env(1, **extra).items() if k != "PJRT_NPROC"}
  return env


@pytest.mark.slow
def test_xla_sums_give_the_same_bits_on_one_core_and_on_two_and_across_a_resume(tmp_path, spawn):
  """`hybrid` (what 'auto' picks without the kernels) on 1 and 2 cores, and stopped on 1 core,
  resumed on 2; the MLP with XLA's dots on 1 and 2 cores. Without the pool fixed by the machine
  (research.machine.fix_xla_threads) the params differ in the last bits after a few steps."""
  ok, why = mnist_available()
  if not ok:
    pytest.skip(f"real MNIST unavailable: {why}")
  args = lambda name, n, child: _on_cores(n, cli_args(
      *FLAGS, "--config.conv_impl=hybrid", f"--workdir={tmp_path / name}", child=child))
  _agree_across_counts_and_a_resume(spawn, tmp_path, args, lambda n, **extra: _env_unset(**extra),
                                    (1, 2, 2), "cores (hybrid)")
  with open(tmp_path / "one" / "results.json") as f:
    assert json.load(f)["xla_threads"] == os.cpu_count()  # the machine's, not the one core's

  mlp = [f.replace("mnist_cnn", "mnist_mlp") for f in FLAGS] + ["--config.conv_impl=xla"]
  runs = {n: spawn(_on_cores(n, cli_args(*mlp, f"--workdir={tmp_path / f'mlp{n}'}")), f"mlp{n}",
                   _env_unset()) for n in (1, 2)}
  for child in runs.values():
    assert child.wait(600) == 0, child.tail()
  _assert_same_bits(_results_and_params(tmp_path / "mlp1"), _results_and_params(tmp_path / "mlp2"),
                    "the MLP with XLA's dots on 1 core against 2")
