"""Parameter counts: every layer of every model, the seed's Dense-vs-Conv table, and what the
exact equivalences (research/equivalence.py) cost in parameters. No training.

Writes results.csv (one row per layer), results.md and params.png into --output_dir.

  python scripts/study_params.py --output_dir runs/study_params [--image_shape 32,32,3]
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from absl import flags  # noqa: E402

from research import UserError, equivalence, models
from research.sweeps import report, cli as sweep  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("image_shape", "28,28,1", "H,W,C of the input (32,32,3 for CIFAR-10).")

MODEL_CONFIGS = {"mlp": "configs.mnist_mlp", "cnn": "configs.mnist_cnn", "lcn": "configs.mnist_cnn"}


def build(name: str, image_shape, num_classes=10):
  import importlib
  config = importlib.import_module(MODEL_CONFIGS[name]).get_config()
  config.model = name
  return models.create_model(config, num_classes)


def layer_table(model, image_shape) -> list[dict]:
  """One row per layer with parameters: name, kernel/bias shapes, count, input/output shape."""
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


def main(argv=None):
  """The study with absl flags (--output_dir, --results_md, --image_shape); from Python,
  main(["--output_dir=...", ...])."""
  return sweep.study_main(_study, argv)


def _study():
  if not FLAGS.output_dir:
    raise UserError("give --output_dir")
  output_dir = FLAGS.output_dir
  try:
    shape = tuple(int(s) for s in FLAGS.image_shape.split(","))
    h, w, c = shape
  except ValueError:
    raise UserError(f"--image_shape {FLAGS.image_shape}: expected H,W,C like 28,28,1") from None
  rows = []
  for name in MODEL_CONFIGS:
    model = build(name, shape)
    for r in layer_table(model, shape):
      rows.append({"model": name, **r})
  total = {m: sum(r["params"] for r in rows if r["model"] == m) for m in MODEL_CONFIGS}

  # The seed's table, computed: Dense(128) on the flat image vs Conv2D(32, 3x3) on the grid.
  import flax.linen as nn
  x = jnp.zeros((1, h, w, c))
  dense_p = nn.Dense(128).init(jax.random.PRNGKey(0), x.reshape(1, -1))["params"]
  conv_p = nn.Conv(32, (3, 3), padding="VALID").init(jax.random.PRNGKey(0), x)["params"]
  n_dense, n_conv = models.count_params(dense_p), models.count_params(conv_p)
  eq = equivalence.dense_equivalent_size(shape, (3, 3, c, 32))
  conv_as_dense = eq["dense_params"]
  dense_as_conv_kernel, _ = equivalence.dense_to_conv(dense_p["kernel"], dense_p["bias"], shape)
  n_dense_as_conv = int(dense_as_conv_kernel.size) + 128
  seed_rows = [
      ("Dense(128) on the flat vector", f"{h * w * c}", "128",
       f"{h * w * c} x 128 + 128 = {n_dense:,}"),
      ("Conv2D(32, 3x3, VALID)", f"{h}x{w}x{c}", f"{eq['output_shape'][0]}x"
       f"{eq['output_shape'][1]}x32", f"3 x 3 x {c} x 32 + 32 = {n_conv:,}"),
      ("that Conv2D as an exact Dense matrix (conv_to_dense)", f"{h * w * c}",
       f"{np.prod(eq['output_shape']):,}",
       f"{conv_as_dense:,} ({eq['dense_nonzero_weights']:,} nonzero weights)"),
      (f"Dense(128) as an exact Conv2D (dense_to_conv, kernel {h}x{w})", f"{h}x{w}x{c}", "1x1x128",
       f"{n_dense_as_conv:,}"),
  ]
  frame = report.to_frame([{"study": "params", **r} for r in rows])
  os.makedirs(output_dir, exist_ok=True)
  frame.to_csv(os.path.join(output_dir, "results.csv"), index=False)

  plt = report.setup_matplotlib()
  fig, ax = plt.subplots(figsize=(8, 0.35 * (len(rows) + 4) + 1))
  labels = [f"{r['model']}: {r['layer']} ({r['kernel_shape']})" for r in rows]
  values = [r["params"] for r in rows]
  labels += ["seed: Dense(128)", "seed: Conv2D(32, 3x3)", "Conv2D(32, 3x3) as Dense"]
  values += [n_dense, n_conv, conv_as_dense]
  colors = {"mlp": "tab:blue", "cnn": "tab:orange", "lcn": "tab:green"}
  ax.barh(range(len(values)), values, color=[colors.get(r["model"]) for r in rows] + ["gray"] * 3)
  ax.set_yticks(range(len(values)), labels, fontsize=8)
  ax.set_xscale("log")
  ax.invert_yaxis()
  ax.set_xlabel("parameters (log scale)")
  for i, v in enumerate(values):
    ax.text(v, i, f" {v:,}", va="center", fontsize=7)
  ax.set_title(f"Parameters per layer, input {h}x{w}x{c}")
  report.save_figure(fig, os.path.join(output_dir, "params.png"))

  lines = [f"Command: `{report.command_line()}`", "", f"Input {h}x{w}x{c}, 10 classes.", "",
           "| layer | input | output | parameters |", "|---|---|---|---|"]
  lines += [f"| {a} | {b} | {o} | {p} |" for a, b, o, p in seed_rows]
  lines += ["", f"Dense(128) / Conv2D(32, 3x3) = {n_dense / n_conv:.0f}x the parameters, but they "
            "are not the same map: the conv's exact Dense form needs "
            f"{conv_as_dense / n_conv:,.0f}x its parameters (weight sharing), and a Dense layer "
            "is a conv whose kernel covers the whole input.", "",
            "| model | layer | kernel | bias | parameters | output |", "|---|---|---|---|---|---|"]
  lines += [f"| {r['model']} | {r['layer']} | {r['kernel_shape']} | {r['bias_shape']} | "
            f"{r['params']:,} | {r['output_shape']} |" for r in rows]
  lines += ["", "| model | total parameters |", "|---|---|"]
  lines += [f"| {m} | {t:,} |" for m, t in total.items()]
  lines += ["", "![parameters](params.png)"]
  report.publish(output_dir, FLAGS.results_md, "params", lines)
  return rows, total


if __name__ == "__main__":
  sweep.run_script(_study)
