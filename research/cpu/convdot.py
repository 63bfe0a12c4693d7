"""Formulations of nn.Conv's 2-D convolution layer: the same parameters, the same math.
`config.conv_impl` picks one (research/cpu/__init__.py; 'auto' on an AVX-512 CPU is `fused`,
research/cpu/fused.py, which falls back to `hybrid` for a layer its kernels do not fit; on other
CPUs `hybrid`):

  xla          lax.conv_general_dilated (XLA:CPU runs it with Eigen's kernels), the bias added by
               `bias_add`, whose gradient is one matvec: nn.Conv's is a sum over N, H and W that
               XLA:CPU splits into slower reduce-window ops.
  im2col       `conv2d`: a convolution *is* a dense matmul on patches (research/equivalence.py).
               The patches come from k*k strided slices of the input and one dot makes the output;
               its `custom_vjp` gives the backward the same form: the kernel's gradient is
               patches^T @ dy and the input's is dy @ kernel^T folded back onto the input by the
               transpose of the slicing (pads and adds).
  im2col_bf16  `conv2d` with bfloat16 dot operands, float32 accumulation and float32 results
               (`preferred_element_type`); the steps then compile with YNNPACK for dots
               (research/parallel.py), which runs them on AVX-512 BF16 / AMX. Parameters,
               activations, gradients and Adam stay float32.
  hybrid       per layer: `im2col` where the input has at most HYBRID_IM2COL_CHANNELS channels
               (the seed CNN's first layer), `xla` elsewhere. Eigen's convolution runs a
               one-channel input far below its rate for many channels, and that is where patches
               are cheapest to build (k*k values a position).

What each costs on the CPU at hand: scripts/benchmark.py (a row per formulation) and
scripts/profile_step.py (per layer); docs/performance.md.
"""
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

from research import equivalence


def _patches(x, k: int, strides: int, out_hw):
  """[N, H, W, C] (already padded) -> [N, Ho, Wo, k*k*C], taps in (row, col, channel) order:
  the order of an HWIO kernel reshaped to [k*k*C, F]."""
  ho, wo = out_hw
  s = strides
  taps = [x[:, i:i + s * (ho - 1) + 1:s, j:j + s * (wo - 1) + 1:s, :]
          for i in range(k) for j in range(k)]
  return jnp.concatenate(taps, axis=-1)


def _out_hw(hw, k, strides):
  return equivalence.conv_output_hw(hw, (k, k), (strides, strides), ((0, 0), (0, 0)), (1, 1))


def _dot(a, b, contract, dtype):
  return jax.lax.dot_general(a.astype(dtype), b.astype(dtype), (contract, ((), ())),
                             preferred_element_type=jnp.float32)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def conv2d(x, kernel, strides: int = 1, compute_dtype=jnp.float32):
  """VALID convolution of x [N, H, W, C] with an HWIO kernel [k, k, C, F] -> float32 [N, Ho, Wo, F]."""
  return _forward(x, kernel, strides, compute_dtype)[0]


def _forward(x, kernel, strides, compute_dtype):
  k, _, c, f = kernel.shape
  patches = _patches(x, k, strides, _out_hw(x.shape[1:3], k, strides)).astype(compute_dtype)
  y = _dot(patches, kernel.reshape(k * k * c, f), ((3,), (0,)), compute_dtype)
  # An empty [N, H, W, 0] array carries x's shape and dtype to the backward.
  return y, (patches, kernel, jnp.zeros(x.shape[:3] + (0,), x.dtype))


def _bwd(strides, compute_dtype, residuals, dy):
  patches, kernel, x_like = residuals
  k, _, c, f = kernel.shape
  x_shape, x_dtype = x_like.shape[:3] + (c,), x_like.dtype
  dkernel = _dot(patches, dy, ((0, 1, 2), (0, 1, 2)), compute_dtype).reshape(kernel.shape)
  dpatches = _dot(dy, kernel.reshape(k * k * c, f), ((3,), (1,)), compute_dtype)
  # The patches are a linear function of x: its transpose folds dpatches back (pads and adds).
  fold = jax.linear_transpose(lambda x: _patches(x, k, strides, dy.shape[1:3]),
                              jax.ShapeDtypeStruct(x_shape, jnp.float32))
  (dx,) = fold(dpatches)
  return dx.astype(x_dtype), dkernel.astype(kernel.dtype)


conv2d.defvjp(_forward, _bwd)


@jax.custom_vjp
def bias_add(y, bias):
  """y [..., F] + bias [F]; the bias gradient as ones @ dy (one matvec). XLA:CPU splits the
  plain sum over N, H, W into reduce-window ops that ran at a fraction of memory speed here."""
  return y + bias


def _bias_fwd(y, bias):
  return y + bias, None


def bias_grad(dy):
  """The gradient of a bias added to dy's last axis: ones @ dy, one matvec.

  Its sums run in one order whatever the number of threads: XLA:CPU compiles a matrix-vector
  product into its own tiled loop (a `col_major_gemv` kernel) whose workgroups split the F
  outputs, each summed over all N*H*W rows in a fixed order, not into Eigen's contraction, which
  splits a long sum by the size of the thread pool (tests/test_threads.py compares the bits with
  1 and 3 threads). A plain sum over N, H, W took 2.4-4.5x its time here (batch 32-128)."""
  flat = dy.reshape(-1, dy.shape[-1])
  return jnp.ones((flat.shape[0],), flat.dtype) @ flat


def _bias_bwd(_, dy):
  return dy, bias_grad(dy)


bias_add.defvjp(_bias_fwd, _bias_bwd)


IMPLS = ("nn.Conv", "xla", "im2col", "im2col_bf16", "hybrid")
# hybrid: im2col for inputs with at most this many channels (measured at 1; 3 is RGB), else xla
HYBRID_IM2COL_CHANNELS = 4


class Conv(nn.Module):
  """nn.Conv(features, (k, k), strides, padding) with the same parameters (names, shapes,
  initialisers: a checkpoint of one loads into the other), computed by `impl`:

    xla          the same convolution, the bias gradient as a matvec (`bias_add`)
    im2col       `conv2d`: patches x matrix forward and backward, float32
    im2col_bf16  `conv2d` with bfloat16 dot operands, float32 accumulation and results
    hybrid       im2col for an input of at most HYBRID_IM2COL_CHANNELS channels, else xla
  """
  features: int
  kernel_size: int = 3
  strides: int = 1
  padding: str = "VALID"  # or "SAME"
  impl: str = "xla"
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    k, s = self.kernel_size, self.strides
    if self.impl not in IMPLS[1:]:
      raise ValueError(f"unknown conv impl {self.impl!r}; choose one of {IMPLS}")
    kernel = self.param("kernel", nn.initializers.lecun_normal(), (k, k, x.shape[-1], self.features))
    bias = self.param("bias", nn.initializers.zeros, (self.features,))
    x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
    impl = self.impl
    if impl == "hybrid":
      impl = "im2col" if x.shape[-1] <= HYBRID_IM2COL_CHANNELS else "xla"
    if impl == "xla":
      y = jax.lax.conv_general_dilated(x, kernel, (s, s), self.padding,
                                       dimension_numbers=("NHWC", "HWIO", "NHWC"))
      return bias_add(y, bias)
    pads = equivalence.resolve_padding(self.padding, x.shape[1:3], (k, k), (s, s), (1, 1))
    x = jnp.pad(x, ((0, 0), *pads, (0, 0)))  # conv2d is VALID: SAME pads first, as lax does
    dtype = jnp.bfloat16 if impl == "im2col_bf16" else jnp.float32
    return bias_add(conv2d(x, kernel, s, dtype).astype(self.dtype), bias)
