"""Layer tables of the project's models, shared by the params and input_handling studies."""
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
