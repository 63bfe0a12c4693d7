"""What this machine's CPU is, read once from /proc/cpuinfo: its model name and the vector
extensions that decide which kernels XLA:CPU and research/cpu run fast."""
import functools
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
