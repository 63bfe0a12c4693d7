"""Models that read their input as a sequence of its flattened values, one channel: Conv1DNet
(1-D convolutions: tabular columns, MNIST-1D) and GRUNet (MNIST-1D's GRU baseline). Registered
by name in research/models.py MODELS."""
from typing import Sequence

import flax.linen as nn
import jax
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


def torch_uniform(fan: int):
  """PyTorch's default for recurrent and linear layers: uniform in ±1/√fan."""
  bound = fan ** -0.5
  return lambda key, shape, dtype=jnp.float32: jax.random.uniform(key, shape, dtype, -bound,
                                                                   bound)


class TorchGRUCell(nn.GRUCell):
  """PyTorch's GRU cell: every gate has an input and a hidden bias (6 vectors where flax's
  GRUCell has 4); the initializers are the fields kernel_init, recurrent_kernel_init and
  bias_init, which GRUNet sets to PyTorch's."""

  @nn.compact
  def __call__(self, carry, inputs):
    h = carry
    dense = lambda name, init: nn.Dense(h.shape[-1], dtype=self.dtype, name=name,
                                        param_dtype=self.param_dtype, kernel_init=init,
                                        bias_init=self.bias_init)
    gate = lambda g: (dense(f"i{g}", self.kernel_init)(inputs),
                      dense(f"h{g}", self.recurrent_kernel_init)(h))
    (ir, hr), (iz, hz), (i_n, h_n) = gate("r"), gate("z"), gate("n")
    r, z = self.gate_fn(ir + hr), self.gate_fn(iz + hz)
    n = self.activation_fn(i_n + r * h_n)
    new_h = (1.0 - z) * n + z * h
    return new_h, new_h


class GRUNet(nn.Module):
  """A GRU read along the flattened input (one value a step), its outputs at every step
  concatenated, then the classifier: MNIST-1D's GRU baseline (Greydanus 2020: hidden 6, both
  directions). layout "flax": flax's GRUCell (4 bias vectors a cell) and initializers; "torch":
  PyTorch's GRU and Linear (6 bias vectors a cell; every weight and bias uniform in ±1/√fan,
  fan the cell's hidden units or the classifier's inputs), the paper's model as it ran."""
  hidden: int = 6
  bidirectional: bool = True
  num_classes: int = 10
  dtype: jnp.dtype = jnp.float32
  layout: str = "flax"

  @nn.compact
  def __call__(self, x):
    x = x.reshape((x.shape[0], -1, 1)).astype(self.dtype)
    torch = self.layout == "torch"

    def rnn(name):
      init = torch_uniform(self.hidden)
      cell = (TorchGRUCell(self.hidden, dtype=self.dtype, kernel_init=init,
                           recurrent_kernel_init=init, bias_init=init) if torch
              else nn.GRUCell(self.hidden, dtype=self.dtype))
      return nn.RNN(cell, name=name)

    h = (nn.Bidirectional(rnn("forward"), rnn("backward"))(x) if self.bidirectional
         else rnn("forward")(x))
    h = h.reshape((h.shape[0], -1))
    head = ({"kernel_init": torch_uniform(h.shape[-1]), "bias_init": torch_uniform(h.shape[-1])}
            if torch else {})
    return nn.Dense(self.num_classes, dtype=self.dtype, **head)(h)
