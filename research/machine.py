"""What this machine's CPU is, read once from /proc/cpuinfo: its model name and the vector
extensions that decide which kernels XLA:CPU and research/cpu run fast."""
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
