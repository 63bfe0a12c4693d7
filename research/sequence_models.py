"""Models that read their input as a sequence of its flattened values, one channel: Conv1DNet
(1-D convolutions: tabular columns, MNIST-1D) and GRUNet (MNIST-1D's GRU baseline). Registered
by name in research/models.py MODELS."""
from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp


class Conv1DNet(nn.Module):
  """Conv1D -> relu -> max pool blocks over the flattened features, then the classifier.

  For data without spatial structure (tabular): the input [N, ...] is read as a sequence of
  its flattened values, one channel, so the kernel slides over neighbouring columns. Each conv
  has `kernel_size` (or its entry of `kernels`), `stride` and `padding` zeros at both ends
  (0: VALID); pool 1: no pooling (MNIST-1D's ConvBase: kernels 5, 3, 3, stride 2, padding 1).
  """
  features: Sequence[int] = (16, 32)
  kernel_size: int = 3
  pool: int = 2
  num_classes: int = 2
  dtype: jnp.dtype = jnp.float32
  kernels: Sequence[int] = ()
  stride: int = 1
  padding: int = 0

  @nn.compact
  def __call__(self, x):
    x = x.reshape((x.shape[0], -1, 1))
    kernels = tuple(self.kernels) or (self.kernel_size,) * len(self.features)
    for width, k in zip(self.features, kernels):
      x = nn.relu(nn.Conv(width, (k,), strides=(self.stride,),
                          padding=[(self.padding, self.padding)], dtype=self.dtype)(x))
      if self.pool > 1:
        n, length, c = x.shape
        x = x[:, :length // self.pool * self.pool].reshape(n, length // self.pool, self.pool, c)
        x = x.max(axis=2)
    x = x.reshape((x.shape[0], -1))
    return nn.Dense(self.num_classes, dtype=self.dtype)(x)


class GRUNet(nn.Module):
  """A GRU read along the flattened input (one value a step), its outputs at every step
  concatenated, then the classifier: MNIST-1D's GRU baseline (Greydanus 2020: hidden 6, both
  directions; flax's GRUCell has 4 of the 6 PyTorch bias vectors)."""
  hidden: int = 6
  bidirectional: bool = True
  num_classes: int = 10
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    x = x.reshape((x.shape[0], -1, 1)).astype(self.dtype)
    rnn = lambda name: nn.RNN(nn.GRUCell(self.hidden, dtype=self.dtype), name=name)
    h = (nn.Bidirectional(rnn("forward"), rnn("backward"))(x) if self.bidirectional
         else rnn("forward")(x))
    return nn.Dense(self.num_classes, dtype=self.dtype)(h.reshape((h.shape[0], -1)))
