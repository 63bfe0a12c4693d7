"""Flax Linen models, looked up by name from the config (`MODELS`).

The seed models of `../shared/seeds/`:
  mlp    Flatten -> Dense(128, relu) -> Dense(10)                  101,770 params
  cnn    Conv 32 3x3 relu -> MaxPool 2 -> Conv 64 3x3 relu
         -> MaxPool 2 -> Flatten -> Dense(10)                      34,826 params
  lcn    the cnn's layout with locally connected layers: same receptive fields, no weight sharing
  fcn    the cnn's layout with every conv computed as a Dense layer on the flattened feature map
         (the eFCN of d'Ascoli et al. 2019; research/equivalence.cnn_to_fcn maps a trained cnn
         onto it exactly)
  cnn1d  a 1-D conv net over a flat vector (tabular data, MNIST-1D; research/sequence_models.py)
  gru    a GRU along a flat vector (MNIST-1D's GRU baseline; research/sequence_models.py)
  fc, s_fc, d_fc  dense nets whose runs log their first layer's locality (FC below)

conv ⊂ locally connected ⊂ dense: one CNN class, given its block (`CONV`, `LOCAL`, `DENSE`, or a
CPU formulation from research/cpu) the way flax's ImageNet example is given `conv=nn.ConvLocal`.
A block is called once per layer inside the CNN and names its parameters as nn.Conv,
nn.ConvLocal or nn.Dense would (`Conv_i`, `ConvLocal_i`, `ConvDense_i`): every block of one
kind loads the same checkpoints.
"""
import dataclasses
from typing import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from research import UserError, equivalence
from research.sequence_models import Conv1DNet, GRUNet, TorchGRUCell


def max_pool(x: jax.Array, window: int) -> jax.Array:
  """Non-overlapping VALID max pooling (stride == window) as a reshape + max.

  Same values as `nn.max_pool(x, (w, w), strides=(w, w))`: the trailing rows and columns
  that do not fill a window are dropped. XLA:CPU differentiates a reduce-max far faster than
  the select-and-scatter that `reduce_window` lowers to.
  """
  if window == 1:
    return x
  n, h, w, c = x.shape
  hh, ww = h // window, w // window
  x = x[:, :hh * window, :ww * window, :]
  x = x.reshape(n, hh, window, ww, window, c)
  return x.max(axis=(2, 4))


def relu_pool(x: jax.Array, cnn: "CNN") -> jax.Array:
  """relu, then the CNN's max pool (`pool_impl` 'reshape': `max_pool`; else nn.max_pool)."""
  x = nn.relu(x)
  if cnn.pool_impl == "reshape":
    return max_pool(x, cnn.pool)
  return nn.max_pool(x, (cnn.pool, cnn.pool), strides=(cnn.pool, cnn.pool))


class LocallyConnected(nn.Module):
  """nn.ConvLocal's layer (VALID padding, stride 1) with its parameters (kernel [Ho, Wo, C*k*k, F]
  in channel-major patch order, bias [Ho, Wo, F]) and its values to float32 rounding, computed as
  one batched matmul over positions: the k*k taps are slices of an [H, W, N, C] transpose, not
  nn.ConvLocal's one-hot patch convolution, whose cost grows with C*k*k (several times slower on
  CPU; tests/test_models.py checks outputs and gradients against nn.ConvLocal)."""
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


def dense_layer(block, features: int, dtype, name: str) -> nn.Module:
  """The Dense layer `name` (`Dense_j`, as flax names them): the block's own where it has one
  (research/cpu's fused block: dense.cc, whose sums run in an order fixed by the shapes, where
  XLA's dot splits them by the thread count), else flax's nn.Dense. Same parameters either way."""
  make = getattr(block, "dense", None)
  return make(features, dtype, name) if make else nn.Dense(features, dtype=dtype, name=name)


class MLP(nn.Module):
  """Dense layers on the flattened input; `block` (the machine's conv block) may compute them.
  `residual`: a hidden layer as wide as its input adds its output to it, h + relu(W h + b)
  (MNIST-1D's MLPBase)."""
  hidden: Sequence[int] = (128,)
  num_classes: int = 10
  block: Callable | None = None
  dtype: jnp.dtype = jnp.float32
  residual: bool = False

  @nn.compact
  def __call__(self, x):
    x = x.reshape((x.shape[0], -1))
    for j, width in enumerate(self.hidden):
      h = nn.relu(dense_layer(self.block, width, self.dtype, f"Dense_{j}")(x))
      x = x + h if self.residual and j > 0 and x.shape[-1] == width else h
    return dense_layer(self.block, self.num_classes, self.dtype, f"Dense_{len(self.hidden)}")(x)


@dataclasses.dataclass(frozen=True)
class ConvBlock:
  """Layer i of a CNN: flax's nn.Conv (named `Conv_i`), relu, max pool."""
  name: str = "nn.Conv"  # recorded in results.json as conv_impl

  def __call__(self, x, i: int, features: int, cnn: "CNN"):
    k, s = (cnn.kernel_size, cnn.kernel_size), (cnn.strides, cnn.strides)
    x = nn.Conv(features, k, strides=s, padding=cnn.padding, dtype=cnn.dtype, name=f"Conv_{i}")(x)
    return relu_pool(x, cnn)


@dataclasses.dataclass(frozen=True)
class LocalBlock:
  """Layer i as a locally connected layer (`ConvLocal_i`, nn.ConvLocal's parameters): every
  output position has its own filter. LocallyConnected at VALID stride 1, else nn.ConvLocal."""
  name: str = "local"

  def __call__(self, x, i: int, features: int, cnn: "CNN"):
    if (cnn.padding, cnn.strides) == ("VALID", 1):
      x = LocallyConnected(features, cnn.kernel_size, dtype=cnn.dtype, name=f"ConvLocal_{i}")(x)
    else:
      k, s = (cnn.kernel_size, cnn.kernel_size), (cnn.strides, cnn.strides)
      x = nn.ConvLocal(features, k, strides=s, padding=cnn.padding, dtype=cnn.dtype,
                       name=f"ConvLocal_{i}")(x)
    return relu_pool(x, cnn)


@dataclasses.dataclass(frozen=True)
class DenseBlock:
  """Layer i as an nn.Dense (`ConvDense_i`) from the flattened input map to the flattened output
  map the conv would give: every weight free (the eFCN)."""
  name: str = "dense"

  def __call__(self, x, i: int, features: int, cnn: "CNN"):
    n, h, w, _ = x.shape
    k, s = (cnn.kernel_size, cnn.kernel_size), (cnn.strides, cnn.strides)
    pads = equivalence.resolve_padding(cnn.padding, (h, w), k, s, (1, 1))
    ho, wo = equivalence.conv_output_hw((h, w), k, s, pads, (1, 1))
    dense = nn.Dense(ho * wo * features, dtype=cnn.dtype, name=f"ConvDense_{i}")
    x = dense(x.reshape(n, -1)).reshape(n, ho, wo, features)
    return relu_pool(x, cnn)


CONV, LOCAL, DENSE = ConvBlock(), LocalBlock(), DenseBlock()


class CNN(nn.Module):
  """Blocks (conv -> relu -> max pool, by default), then optional Dense layers, then the
  classifier. `block` makes each layer (`CONV`, `LOCAL`, `DENSE`, or a CPU formulation)."""
  features: Sequence[int] = (32, 64)
  kernel_size: int = 3
  pool: int = 2
  dense: Sequence[int] = ()
  num_classes: int = 10
  block: Callable = CONV
  padding: str = "VALID"  # or "SAME"; the configs use VALID (the seed's Conv2D default)
  strides: int = 1
  pool_impl: str = "reshape"  # or "reduce_window" (nn.max_pool); same values
  global_pool: bool = False  # the last map averaged over its positions, not flattened
  dtype: jnp.dtype = jnp.float32

  @property
  def local(self) -> bool:
    return isinstance(self.block, LocalBlock)

  @property
  def as_dense(self) -> bool:
    return isinstance(self.block, DenseBlock)

  @nn.compact
  def __call__(self, x):
    for i, width in enumerate(self.features):
      x = self.block(x, i, width, self)
    x = x.mean(axis=(1, 2)) if self.global_pool else x.reshape((x.shape[0], -1))
    for j, width in enumerate(self.dense):
      x = nn.relu(dense_layer(self.block, width, self.dtype, f"Dense_{j}")(x))
    return dense_layer(self.block, self.num_classes, self.dtype, f"Dense_{len(self.dense)}")(x)


@dataclasses.dataclass(frozen=True)
class Probe:
  """What a dense net's locality metrics need of its run (research/locality.py): the dataset
  (its varying pixels set the chance level), the pixel permutation it trains under (its first
  layer is un-permuted before it is measured) and the window side."""
  dataset: str = "mnist"
  data_dir: str = ""
  permuted: bool = False
  permutation_seed: int = 0
  window: int = 7


class FC(MLP):
  """A fully connected net (the MLP's layers and parameter names) whose runs log the locality
  and sparsity of its first layer at each evaluation (`weight_metrics_fn`, research/locality.py).

    fc     Dense(mlp_hidden...) -> Dense(classes): the calibration MLP 784 -> 512 -> 10 is
           fc with mlp_hidden=(512,) (407,050 params); with (128,) the seed MLP (101,770)
    s_fc   Neyshabur 2020's S-FC at MNIST scale: the fully connected counterpart of S-CONV (a
           9x9 stride-2 conv of α channels -> Dense(24α) -> classes): Dense(14*14*α) ->
           Dense(24α) -> classes; α = fc_alpha = 4: 784 -> 784 -> 96 -> 10, 691,770 params
    d_fc   its D-FC: the counterpart of D-CONV (eight 3x3 convs of α, 2α, 2α, 4α, 4α, 8α, 8α,
           16α channels, strides 1, 2, 1, 2, 1, 2, 1, 2, SAME -> Dense(64α) -> classes): Dense
           layers of the convs' output sizes α*(784, 392, 392, 196, 196, 128, 128, 64), then
           64α, then classes; α = 1: 1,247,650 params (α = 4: 12,550,570)
  (tests/test_locality.py checks these counts.) The widths are ours at MNIST's 28x28 (the paper's
  nets are for 32x32 CIFAR); α is `fc_alpha`.
  """
  probe: Probe | None = None


def s_fc_widths(alpha: int, image_shape=(28, 28)) -> tuple[int, ...]:
  h, w = -(-int(image_shape[0]) // 2), -(-int(image_shape[1]) // 2)  # stride 2, SAME
  return (h * w * alpha, 24 * alpha)


def d_fc_widths(alpha: int, image_shape=(28, 28)) -> tuple[int, ...]:
  h, w = int(image_shape[0]), int(image_shape[1])
  out = []
  for channels, stride in zip((1, 2, 2, 4, 4, 8, 8, 16), (1, 2, 1, 2, 1, 2, 1, 2)):
    h, w = -(-h // stride), -(-w // stride)
    out.append(h * w * channels * alpha)
  return tuple(out) + (64 * alpha,)


def _probe(config) -> Probe:
  return Probe(dataset=config.dataset, data_dir=config.data_dir,
               permuted=config.pixel_permutation == "train_test",
               permutation_seed=int(config.permutation_seed))


def _fc(widths):
  def build(config, num_classes, dtype, block):
    return FC(hidden=tuple(widths(config)), num_classes=num_classes, block=block, dtype=dtype,
              probe=_probe(config))
  return build


def conv_block(config, platform: str | None = None, num_devices: int = 1):
  """The block a CNN computes its conv layers with on `platform` ('cpu', 'gpu', 'tpu'; default
  JAX's backend) over `num_devices`, for `config.conv_impl`. flax's nn.Conv on GPU and TPU and
  for 'nn.Conv'; every other choice, and 'auto' on CPU, is research/cpu's to make: this is the
  one place the core reaches into it."""
  platform = platform or jax.default_backend()
  if config.conv_impl == "nn.Conv" or (config.conv_impl == "auto" and platform != "cpu"):
    return CONV
  from research import cpu
  return cpu.conv_block(config.conv_impl, platform, num_devices, config.parallelism)


def _cnn(config, num_classes, dtype, block, global_pool=False):
  return CNN(features=tuple(config.cnn_features), kernel_size=config.cnn_kernel,
             pool=config.cnn_pool, dense=tuple(config.cnn_dense), num_classes=num_classes,
             block=block, pool_impl=config.pool_impl, global_pool=global_pool, dtype=dtype)


# name -> builder(config, num_classes, dtype, block): the model of `config.model`.
MODELS: dict[str, Callable[..., nn.Module]] = {
    "mlp": lambda config, num_classes, dtype, block: MLP(
        hidden=tuple(config.mlp_hidden), num_classes=num_classes, block=block, dtype=dtype,
        residual=config.mlp_residual),
    "cnn": _cnn,
    "cnn_gap": lambda config, num_classes, dtype, block: _cnn(config, num_classes, dtype, block,
                                                              global_pool=True),
    "lcn": lambda config, num_classes, dtype, block: _cnn(config, num_classes, dtype, LOCAL),
    "fcn": lambda config, num_classes, dtype, block: _cnn(config, num_classes, dtype, DENSE),
    "cnn1d": lambda config, num_classes, dtype, block: Conv1DNet(
        features=tuple(config.cnn_features), kernel_size=config.cnn_kernel,
        pool=config.cnn_pool, num_classes=num_classes, dtype=dtype,
        kernels=tuple(config.cnn1d_kernels), stride=config.cnn1d_stride,
        padding=config.cnn1d_padding),
    "gru": lambda config, num_classes, dtype, block: GRUNet(
        hidden=config.rnn_hidden, bidirectional=config.rnn_bidirectional,
        num_classes=num_classes, dtype=dtype, layout=config.gru_layout),
    # Dense nets whose runs log their first layer's locality (FC; research/locality.py).
    "fc": _fc(lambda config: config.mlp_hidden),
    "s_fc": _fc(lambda config: s_fc_widths(config.fc_alpha)),
    "d_fc": _fc(lambda config: d_fc_widths(config.fc_alpha)),
}


def check_config(config) -> None:
  """Raises UserError for a model name the registry does not know."""
  if config.model not in MODELS:
    raise UserError(f"unknown model {config.model!r}; choose one of {sorted(MODELS)}")
  kernels = tuple(config.get("cnn1d_kernels", ()))
  if config.model == "cnn1d" and kernels and len(kernels) != len(config.cnn_features):
    raise UserError(f"cnn1d_kernels {kernels} needs one kernel per conv of cnn_features "
                    f"{tuple(config.cnn_features)}")


def check_input(config, image_shape) -> None:
  """Raises UserError when `config`'s CNN layers do not fit images of `image_shape` (H, W, C):
  every conv must see at least its kernel and every pool its window."""
  if config.model not in ("cnn", "cnn_gap", "lcn", "fcn"):
    return
  h, w = int(image_shape[0]), int(image_shape[1])
  for i, _ in enumerate(config.cnn_features):
    k = config.cnn_kernel
    h, w = h - k + 1, w - k + 1  # VALID, stride 1: what the configs build
    if min(h, w) < 1 or min(h, w) // config.cnn_pool < 1:
      shape = "x".join(map(str, image_shape))
      hint = (" (a sequence: model 'cnn1d' convolves along it)" if 1 in tuple(image_shape)[:2]
              else "")
      raise UserError(f"model {config.model!r} does not fit {config.dataset}'s {shape} inputs"
                      f"{hint}: its layer {i} ({k}x{k} conv, then pool {config.cnn_pool}) "
                      f"needs a larger map; use fewer cnn_features or a smaller cnn_kernel")
    h, w = h // config.cnn_pool, w // config.cnn_pool


def create_model(config, num_classes: int, block=None) -> nn.Module:
  """The model named by `config.model`, built from the config's width fields; a CNN computes
  its conv layers with `block` (default: `conv_block(config)`, this machine's choice for one
  device)."""
  check_config(config)
  dtype = jnp.bfloat16 if config.half_precision else jnp.float32
  return MODELS[config.model](config, num_classes, dtype, block or conv_block(config))


def weight_metrics_fn(model: nn.Module, image_shape) -> Callable[[dict], dict] | None:
  """For an eFCN (a CNN with `as_dense=True`): params -> {"outside_local/ConvDense_i": ...,
  "outside_conv/ConvDense_i": ...}, the share of each conv-derived matrix's norm outside the
  locally connected and the convolutional pattern of its conv (equivalence.subspace_fractions).
  For an FC (fc, s_fc, d_fc): its first layer's locality on the original grid, the chance level
  and the fraction of weights left in each layer (research/locality.metrics_fn). None for other
  models. train.py logs it at each evaluation (split "weights")."""
  if isinstance(model, FC) and model.probe is not None:
    return _locality_metrics(model.probe, image_shape)
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


def _locality_metrics(probe: Probe, image_shape):
  """research/locality.metrics_fn for a run of `probe`: the varying inputs of the dataset's
  original training images (when their shape is the run's) and its pixel permutation."""
  import ml_collections
  from research import data, locality, transforms
  ds = data.load_dataset(ml_collections.ConfigDict(
      {"dataset": probe.dataset, "data_dir": probe.data_dir}))
  same = tuple(ds.image_shape) == tuple(image_shape)
  varying = locality.varying_pixels(ds.train_images) if same else None
  perm = (transforms.pixel_permutation(tuple(image_shape), probe.permutation_seed)
          if probe.permuted else None)
  return locality.metrics_fn(tuple(image_shape), probe.window, varying, perm)


def count_params(params) -> int:
  return sum(int(x.size) for x in jax.tree.leaves(params))
