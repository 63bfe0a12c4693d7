"""Layer tables of the project's models, shared by the params and input_handling studies, and
the widths of MLPs matched to a CNN's parameters or multiply-adds."""
import importlib

import numpy as np

MODEL_CONFIGS = {"mlp": "configs.mnist_mlp", "cnn": "configs.mnist_cnn", "lcn": "configs.mnist_cnn"}


def build(name: str, num_classes: int = 10):
  """The model `name` of its config, its conv layers as flax's nn.Conv: a layer's output is the
  conv's own (a CPU formulation may fuse the pool into the conv's module)."""
  from research import models
  config = importlib.import_module(MODEL_CONFIGS[name]).get_config()
  config.model = name
  config.conv_impl = "nn.Conv"
  return models.create_model(config, num_classes)


def layer_table(model, image_shape) -> list[dict]:
  """One row per layer with parameters: name, kernel/bias shapes, count, output shape."""
  import jax
  import jax.numpy as jnp
  x = jnp.zeros((1,) + tuple(image_shape), jnp.float32)
  variables = model.init(jax.random.PRNGKey(0), x)
  _, state = model.apply(variables, x, capture_intermediates=True)
  inter = state["intermediates"]
  rows = []
  for name, leaves in variables["params"].items():
    out = inter[name]["__call__"][0].shape[1:] if name in inter else None
    shapes = {k: tuple(v.shape) for k, v in leaves.items()}
    rows.append({"layer": name, "kind": name.split("_")[0],
                 "kernel_shape": "x".join(map(str, shapes.get("kernel", ()))),
                 "bias_shape": "x".join(map(str, shapes.get("bias", ()))),
                 "params": int(sum(np.prod(s) for s in shapes.values())),
                 "output_shape": "x".join(map(str, out)) if out is not None else ""})
  return rows


def cnn_cost(config, image_shape, num_classes: int = 10) -> tuple[int, int]:
  """(parameters, multiply-adds per example) of the CNN `config` builds for `image_shape` (H, W,
  C): VALID convs of stride 1, then pools, then the Dense layers (`config.model` 'cnn_gap': on the
  averaged last map)."""
  h, w, c = (int(d) for d in image_shape)
  params = macs = 0
  k = config.cnn_kernel
  for f in config.cnn_features:
    h, w = h - k + 1, w - k + 1
    params += k * k * c * f + f
    macs += h * w * k * k * c * f
    h, w, c = h // config.cnn_pool, w // config.cnn_pool, f
  fan_in = c if config.model == "cnn_gap" else h * w * c
  for f in (*config.cnn_dense, num_classes):
    params += fan_in * f + f
    macs += fan_in * f
    fan_in = f
  return params, macs


def matched_mlp_width(config, image_shape, match: str, num_classes: int = 10) -> int:
  """The hidden width of a one-hidden-layer MLP on `image_shape` whose parameters (`match`
  'params') or multiply-adds per example ('flops') are closest to the CNN `config` builds."""
  n_in = int(np.prod(image_shape))
  params, macs = cnn_cost(config, image_shape, num_classes)
  if match == "params":  # (n_in + 1) h + (h + 1) classes
    return max(1, round((params - num_classes) / (n_in + 1 + num_classes)))
  if match == "flops":  # n_in h + h classes
    return max(1, round(macs / (n_in + num_classes)))
  raise ValueError(f"match {match!r}: 'params' or 'flops'")

