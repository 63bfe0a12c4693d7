"""How Dense and Conv2D see an image (the seed's Example 1, in Flax): a flat vector vs feature maps.

Prints and writes the shapes through a Dense layer and a Conv layer and through every layer of
the MLP and CNN, and a figure: an MNIST digit, the flat 784-vector a Dense layer receives, the
same digit with its pixels shuffled (what the shuffled study trains on), and feature maps of the
first conv layer (of a trained CNN workdir given by --cnn_workdir, else a freshly initialized one).
No training.

  python -m research.studies input_handling --output_dir docs/studies/input_handling
"""
import os

import numpy as np

from research import UserError, transforms
from research.studies import _layers
from research.sweeps import report

OPTIONS = {"cnn_workdir": ("", "A trained CNN run for the feature maps."),
           "index": (0, "Which test digit.")}


def digit(index: int):
  """A real MNIST test digit (uint8 28x28x1) and its label; a synthetic '1' without MNIST."""
  try:
    from research import data
    ds = data.load_tfds("mnist")
    return ds.test_images[index], int(ds.test_labels[index]), "MNIST test image"
  except Exception as e:  # offline without MNIST: still show the shapes
    img = np.zeros((28, 28, 1), np.uint8)
    img[4:24, 13:16] = 255
    return img, 1, f"synthetic stroke (MNIST unavailable: {type(e).__name__})"


def run(output_dir: str = "", results_md: str = "", cnn_workdir: str = "", index: int = 0):
  """The study: test digit `index`, feature maps of the trained CNN in `cnn_workdir` (else of a
  freshly initialized conv). Returns the shape rows (tensor, the seed's shape, measured)."""
  import flax.linen as nn
  import jax
  import jax.numpy as jnp
  if not output_dir:
    raise UserError("give --output_dir")
  os.makedirs(output_dir, exist_ok=True)
  img, label, source = digit(index)
  x = jnp.asarray(img, jnp.float32)[None] / 255.0

  flat = x.reshape(1, -1)
  dense = nn.Dense(64)
  dense_out = dense.apply(dense.init(jax.random.PRNGKey(0), flat), flat)
  conv = nn.Conv(32, (3, 3), padding="VALID")
  conv_out = conv.apply(conv.init(jax.random.PRNGKey(0), x), x)
  shapes = [("image", "(28, 28, 1)", str(tuple(img.shape))),
            ("Dense(64) input: flattened image", "(784,)", str(tuple(flat.shape[1:]))),
            ("Dense(64) output", "(64,)", str(tuple(dense_out.shape[1:]))),
            ("Conv2D(32, 3x3) input: the grid as is", "(28, 28, 1)", str(tuple(x.shape[1:]))),
            ("Conv2D(32, 3x3) output: 32 feature maps", "(26, 26, 32)",
             str(tuple(conv_out.shape[1:])))]

  layer_rows = []
  for name in ("mlp", "cnn"):
    layer_rows += [{"model": name, **r}
                   for r in _layers.layer_table(_layers.build(name), (28, 28, 1))]

  maps_source = "freshly initialized Conv(32, 3x3)"
  maps = np.asarray(nn.relu(conv_out))[0]
  if cnn_workdir:
    from research import experiment
    model, params, _ = experiment.load_model(cnn_workdir)
    _, state = model.apply({"params": params}, x, capture_intermediates=True)
    maps = np.asarray(nn.relu(state["intermediates"]["Conv_0"]["__call__"][0]))[0]
    maps_source = f"first conv layer of the trained CNN in {os.path.basename(cnn_workdir)}"

  plt = report.setup_matplotlib()
  fig = plt.figure(figsize=(12, 5.5))
  grid = fig.add_gridspec(3, 8)
  ax = fig.add_subplot(grid[0:2, 0:2])
  ax.imshow(img[..., 0], cmap="gray")
  ax.set_title(f"{source}\nlabel {label}, 28x28x1", fontsize=8)
  ax.axis("off")
  ax = fig.add_subplot(grid[0:2, 2:4])
  shuffled = transforms.permute_pixels(img[None], transforms.pixel_permutation((28, 28), 0))[0]
  ax.imshow(shuffled[..., 0], cmap="gray")
  ax.set_title("same pixels, one fixed shuffle\n(a Dense layer cannot tell)", fontsize=8)
  ax.axis("off")
  for i in range(8):
    ax = fig.add_subplot(grid[i // 4, 4 + i % 4])
    ax.imshow(maps[..., i], cmap="viridis")
    ax.set_title(f"map {i}: 26x26", fontsize=7)
    ax.axis("off")
  ax = fig.add_subplot(grid[2, :])
  ax.imshow(np.asarray(flat).reshape(1, -1), aspect="auto", cmap="gray")
  ax.set_yticks([])
  ax.set_title("what Dense receives: one flat vector of 784 values (no notion of neighbours)",
               fontsize=8)
  fig.suptitle(f"Input handling. Feature maps: {maps_source}", fontsize=9)
  report.save_figure(fig, os.path.join(output_dir, "input_handling.png"))

  lines = [f"Command: `{report.command_line()}`", "",
           "| tensor | seed says | measured (Flax) |", "|---|---|---|"]
  lines += [f"| {a} | {b} | {c} |" for a, b, c in shapes]
  lines += ["", "Output shape of every layer with parameters:", "",
            "| model | layer | kernel | output |", "|---|---|---|---|"]
  lines += [f"| {r['model']} | {r['layer']} | {r['kernel_shape']} | {r['output_shape']} |"
            for r in layer_rows]
  lines += ["", "![input handling](input_handling.png)"]
  report.publish(output_dir, results_md, "input_handling", lines,
                [{"study": "input_handling", "tensor": a, "seed": b, "measured": c}
                 for a, b, c in shapes])
  return shapes
