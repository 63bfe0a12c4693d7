"""Parameter counts: every layer of every model, the seed's Dense-vs-Conv table, and what the
exact equivalences (research/equivalence.py) cost in parameters. No training.

Writes results.csv (one row per layer), results.md and params.png into --output_dir.

  python -m research.studies params --output_dir docs/studies/params [--image_shape 32,32,3]
"""
import os

import numpy as np

from research import UserError
from research.studies import _layers
from research.studies.verdict import SEED_1, SEED_2, Claim
from research.sweeps import report

OPTIONS = {"image_shape": ("28,28,1", "H,W,C of the input (32,32,3 for CIFAR-10).")}


def parse_shape(image_shape) -> tuple[int, int, int]:
  """'28,28,1' or (28, 28, 1) -> (28, 28, 1)."""
  try:
    parts = image_shape.split(",") if isinstance(image_shape, str) else image_shape
    h, w, c = (int(s) for s in parts)
  except (ValueError, TypeError):
    raise UserError(f"--image_shape {image_shape}: expected H,W,C like 28,28,1") from None
  return h, w, c


def run(output_dir: str = "", results_md: str = "", image_shape="28,28,1"):
  """The study for inputs of `image_shape` (H,W,C). Returns (layer rows, total per model)."""
  import flax.linen as nn
  import jax
  import jax.numpy as jnp
  from research import equivalence, models
  if not output_dir:
    raise UserError("give --output_dir")
  shape = parse_shape(image_shape)
  h, w, c = shape
  rows = []
  for name in _layers.MODEL_CONFIGS:
    for r in _layers.layer_table(_layers.build(name), shape):
      rows.append({"model": name, **r})
  total = {m: sum(r["params"] for r in rows if r["model"] == m) for m in _layers.MODEL_CONFIGS}

  # The seed's table, computed: Dense(128) on the flat image vs Conv2D(32, 3x3) on the grid.
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
  report.publish(output_dir, results_md, "params", lines)
  return rows, total


def claims(results) -> list[Claim]:
  """The evidence of claims 6 (314x fewer parameters for comparable features) and 9 (the two
  layers are not interchangeable): the counts and the exact conversions. Their verdicts
  (computed from the counts, the conversion and claim 1's test): research/studies/_rules.py."""
  from research import equivalence
  params = results.csv("params")
  dense = params[(params["model"] == "mlp") & (params["layer"] == "Dense_0")]["params"].iloc[0]
  conv = params[(params["model"] == "cnn") & (params["layer"] == "Conv_0")]["params"].iloc[0]
  exact = equivalence.dense_equivalent_size((28, 28, 1), (3, 3, 1, 32))
  return [Claim(
      6, SEED_2, "The Conv2D layer achieves comparable feature extraction with 314x fewer "
      "parameters because it reuses the same 3x3 filter at every position.",
      evidence=[f"Dense(128) on 784 inputs: {dense:,} parameters; Conv2D(32, 3x3): {conv:,} "
       f"({dense / conv:.0f}x fewer).",
       f"The same conv as an exact dense layer: {exact['dense_params']:,} parameters "
       f"({exact['dense_nonzero_weights']:,} nonzero weights): the two layers compute "
       "different functions, so the ratio compares unlike things."]), Claim(
      9, SEED_1, "while both layers perform linear transformations, their distinct "
      "handling of spatial information makes them fundamentally different. They are "
      "not interchangeable",
      evidence=["As functions they are interchangeable: every conv is exactly a dense layer with "
       "a sparse, tied matrix and every dense layer is exactly a conv whose kernel "
       "covers the input (research/equivalence.py, exact to float32 rounding in "
       "tests/test_equivalence.py). What differs is what each learns from data at a "
       "given budget (claims above)."])]
