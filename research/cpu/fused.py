"""conv_impl='fused': the seed CNN's convolutions as C++ kernels called from XLA:CPU.

Three kernels, one library:
- research/cpu/kernels/conv_relu_pool.cc, for a layer on few input channels (the seed CNN's first,
  28x28x1 -> 32): conv, bias, ReLU and max pool as one kernel that computes the pooled outputs
  only; its backward recomputes each window's pre-activations instead of storing the
  [N, Ho, Wo, F] map between the layers. For such a layer that map is most of the memory
  traffic and Eigen's convolution runs it at a small fraction of the machine's rate
  (research/cpu/convdot.py). Gradients JAX's for relu then max (ties share dy).
- research/cpu/kernels/conv2d.cc, for a stride-1 layer on many channels (the seed CNN's second,
  13x13x32 -> 64): the convolution + bias and its input and kernel gradients as direct
  convolutions with register-blocked FMAs; XLA does the relu and pool around them. These three
  products are most of the step's FLOPs, and Eigen ran the two gradients well below its forward
  rate.
- research/cpu/kernels/relu_pool.cc: relu then max pool, and its gradient, after any layer that is
  not the first kernel. Two memory-bound passes over the map; XLA:CPU's fusions for the
  reshape-and-max pool took ~1.2 ms (forward) and ~0.8 ms (backward) of a ~10 ms seed-CNN step on
  a 2-core AMD EPYC (a profiler trace of the 10-step chunk), the kernels ~0.3 and ~0.5 there;
  alone, scripts/profile_step.py: 0.2 ms forward, 0.4 forward + backward, against 0.6 and 1.4.
Same parameters and math as nn.Conv: results to float32 rounding, tested against nn.Conv in
float64 (tests/test_fused.py). `python scripts/profile_step.py` times each piece against what it
replaces and the whole 10-step chunk against the other formulations
(docs/benchmark/profile_step.md); scripts/benchmark.py the whole training against Keras.

The library is C++ built against the installed jaxlib's FFI headers with the machine's own
instruction set (-march=native) the first time a process asks for it, into a cache folder keyed
by the sources, the compiler flags, jaxlib's version and this CPU (RESEARCH_KERNEL_CACHE, default
~/.cache/dense-vs-conv/kernels); a build takes ~10-20 s. Without a C++ compiler (or on a failed
build) `available()` says why and 'auto' falls back to 'hybrid'.
"""
import ctypes
import fcntl
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile

import flax.linen as nn
import jax
import jax.numpy as jnp
import jaxlib
import numpy as np

from research import UserError, equivalence, machine
from research.cpu import convdot

_KERNELS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "kernels")
# One library from both sources: conv + relu + pool for a first layer, and a plain convolution
# (conv2d.cc) for a layer on many channels.
SOURCES = tuple(os.path.join(_KERNELS, name) for name in ("conv_relu_pool.cc", "conv2d.cc",
                                                            "relu_pool.cc"))
HEADERS = tuple(os.path.join(_KERNELS, name) for name in ("parallel_for.h", "max_pool_gradient.h"))
TARGETS = ("ConvReluPoolForward", "ConvReluPoolKernelGrad", "ConvReluPoolInputGrad",
           "Conv2dForward", "Conv2dInputGrad", "Conv2dKernelGrad", "ReluPoolForward",
           "ReluPoolBackward")
MAX_POOL = 4  # the kernel's largest pool window side (kMaxWindow = 4 * 4 there)


def _flags() -> list[str]:
  flags = ["-O3", "-march=native", "-std=c++17", "-shared", "-fPIC", "-w"]
  if platform.machine().lower() in ("x86_64", "amd64"):
    flags.append("-mprefer-vector-width=512")  # AVX-512 CPUs otherwise get 256-bit loops
  return flags


def _cache_dir() -> str:
  return os.environ.get("RESEARCH_KERNEL_CACHE") or os.path.join(
      os.path.expanduser("~"), ".cache", "dense-vs-conv", "kernels")


def _build(compiler: str) -> str:
  """Path of the built library: from the cache, or compiled now (atomically: a half-written
  library is never left under the final name, and concurrent builders agree)."""
  sources = []
  for name in SOURCES + HEADERS:
    with open(name, "rb") as f:
      sources.append(f.read())
  key = hashlib.sha256(b"\0".join([*sources, " ".join(_flags()).encode(), jaxlib.__version__.encode(),
                                   machine.cpu_fingerprint().encode()])).hexdigest()[:16]
  path = os.path.join(_cache_dir(), f"conv_relu_pool-{key}.so")
  if os.path.exists(path):
    return path
  os.makedirs(_cache_dir(), exist_ok=True)
  # One builder at a time per cache (a lock on the folder itself): processes that start together,
  # such as the test workers, wait for the first build instead of each compiling the same.
  lock = os.open(_cache_dir(), os.O_RDONLY)
  try:
    fcntl.flock(lock, fcntl.LOCK_EX)
    if not os.path.exists(path):
      _compile(compiler, path)
  finally:
    os.close(lock)  # releases the lock
  return path


def _compile(compiler: str, path: str):
  with tempfile.TemporaryDirectory(dir=os.path.dirname(path)) as work:
    # One compiler per source, side by side (the build's wall time is its slowest source's), then
    # one link; the library reaches its final name only whole.
    objects = [os.path.join(work, f"{i}.o") for i in range(len(SOURCES))]
    builds = [[compiler, *_flags(), "-c", f"-I{jax.ffi.include_dir()}", src, "-o", obj]
              for src, obj in zip(SOURCES, objects)]
    tmp = os.path.join(work, "library.so")
    for group in (builds, [[compiler, *_flags(), *objects, "-o", tmp]]):
      running = [(cmd, subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        text=True)) for cmd in group]
      for cmd, proc in running:
        _, err = proc.communicate()
        if proc.returncode != 0:
          for _, other in running:
            other.kill()
            other.wait()
          raise RuntimeError(f"{' '.join(cmd)} failed: {err.strip().splitlines()[-1:]}")
    os.replace(tmp, path)


@functools.cache
def _library():
  """(ctypes library, '') once built and registered with XLA:CPU, or (None, why not)."""
  compiler = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")
  if not compiler:
    return None, "no C++ compiler (g++, c++ or $CXX) on PATH"
  try:
    lib = ctypes.cdll.LoadLibrary(_build(compiler))
  except (OSError, RuntimeError) as e:
    return None, f"building {', '.join(map(os.path.basename, SOURCES))}: {e}"
  for name in TARGETS:
    jax.ffi.register_ffi_target(f"research_{name}", jax.ffi.pycapsule(getattr(lib, name)),
                                platform="cpu")
  for query in (lib.ConvReluPoolCompiled, lib.Conv2dCompiled):
    query.restype = ctypes.c_int
    query.argtypes = [ctypes.c_int64] * 3
  lib.Conv2dTuned.restype = ctypes.c_int
  lib.ReluPoolCompiled.restype = ctypes.c_int
  lib.ReluPoolCompiled.argtypes = [ctypes.c_int64]
  return lib, ""


def available() -> tuple[bool, str]:
  """Whether the kernel can run in this process, and if not why (one line)."""
  lib, why = _library()
  return lib is not None, why


def fits(in_channels: int, kernel_size: int, features: int, pool: int, dtype) -> bool:
  """Whether a conv -> relu -> max-pool block of these sizes runs fused (else: hybrid): the
  kernel was compiled for its (kernel size, input channels, features)."""
  lib, _ = _library()
  return (lib is not None and 1 <= pool <= MAX_POOL
          and jnp.dtype(dtype) == jnp.float32
          and bool(lib.ConvReluPoolCompiled(kernel_size, in_channels, features)))


def conv_fits(in_channels: int, kernel_size: int, features: int, strides: int, dtype) -> bool:
  """Whether a convolution of these sizes runs as conv2d.cc's kernels (else: hybrid): stride 1,
  a (kernel size, input channels, features) they were compiled for, and a CPU their register
  blocks were sized for (AVX-512; elsewhere they spill and Eigen is far faster: `tuned()`)."""
  lib, _ = _library()
  return (lib is not None and tuned() and strides == 1 and jnp.dtype(dtype) == jnp.float32
          and bool(lib.Conv2dCompiled(kernel_size, in_channels, features)))


def pool_fits(features: int, pool: int, dtype) -> bool:
  """Whether relu -> models.max_pool(pool) of a map with these features runs as relu_pool.cc."""
  lib, _ = _library()
  return (lib is not None and 1 <= pool <= MAX_POOL and jnp.dtype(dtype) == jnp.float32
          and bool(lib.ReluPoolCompiled(features)))


def tuned() -> bool:
  """Whether conv2d.cc's kernels were built for a CPU they are fast on (AVX-512)."""
  lib, _ = _library()
  return lib is not None and bool(lib.Conv2dTuned())


def _pooled_shape(x, kernel, strides, pool):
  n, h, w, _ = x.shape
  k, f = kernel.shape[0], kernel.shape[3]
  return (n, ((h - k) // strides + 1) // pool, ((w - k) // strides + 1) // pool, f)


def _call(name, out, *args, **attributes):
  ok, why = available()  # builds and registers the kernels on first use
  if not ok:
    raise UserError(f"the fused conv kernel is unavailable: {why}")
  return jax.ffi.ffi_call(f"research_{name}", out)(
      *args, **{k: np.int64(v) for k, v in attributes.items()})


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def conv_relu_pool(x, kernel, bias, strides: int = 1, pool: int = 2):
  """max_pool(relu(VALID conv(x, kernel, strides) + bias), pool) for float32 x [N, H, W, C],
  an HWIO kernel [k, k, C, F] and bias [F] -> [N, Ho // pool, Wo // pool, F]."""
  out = jax.ShapeDtypeStruct(_pooled_shape(x, kernel, strides, pool), jnp.float32)
  return _call("ConvReluPoolForward", out, x, kernel, bias, s=strides, p=pool)


def _forward(x, kernel, bias, strides, pool):
  return conv_relu_pool(x, kernel, bias, strides, pool), (x, kernel, bias)


def _backward(strides, pool, residuals, dy):
  x, kernel, bias = residuals
  grads = (jax.ShapeDtypeStruct(kernel.shape, jnp.float32),
           jax.ShapeDtypeStruct(bias.shape, jnp.float32))
  dkernel, dbias = _call("ConvReluPoolKernelGrad", grads, x, kernel, bias, dy, s=strides, p=pool)
  # A separate call, so that XLA drops it where x is the data (the first layer): no one reads it.
  dx = _call("ConvReluPoolInputGrad", jax.ShapeDtypeStruct(x.shape, jnp.float32), x, kernel, bias,
             dy, s=strides, p=pool)
  return dx, dkernel, dbias


conv_relu_pool.defvjp(_forward, _backward)


class ConvReluPool(nn.Module):
  """nn.Conv(features, (k, k), strides, padding) -> relu -> models.max_pool(pool), with nn.Conv's
  parameters (names, shapes, initialisers: checkpoints load into every formulation)."""
  features: int
  kernel_size: int = 3
  strides: int = 1
  padding: str = "VALID"  # or "SAME": padded here, as lax does
  pool: int = 2

  @nn.compact
  def __call__(self, x):
    k, s = self.kernel_size, self.strides
    kernel = self.param("kernel", nn.initializers.lecun_normal(), (k, k, x.shape[-1], self.features))
    bias = self.param("bias", nn.initializers.zeros, (self.features,))
    pads = equivalence.resolve_padding(self.padding, x.shape[1:3], (k, k), (s, s), (1, 1))
    x = jnp.pad(x.astype(jnp.float32), ((0, 0), *pads, (0, 0)))
    return conv_relu_pool(x, kernel, bias, s, self.pool)


@jax.custom_vjp
def conv2d(x, kernel, bias):
  """VALID stride-1 conv(x, kernel) + bias for float32 x [N, H, W, C], an HWIO kernel
  [k, k, C, F] and bias [F] -> [N, H - k + 1, W - k + 1, F] (research/cpu/kernels/conv2d.cc)."""
  k = kernel.shape[0]
  out = jax.ShapeDtypeStruct((x.shape[0], x.shape[1] - k + 1, x.shape[2] - k + 1, kernel.shape[3]),
                             jnp.float32)
  return _call("Conv2dForward", out, x, kernel, bias)


def _conv2d_forward(x, kernel, bias):
  return conv2d(x, kernel, bias), (x, kernel)


def _conv2d_backward(residuals, dy):
  x, kernel = residuals
  dkernel = _call("Conv2dKernelGrad", jax.ShapeDtypeStruct(kernel.shape, jnp.float32), x, kernel, dy)
  # Its own call, so that XLA drops it where x is the data (no one reads it).
  dx = _call("Conv2dInputGrad", jax.ShapeDtypeStruct(x.shape, jnp.float32), x, kernel, dy)
  return dx, dkernel, convdot.bias_grad(dy)


conv2d.defvjp(_conv2d_forward, _conv2d_backward)


class Conv(nn.Module):
  """nn.Conv(features, (k, k), padding) at stride 1, with nn.Conv's parameters, as `conv2d`."""
  features: int
  kernel_size: int = 3
  padding: str = "VALID"  # or "SAME": padded here, as lax does

  @nn.compact
  def __call__(self, x):
    k = self.kernel_size
    kernel = self.param("kernel", nn.initializers.lecun_normal(), (k, k, x.shape[-1], self.features))
    bias = self.param("bias", nn.initializers.zeros, (self.features,))
    pads = equivalence.resolve_padding(self.padding, x.shape[1:3], (k, k), (1, 1), (1, 1))
    x = jnp.pad(x.astype(jnp.float32), ((0, 0), *pads, (0, 0)))
    return conv2d(x, kernel, bias)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def relu_max_pool(y, pool: int = 2):
  """models.max_pool(relu(y), pool) for float32 y [N, H, W, F] (research/cpu/kernels/relu_pool.cc)."""
  n, h, w, f = y.shape
  return _call("ReluPoolForward", jax.ShapeDtypeStruct((n, h // pool, w // pool, f), jnp.float32),
               y, p=pool)


def _relu_max_pool_forward(y, pool):
  return relu_max_pool(y, pool), y


def _relu_max_pool_backward(pool, y, dout):
  return (_call("ReluPoolBackward", jax.ShapeDtypeStruct(y.shape, jnp.float32), y, dout, p=pool),)


relu_max_pool.defvjp(_relu_max_pool_forward, _relu_max_pool_backward)
