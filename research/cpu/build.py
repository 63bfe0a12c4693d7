"""Builds the C++ kernels of research/cpu/kernels, one shared library per source, and registers
their XLA:CPU FFI targets.

  python -m research.cpu.build      # builds what is missing, one line per kernel (scripts/env.sh)

Each library is compiled against the installed jaxlib's FFI headers for this CPU
(-march=native) into a cache folder keyed by its source, the shared headers, the compiler flags,
jaxlib's version and the CPU (RESEARCH_KERNEL_CACHE, default ~/.cache/dense-vs-conv/kernels).
A process that finds a library missing builds it and says so in one log line. A kernel whose
build fails (or no C++ compiler) is unavailable on its own: the others still run, and the CNN
block falls back to XLA's formulation for the layers it would have run.
"""
import ctypes
import fcntl
import functools
import glob
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

from absl import logging

from research import machine

KERNELS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "kernels")
# source -> (FFI targets, shape queries returning int): what each library exports.
KERNELS = {
    "conv_relu_pool.cc": (("ConvReluPoolForward", "ConvReluPoolKernelGrad", "ConvReluPoolInputGrad"),
                          {"ConvReluPoolCompiled": 3}),
    "conv2d.cc": (("Conv2dForward", "Conv2dInputGrad", "Conv2dKernelGrad"),
                  {"Conv2dCompiled": 3, "Conv2dTuned": 0}),
    "relu_pool.cc": (("ReluPoolForward", "ReluPoolBackward"), {"ReluPoolCompiled": 1}),
    "dense.cc": (("DenseForward", "DenseInputGrad", "DenseParamGrad", "ThreadPoolSize"), {}),
}


def _flags() -> list[str]:
  flags = ["-O3", "-march=native", "-std=c++17", "-shared", "-fPIC", "-w"]
  if platform.machine().lower() in ("x86_64", "amd64"):
    flags.append("-mprefer-vector-width=512")  # AVX-512 CPUs otherwise get 256-bit loops
  return flags


def cache_dir() -> str:
  return os.environ.get("RESEARCH_KERNEL_CACHE") or os.path.join(
      os.path.expanduser("~"), ".cache", "dense-vs-conv", "kernels")


def _compiler() -> str | None:
  return os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")


def library_path(source: str) -> str:
  """Where `source`'s library lives in the cache (built or not)."""
  import jaxlib
  parts = []
  for path in [os.path.join(KERNELS_DIR, source)] + sorted(glob.glob(os.path.join(KERNELS_DIR, "*.h"))):
    with open(path, "rb") as f:
      parts.append(f.read())
  parts += [" ".join(_flags()).encode(), jaxlib.__version__.encode(),
            machine.cpu_fingerprint().encode()]
  key = hashlib.sha256(b"\0".join(parts)).hexdigest()[:16]
  return os.path.join(cache_dir(), f"{os.path.splitext(source)[0]}-{key}.so")


def _compile(compiler: str, source: str, path: str) -> None:
  """Compiles `source` into `path` atomically: a half-written library never has the final name,
  and builders in several processes wait for one another (a lock on the cache folder)."""
  import jax
  os.makedirs(cache_dir(), exist_ok=True)
  lock = os.open(cache_dir(), os.O_RDONLY)
  try:
    fcntl.flock(lock, fcntl.LOCK_EX)
    if os.path.exists(path):  # another process built it while this one waited
      return
    logging.info("building the CPU kernel %s into %s (once, 5-20 s)", source, cache_dir())
    with tempfile.TemporaryDirectory(dir=cache_dir()) as work:
      tmp = os.path.join(work, "library.so")
      cmd = [compiler, *_flags(), f"-I{jax.ffi.include_dir()}",
             os.path.join(KERNELS_DIR, source), "-o", tmp]
      proc = subprocess.run(cmd, capture_output=True, text=True)
      if proc.returncode != 0:
        raise RuntimeError(f"{compiler} failed: {' '.join(proc.stderr.strip().splitlines()[-1:])}")
      os.replace(tmp, path)
  finally:
    os.close(lock)  # releases the lock


@functools.cache
def library(source: str):
  """(ctypes library, '') of `source` built and its FFI targets registered with XLA:CPU, or
  (None, why not) in one line."""
  import jax
  compiler = _compiler()
  if not compiler:
    return None, "no C++ compiler (g++, c++ or $CXX) on PATH"
  path = library_path(source)
  try:
    if not os.path.exists(path):
      _compile(compiler, source, path)
    lib = ctypes.cdll.LoadLibrary(path)
  except (OSError, RuntimeError) as e:
    return None, f"building {source}: {e}"
  targets, queries = KERNELS[source]
  for name in targets:
    jax.ffi.register_ffi_target(f"research_{name}", jax.ffi.pycapsule(getattr(lib, name)),
                                platform="cpu")
  for name, num_args in queries.items():
    getattr(lib, name).restype = ctypes.c_int
    getattr(lib, name).argtypes = [ctypes.c_int64] * num_args
  return lib, ""


def available() -> tuple[bool, str]:
  """Whether any kernel can run in this process; and why some cannot (one line, '' if all can)."""
  results = [library(source) for source in KERNELS]
  why = "; ".join(w for _, w in results if w)
  return any(lib is not None for lib, _ in results), why


def main() -> int:
  """Builds every kernel that is missing; one line each. Exit status 1 if one failed."""
  failed = 0
  for source in KERNELS:
    cached = os.path.exists(library_path(source)) if _compiler() else False
    t0 = time.time()
    lib, why = library(source)
    if lib is None:
      failed += 1
      print(f"CPU kernel {source}: unavailable ({why}); its layers run on XLA's formulation",
            file=sys.stderr)
    elif not cached:
      print(f"CPU kernel {source}: built in {time.time() - t0:.0f} s ({library_path(source)})",
            file=sys.stderr)
  return 1 if failed else 0


if __name__ == "__main__":
  sys.exit(main())
