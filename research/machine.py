"""What this machine's CPU is, read once from /proc/cpuinfo: its model name and the vector
extensions that decide which kernels XLA:CPU and research/cpu run fast; and the two XLA:CPU
settings importing `research` makes for every process (its thread pool, the threefry lowering)."""
import functools
import os
import platform


@functools.cache
def _cpuinfo() -> tuple[str, frozenset]:
  """(model name, flags) of the first CPU; ('unknown', {}) where /proc/cpuinfo is missing."""
  try:
    with open("/proc/cpuinfo") as f:
      lines = f.read().splitlines()
  except OSError:  # not Linux
    return platform.processor() or "unknown", frozenset()
  field = lambda key: next((l.split(":", 1)[1].strip() for l in lines if l.startswith(key)), "")
  return field("model name") or "unknown", frozenset(field("flags").split())


def cpu_name() -> str:
  """The CPU model and its extensions that matter to XLA:CPU, e.g. 'AMD EPYC 9R45 (avx2, avx512f)'."""
  name, flags = _cpuinfo()
  isa = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in flags]
  return f"{name} ({', '.join(isa) or 'no AVX2'})"


def cpu_fingerprint() -> str:
  """The model name and every flag: a key for code compiled for this CPU (-march=native)."""
  name, flags = _cpuinfo()
  return "\n".join([name, *sorted(flags)])


def fix_xla_threads() -> None:
  """Sizes XLA:CPU's thread pool by the machine, not by the cores this process may use.

  XLA's dots and Eigen's convolution gradients split their sums by the pool's size, which XLA
  otherwise takes from the process's CPU affinity (`taskset`, a Ray worker's slot): the same run
  would give other bits on other cores. Sets PJRT_NPROC to the machine's CPU count unless the
  user set it; it takes effect if JAX's CPU client has not started yet (importing `research`
  before any JAX computation does that). The pool then has that many threads even where the
  process runs on fewer cores (docs/runs.md gives what that costs).
  """
  os.environ.setdefault("PJRT_NPROC", str(os.cpu_count() or 1))


def xla_threads(cpu_devices: int = 1) -> int:
  """The size of XLA:CPU's pool: PJRT_NPROC, and never fewer than the CPU devices."""
  return max(int(os.environ.get("PJRT_NPROC") or os.cpu_count() or 1), cpu_devices)


def unroll_threefry_on_cpu() -> bool:
  """Lowers JAX's threefry hash (every jax.random draw: inits, shuffles, augmentations) for CPU
  as straight-line code instead of JAX's CPU default, a 5-iteration loop; True if it took.

  XLA:CPU compiles the loop several times slower and runs it no faster (docs/performance.md,
  scripts/profile_compile.py). Both forms are the same uint32 adds, rotations and xors in the
  same order: the same bits (tests/test_fast_paths.py). The straight-line form is JAX's own
  lowering for the other backends, reached through private modules: a jax without them keeps
  its default. Importing `research` calls it; it takes effect for programs lowered after.
  """
  try:
    from jax._src.interpreters import mlir
    from jax._src.random import threefry2x32
    rule, primitive = threefry2x32._threefry2x32_lowering_rule, threefry2x32.threefry2x32_p
  except (ImportError, AttributeError):
    return False
  mlir.register_lowering(primitive, rule, platform="cpu")
  return True
