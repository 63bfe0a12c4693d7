"""Flax Linen models looked up by name from the config.

The seed models of `../shared/seeds/`:
  mlp  Flatten -> Dense(128, relu) -> Dense(10)              101,770 params
  cnn  Conv 32 3x3 relu -> MaxPool 2 -> Conv 64 3x3 relu
       -> MaxPool 2 -> Flatten -> Dense(10)                  34,826 params
  lcn  the cnn's layout with locally connected layers (LocallyConnected, parameters identical
       to nn.ConvLocal's): same receptive fields, no weight sharing.
  fcn  the cnn's layout with every conv computed as a Dense layer on the flattened feature map
       (the eFCN of d'Ascoli et al. 2019): research/equivalence.cnn_to_fcn maps a trained
       cnn's params onto it exactly. conv ⊂ locally connected ⊂ dense, one model class.
"""
from typing import Callable, Sequence

from absl import logging

import flax.linen as nn
import jax
import jax.numpy as jnp

from research import UserError, equivalence
from research.cpu import convdot, fused


def max_pool(x: jax.Array, window: int) -> jax.Array:
  """Non-overlapping VALID max pooling (stride == window) as a reshape + max.

  Same values as `nn.max_pool(x, (w, w), strides=(w, w))`: the trailing rows and columns
  that do not fill a window are dropped. XLA:CPU differentiates a reduce-max far faster than
  the select-and-scatter that `reduce_window` lowers to (see README, performance).
  """
  if window == 1:
    return x
  n, h, w, c = x.shape
  hh, ww = h // window, w // window
  x = x[:, :hh * window, :ww * window, :]
  x = x.reshape(n, hh, window, ww, window, c)
  return x.max(axis=(2, 4))


class LocallyConnected(nn.Module):
  """nn.ConvLocal's layer (VALID padding, stride 1), computed ~2.5x faster on CPU.

  Same parameters as nn.ConvLocal (kernel [Ho, Wo, C*k*k, F] with channel-major patches, bias
  [Ho, Wo, F]) and the same values to float32 rounding (tests/test_models.py checks outputs and
  gradients). Three changes of formulation, measured on the seed LCN's train step (batch 128, a
  2-core Xeon): nn.ConvLocal builds its patches with `conv_general_dilated_patches`, a
  convolution with a one-hot kernel whose cost (and its backward's) grows with C*k*k output
  channels, 288 in the second layer; here the k*k taps are slices. The positions are made the
  leading (batch) axis of one batched matmul, [Ho*Wo, N, C*k*k] x [Ho*Wo, C*k*k, F], by slicing
  a [H, W, N, C] transpose of the input: 142 ms (nn.ConvLocal) -> 67 ms a step. And the taps
  are concatenated whole (tap-major patches, C contiguous values per tap) with the kernel's rows
  permuted to match, instead of interleaving them channel-major: 55 -> 45 ms a step at 28x28
  and 395 -> 290 ms at 60x60 (5 steps a call, nothing else running).
  """
  features: int
  kernel_size: int = 3
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    n, h, w, c = x.shape
    k = self.kernel_size
    ho, wo, patch = h - k + 1, w - k + 1, c * k * k
    if ho <= 0 or wo <= 0:
      raise ValueError(f"a {k}x{k} VALID locally connected layer needs an input of at least "
                       f"{k}x{k}, got {h}x{w}")
    kernel = self.param("kernel", nn.initializers.lecun_normal(), (ho, wo, patch, self.features))
    bias = self.param("bias", nn.initializers.zeros, (ho, wo, self.features))
    x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
    xt = x.transpose(1, 2, 0, 3)  # [H, W, N, C]
    taps = [xt[i:i + ho, j:j + wo] for i in range(k) for j in range(k)]
    patches = jnp.concatenate(taps, axis=-1).reshape(ho * wo, n, patch)  # (tap, channel) order
    # nn.ConvLocal's kernel rows are in (channel, tap) order: permute them to the patches'.
    rows = kernel.reshape(ho * wo, c, k * k, self.features).transpose(0, 2, 1, 3)
    y = jax.lax.dot_general(patches, rows.reshape(ho * wo, patch, self.features),
                            (((2,), (1,)), ((0,), (0,))))  # [Ho*Wo, N, F]
    return y.reshape(ho, wo, n, self.features).transpose(2, 0, 1, 3) + bias


class MLP(nn.Module):
  """Dense layers on the flattened input."""
  hidden: Sequence[int] = (128,)
  num_classes: int = 10
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    x = x.reshape((x.shape[0], -1))
    for width in self.hidden:
      x = nn.relu(nn.Dense(width, dtype=self.dtype)(x))
    return nn.Dense(self.num_classes, dtype=self.dtype)(x)


class CNN(nn.Module):
  """Conv -> relu -> max pool blocks, then optional Dense layers, then the classifier.

  `local=True` swaps nn.Conv for a locally connected layer (LocallyConnected, parameters named
  and shaped as nn.ConvLocal's; nn.ConvLocal itself for padding or strides other than VALID, 1):
  every output position gets its own filter.
  `as_dense=True` swaps it for an nn.Dense (`ConvDense_i`) from the flattened input map to the
  flattened output map of the same shape: every weight free (the eFCN).
  """
  features: Sequence[int] = (32, 64)
  kernel_size: int = 3
  pool: int = 2
  dense: Sequence[int] = ()
  num_classes: int = 10
  local: bool = False
  as_dense: bool = False
  padding: str = "VALID"  # or "SAME"; the configs use VALID (the seed's Conv2D default)
  strides: int = 1
  pool_impl: str = "reshape"  # or "reduce_window" (nn.max_pool); same values
  conv_impl: str = "nn.Conv"  # or one of CONV_IMPLS: same parameters and math
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    k, s = (self.kernel_size, self.kernel_size), (self.strides, self.strides)
    for i, width in enumerate(self.features):
      if self.as_dense:  # the Dense layer with the conv's input and output shapes
        n, h, w, _ = x.shape
        pads = equivalence.resolve_padding(self.padding, (h, w), k, s, (1, 1))
        ho, wo = equivalence.conv_output_hw((h, w), k, s, pads, (1, 1))
        dense = nn.Dense(ho * wo * width, dtype=self.dtype, name=f"ConvDense_{i}")
        x = dense(x.reshape(n, -1)).reshape(n, ho, wo, width)
      elif self.local and (self.padding, self.strides) == ("VALID", 1):
        # named as nn.ConvLocal would be: checkpoints and equivalence see one tree
        x = LocallyConnected(width, self.kernel_size, dtype=self.dtype, name=f"ConvLocal_{i}")(x)
      elif self.local:
        x = nn.ConvLocal(width, k, strides=s, padding=self.padding, dtype=self.dtype,
                         name=f"ConvLocal_{i}")(x)
      elif self.conv_impl == "nn.Conv":
        x = nn.Conv(width, k, strides=s, padding=self.padding, dtype=self.dtype)(x)
      elif self.conv_impl == "fused" and self.pool_impl == "reshape" and fused.fits(
          x.shape[-1], self.kernel_size, width, self.pool, self.dtype):
        # conv, bias, relu and pool in one kernel (research/cpu/fused.py), same parameters
        x = fused.ConvReluPool(width, self.kernel_size, self.strides, self.padding, self.pool,
                               name=f"Conv_{i}")(x)
        continue
      elif self.conv_impl == "fused" and fused.conv_fits(x.shape[-1], self.kernel_size, width,
                                                         self.strides, self.dtype):
        # the convolution alone as conv2d.cc's kernels (research/cpu/fused.py), same parameters
        x = fused.Conv(width, self.kernel_size, self.padding, name=f"Conv_{i}")(x)
      else:  # named as nn.Conv would be: one parameter tree for every formulation
        impl = "hybrid" if self.conv_impl == "fused" else self.conv_impl
        x = convdot.Conv(width, self.kernel_size, self.strides, self.padding, impl,
                         dtype=self.dtype, name=f"Conv_{i}")(x)
      if (self.conv_impl == "fused" and not (self.local or self.as_dense)
          and self.pool_impl == "reshape" and fused.pool_fits(width, self.pool, self.dtype)):
        x = fused.relu_max_pool(x, self.pool)  # as one kernel: XLA's fusions were slow (fused.py)
        continue
      x = nn.relu(x)
      if self.pool_impl == "reshape":
        x = max_pool(x, self.pool)
      else:
        x = nn.max_pool(x, (self.pool, self.pool), strides=(self.pool, self.pool))
    x = x.reshape((x.shape[0], -1))
    for width in self.dense:
      x = nn.relu(nn.Dense(width, dtype=self.dtype)(x))
    return nn.Dense(self.num_classes, dtype=self.dtype)(x)


# research/cpu/convdot.py's formulations of the conv layer, and 'fused' (research/cpu/fused.py): the
# conv -> relu -> pool block of a layer on few input channels as one XLA:CPU kernel, the
# convolution of a stride-1 layer on many as another, `hybrid` for any other layer.
CONV_IMPLS = convdot.IMPLS + ("fused",)


def conv_impl(config, platform: str | None = None, num_devices: int = 1) -> str:
  """The convolution formulation `config.conv_impl` names; 'auto' picks per backend and, on CPU,
  per device count.

  Measured on the seed CNN's train step (batch 128, Adam, 10 steps per call; scripts/benchmark.py
  prints this comparison for the CPU it runs on, README "Performance"): on a 2-core AMD EPYC
  (AVX-512) fused 8.2 ms, hybrid 24.9, xla 23.6 (scripts/profile_step.py,
  docs/benchmark/profile_step.md; with the first layer's kernel only, `fused` was about 0.6 of
  hybrid's time in the same kind of interleaved runs, with both convolutions 0.47-0.49, with the
  second layer's relu and pool too 0.33); on a 2-core Sapphire Rapids
  Xeon (AVX-512, AVX-512 BF16, AMX), nothing else running, fused (first layer only) 13.3 ms,
  hybrid 17.7, xla 18.2 (scripts/profile_step.py); nn.Conv 20.2, xla 18.0, hybrid 17.6
  in an earlier run (im2col 24-28 ms and im2col_bf16 20.4-22.9 ms). nn.Conv's bias gradients
  are sums over N, H and W that XLA:CPU splits into reduce-window ops (4.8 ms of 20.5 in a profile); `xla` computes them as one matvec
  each; `hybrid` also runs the one-channel first layer as patches x matrix, where Eigen's
  convolution is slowest (research/cpu/convdot.py has the per-layer numbers); `fused` runs that
  layer's conv, bias, relu and pool as one kernel and never writes its 26x26x32 map, and the
  second layer's convolution and its gradients as direct-convolution kernels. So on CPU
  'auto' is 'fused' where its kernel builds (a C++ compiler is there) and 'hybrid' otherwise; on
  GPU and TPU it is flax's nn.Conv (cuDNN and the TPU compiler have no such gap, and nothing was
  measured there). Under `jit` over several devices XLA's partitioner cannot split the fused
  kernels' calls by batch and runs them whole on every device (correct, not faster), so there
  'auto' is 'hybrid'; `pmap` and single-device runs call it on each device's own batch.
  """
  platform = platform or jax.default_backend()
  if config.conv_impl == "fused":
    ok, why = fused.available()
    if platform != "cpu" or not ok:
      raise UserError(f"conv_impl='fused' is an XLA:CPU kernel and cannot run here: "
                      f"{why if platform == 'cpu' else 'the backend is ' + platform}")
  if config.conv_impl != "auto":
    return config.conv_impl
  if platform != "cpu":
    return "nn.Conv"
  if num_devices > 1 and config.parallelism == "jit":
    return "hybrid"
  ok, why = fused.available()
  if not ok:
    logging.warning("conv_impl 'auto' uses 'hybrid': the fused kernel is unavailable (%s)", why)
  return "fused" if ok else "hybrid"


def _mlp(config, num_classes, dtype, platform=None, num_devices=1):
  return MLP(hidden=tuple(config.mlp_hidden), num_classes=num_classes, dtype=dtype)


def _cnn(config, num_classes, dtype, local=False, as_dense=False, platform=None, num_devices=1):
  return CNN(features=tuple(config.cnn_features), kernel_size=config.cnn_kernel,
             pool=config.cnn_pool, dense=tuple(config.cnn_dense), num_classes=num_classes,
             local=local, as_dense=as_dense, pool_impl=config.pool_impl,
             conv_impl=conv_impl(config, platform, num_devices), dtype=dtype)


MODELS: dict[str, Callable[..., nn.Module]] = {
    "mlp": _mlp,
    "cnn": _cnn,
    "lcn": lambda config, num_classes, dtype, **_: _cnn(config, num_classes, dtype, local=True),
    "fcn": lambda config, num_classes, dtype, **_: _cnn(config, num_classes, dtype, as_dense=True),
}


class Conv1DNet(nn.Module):
  """Conv1D (VALID) -> relu -> max pool blocks over the flattened features, then the classifier.

  For data without spatial structure (tabular): the input [N, ...] is read as a sequence of
  its flattened values, one channel, so the kernel slides over neighbouring columns.
  """
  features: Sequence[int] = (16, 32)
  kernel_size: int = 3
  pool: int = 2
  num_classes: int = 2
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    x = x.reshape((x.shape[0], -1, 1))
    for width in self.features:
      x = nn.relu(nn.Conv(width, (self.kernel_size,), padding="VALID", dtype=self.dtype)(x))
      if self.pool > 1:
        n, length, c = x.shape
        x = x[:, :length // self.pool * self.pool].reshape(n, length // self.pool, self.pool, c)
        x = x.max(axis=2)
    x = x.reshape((x.shape[0], -1))
    return nn.Dense(self.num_classes, dtype=self.dtype)(x)


# Added for the Dense vs Conv studies (scripts/study_tabular.py): a 1-D conv net on a flat vector.
MODELS["cnn1d"] = lambda config, num_classes, dtype, **_: Conv1DNet(
    features=tuple(config.cnn_features), kernel_size=config.cnn_kernel, pool=config.cnn_pool,
    num_classes=num_classes, dtype=dtype)


def check_config(config) -> None:
  """Raises UserError for a model name or option the registry does not know."""
  if config.model not in MODELS:
    raise UserError(f"unknown model {config.model!r}; choose one of {sorted(MODELS)}")
  for field in ("mlp_hidden", "cnn_features", "cnn_dense"):
    widths = config[field]
    if not isinstance(widths, (tuple, list)) or not all(
        isinstance(w, int) and not isinstance(w, bool) and w > 0 for w in widths):
      raise UserError(f"{field} must be a tuple of positive ints, e.g. (32, 64); got {widths!r}")
  for field in ("cnn_kernel", "cnn_pool"):
    if config[field] <= 0:
      raise UserError(f"{field} must be positive, got {config[field]}")
  if config.pool_impl not in ("reshape", "reduce_window"):
    raise UserError(f"unknown pool_impl {config.pool_impl!r}; choose 'reshape' or 'reduce_window'")
  if config.conv_impl not in ("auto",) + CONV_IMPLS:
    raise UserError(f"unknown conv_impl {config.conv_impl!r}; choose one of "
                    f"{('auto',) + CONV_IMPLS}")


def create_model(config, num_classes: int, platform: str | None = None,
                 num_devices: int = 1) -> nn.Module:
  """The model named by `config.model`, built from the config's width fields, for `platform`
  ('cpu', 'gpu', 'tpu'; default: JAX's default backend) and the number of devices a step runs
  over, which `conv_impl='auto'` reads."""
  check_config(config)
  dtype = jnp.bfloat16 if config.half_precision else jnp.float32
  return MODELS[config.model](config, num_classes, dtype, platform=platform,
                              num_devices=num_devices)


def weight_metrics_fn(model: nn.Module, image_shape) -> Callable[[dict], dict] | None:
  """For an eFCN (a CNN with `as_dense=True`): params -> {"outside_local/ConvDense_i": ...,
  "outside_conv/ConvDense_i": ...}, the share of each conv-derived matrix's norm outside the
  locally connected and the convolutional pattern of its conv (equivalence.subspace_fractions).
  None for other models. train.py logs it at each evaluation (split "weights")."""
  if not (isinstance(model, CNN) and model.as_dense):
    return None
  geometry, shape = [], tuple(image_shape)
  for i, width in enumerate(model.features):
    geometry.append((f"ConvDense_{i}", shape, width))
    h, w, _ = shape
    k, s = (model.kernel_size,) * 2, (model.strides,) * 2
    pads = equivalence.resolve_padding(model.padding, (h, w), k, s, (1, 1))
    shape = equivalence.pooled_shape(equivalence.conv_output_hw((h, w), k, s, pads, (1, 1)) +
                                     (width,), model.pool)

  def metrics(params) -> dict:
    out = {}
    for name, in_shape, width in geometry:
      fractions = equivalence.subspace_fractions(
          params[name]["kernel"], in_shape, model.kernel_size, width, model.strides, model.padding)
      out.update({f"{k}/{name}": v for k, v in fractions.items()})
    return out

  return metrics


def count_params(params) -> int:
  return sum(int(x.size) for x in jax.tree.leaves(params))
