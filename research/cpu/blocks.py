"""The CNN's conv block computed by research/cpu's formulations, with nn.Conv's parameters
(`Conv_i`, same names, shapes and initialisers) and math: a drop-in for models.CONV.

  xla, im2col, im2col_bf16, hybrid   convdot.Conv, then relu and max pool as XLA ops
  fused   per layer, what fits: conv, relu and pool as one kernel (a layer on few input
          channels), else the convolution as conv2d.cc's kernels (else `hybrid`), then relu
          and pool as relu_pool.cc's kernels where they fit (else XLA's); the dense layers (a
          CNN's head, an MLP's) as dense.cc's kernels
"""
import dataclasses

import flax.linen as nn

from research import models
from research.cpu import convdot, fused


@dataclasses.dataclass(frozen=True)
class CpuBlock:
  name: str  # the formulation (config.conv_impl): recorded in results.json

  def __call__(self, x, i: int, features: int, cnn):
    k, s, name = cnn.kernel_size, cnn.strides, f"Conv_{i}"
    if self.name != "fused":
      x = convdot.Conv(features, k, s, cnn.padding, self.name, dtype=cnn.dtype, name=name)(x)
      return models.relu_pool(x, cnn)
    if cnn.pool_impl == "reshape" and fused.fits(x.shape[-1], k, features, cnn.pool, cnn.dtype):
      return fused.ConvReluPool(features, k, s, cnn.padding, cnn.pool, name=name)(x)
    if fused.conv_fits(x.shape[-1], k, features, s, cnn.dtype):
      x = fused.Conv(features, k, cnn.padding, name=name)(x)
    else:
      x = convdot.Conv(features, k, s, cnn.padding, "hybrid", dtype=cnn.dtype, name=name)(x)
    if cnn.pool_impl == "reshape" and fused.pool_fits(features, cnn.pool, cnn.dtype):
      return fused.relu_max_pool(x, cnn.pool)
    return models.relu_pool(x, cnn)

  def dense(self, features: int, dtype, name: str):
    """A model's dense layer `name`: dense.cc's kernels under `fused` (sums in an order fixed by
    the shapes: XLA's dot splits them by the thread count), else flax's nn.Dense."""
    if self.name == "fused" and fused.dense_fits(dtype):
      return fused.Dense(features, name=name)
    return nn.Dense(features, dtype=dtype, name=name)
