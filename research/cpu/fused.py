"""conv_impl='fused': the seed CNN's convolutions as C++ kernels called from XLA:CPU
(research/cpu/kernels, built by research/cpu/build.py), with nn.Conv's parameters and math.

- conv_relu_pool.cc, for a layer on few input channels (the seed CNN's first, 28x28x1 -> 32):
  conv, bias, relu and max pool as one kernel that computes the pooled outputs only; its
  backward recomputes each window's pre-activations instead of storing the [N, Ho, Wo, F] map,
  which is most of such a layer's memory traffic.
- conv2d.cc, for a stride-1 layer on many channels (the seed CNN's second, 13x13x32 -> 64): the
  convolution + bias and its input and kernel gradients as direct convolutions with
  register-blocked FMAs, on CPUs those blocks were sized for (AVX-512: `tuned`).
- relu_pool.cc: relu then max pool, and its gradient, after a layer that is not the first.

Results equal nn.Conv's to float32 rounding (tests/test_fused.py checks against float64);
gradients are JAX's for relu then max (ties share dy). scripts/profile_step.py times each piece
against what it replaces; docs/performance.md has the numbers.
"""
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from research import UserError, equivalence
from research.cpu import build, convdot

MAX_POOL = 4  # the kernels' largest pool window side (kMaxWindow = 4 * 4 there)


def available() -> tuple[bool, str]:
  """Whether any kernel can run in this process, and if one cannot, why (one line)."""
  return build.available()


def fits(in_channels: int, kernel_size: int, features: int, pool: int, dtype) -> bool:
  """Whether a conv -> relu -> max-pool block of these sizes runs fused (else: hybrid): the
  kernel was compiled for its (kernel size, input channels, features)."""
  lib, _ = build.library("conv_relu_pool.cc")
  return (lib is not None and 1 <= pool <= MAX_POOL
          and jnp.dtype(dtype) == jnp.float32
          and bool(lib.ConvReluPoolCompiled(kernel_size, in_channels, features)))


def conv_fits(in_channels: int, kernel_size: int, features: int, strides: int, dtype) -> bool:
  """Whether a convolution of these sizes runs as conv2d.cc's kernels (else: hybrid): stride 1,
  a (kernel size, input channels, features) they were compiled for, and a CPU their register
  blocks were sized for (AVX-512; elsewhere they spill and Eigen is far faster: `tuned()`)."""
  lib, _ = build.library("conv2d.cc")
  return (lib is not None and tuned() and strides == 1 and jnp.dtype(dtype) == jnp.float32
          and bool(lib.Conv2dCompiled(kernel_size, in_channels, features)))


def pool_fits(features: int, pool: int, dtype) -> bool:
  """Whether relu -> models.max_pool(pool) of a map with these features runs as relu_pool.cc."""
  lib, _ = build.library("relu_pool.cc")
  return (lib is not None and 1 <= pool <= MAX_POOL and jnp.dtype(dtype) == jnp.float32
          and bool(lib.ReluPoolCompiled(features)))


def dense_fits(dtype) -> bool:
  """Whether a dense layer of this dtype runs as dense.cc's kernels (any sizes, float32)."""
  lib, _ = build.library("dense.cc")
  return lib is not None and jnp.dtype(dtype) == jnp.float32


def tuned() -> bool:
  """Whether conv2d.cc's kernels were built for a CPU they are fast on (AVX-512)."""
  lib, _ = build.library("conv2d.cc")
  return lib is not None and bool(lib.Conv2dTuned())


def _pooled_shape(x, kernel, strides, pool):
  n, h, w, _ = x.shape
  k, f = kernel.shape[0], kernel.shape[3]
  return (n, ((h - k) // strides + 1) // pool, ((w - k) // strides + 1) // pool, f)


_SOURCE = {target: source for source, (targets, _) in build.KERNELS.items() for target in targets}


def _call(name, out, *args, **attributes):
  source = _SOURCE[name]
  lib, why = build.library(source)  # builds and registers the kernel on first use
  if lib is None:
    raise UserError(f"the CPU kernel {source} is unavailable: {why}")
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


@jax.custom_vjp
def dense(x, kernel, bias):
  """x @ kernel + bias for float32 x [B, K], kernel [K, N] and bias [N] -> [B, N]
  (research/cpu/kernels/dense.cc: every sum in an order fixed by the shapes)."""
  return _call("DenseForward", jax.ShapeDtypeStruct((x.shape[0], kernel.shape[1]), jnp.float32),
               x, kernel, bias)


def _dense_forward(x, kernel, bias):
  return dense(x, kernel, bias), (x, kernel)


def _dense_backward(residuals, dy):
  x, kernel = residuals
  dkernel, dbias = _call("DenseParamGrad", (jax.ShapeDtypeStruct(kernel.shape, jnp.float32),
                                            jax.ShapeDtypeStruct(kernel.shape[1:], jnp.float32)),
                         x, dy)
  # Its own call, so that XLA drops it where x is the data (no one reads it).
  dx = _call("DenseInputGrad", jax.ShapeDtypeStruct(x.shape, jnp.float32), x, kernel, dy)
  return dx, dkernel, dbias


dense.defvjp(_dense_forward, _dense_backward)


class Dense(nn.Module):
  """nn.Dense(features) with its parameters (names, shapes, initialisers), as `dense`."""
  features: int

  @nn.compact
  def __call__(self, x):
    kernel = self.param("kernel", nn.initializers.lecun_normal(), (x.shape[-1], self.features))
    bias = self.param("bias", nn.initializers.zeros, (self.features,))
    return dense(x.astype(jnp.float32), kernel, bias)
