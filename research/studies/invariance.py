"""Translation as the field measures it: is a CNN's tolerance to shifted digits a property of
convolution, or of the head that pools it, and is an MLP's lack of it a matter of size?

MNIST centred on a 40x40 canvas, shifted at test time by 0-10 px without cropping the digit;
the seed MLP, MLPs matched to the seed CNN's parameters and multiply-adds, the seed CNN and the
CNN with a global-average-pooling head, each trained with and without random-shift augmentation
(configs/sweeps/invariance.py). Writes results.csv, results.md, summary.json, invariance.png and
invariance_curves.png into --output_dir.

  python -m research.studies invariance --output_dir docs/studies/invariance \
      --runs_dir runs/invariance
"""
import os

import numpy as np

from research import studies
from research.studies import translation
from research.sweeps import report

COMPARED_AT = (4, 8)  # px: the shifts whose per-seed drops are compared between models


def ink_kept(images: np.ndarray, canvas: int, shifts, directions: dict) -> dict[int, float]:
  """{shift: the share of the test digits' ink (pixel sum) still on the canvas}, the digits
  centred on a canvas x canvas frame, mean over `directions` ({name: (dy, dx)})."""
  from research import transforms
  placed = transforms.place_on_canvas(images, canvas, seed=0, centre=True).astype(np.float64)
  total = placed.sum()
  return {int(k): float(np.mean([transforms.shift_images(placed, dy * k, dx * k).sum() / total
                                 for dy, dx in directions.values()])) for k in shifts}


def per_seed_drops(frame, shift: int) -> dict:
  """{(model, condition): {seed: unshifted accuracy - accuracy at `shift` px (mean over the
  directions)}} from the study's rows."""
  trained = frame[frame["eval"].isna()]
  shifted = frame[frame["eval"].notna() & (frame["shift"] == shift)]
  base = trained.groupby(["model", "condition", "seed"])["test_accuracy"].mean()
  moved = shifted.groupby(["model", "condition", "seed"])["test_accuracy"].mean()
  out = {}
  for (model, cond, seed), acc in base.items():
    if (model, cond, seed) in moved.index:
      out.setdefault((model, cond), {})[seed] = acc - moved[model, cond, seed]
  return out


def comparisons(frame, pairs) -> list[dict]:
  """Welch intervals of the difference in per-seed drop between the models of each pair, at
  each shift of COMPARED_AT, per training condition."""
  out = []
  for shift in COMPARED_AT:
    drops = per_seed_drops(frame, shift)
    for cond in dict.fromkeys(frame["condition"]):
      for a, b in pairs:
        if (a, cond) in drops and (b, cond) in drops:
          d, low, high = report.diff_interval(list(drops[a, cond].values()),
                                              list(drops[b, cond].values()))
          out.append({"shift": shift, "condition": cond, "a": a, "b": b, "diff": d, "low": low,
                      "high": high, "verdict": report.verdict(low, high)})
  return out


def plot(curves, path):
  plt = report.setup_matplotlib()
  conditions = list(dict.fromkeys(curves["condition"]))
  fig, axes = plt.subplots(1, len(conditions), figsize=(5.5 * len(conditions), 4), squeeze=False)
  for ax, cond in zip(axes[0], conditions):
    for model, g in curves[curves["condition"] == cond].groupby("model", sort=False):
      ax.errorbar(g["shift"], 100 * g["mean"], yerr=100 * g["ci95"].fillna(0), capsize=2,
                  marker="o", ms=3, label=model)
    ax.set_xlabel("test shift (px, mean over directions)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(0, 100)
    ax.axhline(10, color="gray", lw=0.8, ls=":")
    ax.set_title(cond)
    ax.legend(fontsize=8)
  report.save_figure(fig, path)


def run(sweep: str | None = None, results_md: str = "", **arguments):
  """The study; `arguments` are engine.run_sweep's (output_dir, runs_dir, executor, seeds, ...).
  Returns (frame of every row, accuracy per model, training and shift)."""
  from research import data
  from configs.sweeps import invariance as spec_file
  result = studies.run_grid("invariance", sweep, **arguments)
  spec, rows, output_dir = result.spec, result.rows, result.output_dir
  frame = report.to_frame(rows)
  curves = translation.shift_curves(frame)
  budgets = studies.cell_budgets(rows)
  trained = frame[frame["eval"].isna()]
  params = trained.groupby("model", sort=False)["num_params"].first()
  shifts = sorted(set(curves["shift"]) - {0})
  kept = ink_kept(data.load_tfds("mnist").test_images, spec_file.CANVAS, shifts,
                  spec_file.DIRECTIONS)
  pairs = [("cnn_gap", "cnn")] + [(m, c) for m in ("mlp", "mlp_params", "mlp_flops")
                                  for c in ("cnn", "cnn_gap")]
  compared = comparisons(frame, pairs)
  plot(curves, os.path.join(output_dir, "invariance.png"))
  models = spec["models"]
  lines = [f"Command: `{report.command_line()}`", "",
           f"MNIST, each digit centred on a {spec_file.CANVAS}x{spec_file.CANVAS} canvas (train and "
           f"test); seeds {sorted(set(frame['seed']))}. Test accuracy (%) with every test image "
           "shifted by k px (zero fill), mean over the directions "
           f"({', '.join(spec_file.DIRECTIONS)}), then mean ± 95% t interval over seeds. "
           f"'augment' runs trained on random shifts in [-{spec_file.AUGMENT}, "
           f"{spec_file.AUGMENT}] px. Every model the same epochs; learning rates chosen on the "
           f"validation split (below). Trained on {studies.cpus(rows)}.", "",
           "| model | what | parameters |", "|---|---|---|"]
  what = {"mlp": "the seed MLP (one hidden layer of {w})",
          "mlp_params": "MLP, one hidden layer of {w}: the seed CNN's parameters",
          "mlp_flops": "MLP, one hidden layer of {w}: the seed CNN's multiply-adds per image",
          "cnn": "the seed CNN: 2 x (3x3 conv, relu, 2x2 max pool), flatten, Dense",
          "cnn_gap": "the seed CNN's convs, then the mean over positions (global average "
                     "pooling), Dense"}
  for m in params.index:
    width = models.get(m, {}).get("mlp_hidden", ("",))[0] if m in models else ""
    lines.append(f"| {m} | {what.get(m, m).format(w=width)} | {int(params[m]):,} |")
  lines += ["", "Share of the test digits' ink still on the canvas after the shift: " +
            ", ".join(f"{k} px {100 * v:.2f}%" for k, v in kept.items()) + ".", "",
            translation.curve_table(curves, budgets), "",
            "Loss of accuracy at a shift, per seed, compared (Welch 95% interval of "
            "drop(a) − drop(b), pp; < 0: a loses less):", "",
            "| shift | training | a | b | drop(a) − drop(b) | |", "|---|---|---|---|---|---|"]
  for c in compared:
    lines.append(f"| {c['shift']} px | {c['condition']} | {c['a']} | {c['b']} | "
                 f"{report.fmt_diff(c['diff'], c['low'], c['high'])} | {c['verdict']} |")
  lines += studies.rates_and_curves("invariance", spec, rows, output_dir)
  studies.write_summary(output_dir, {"shift_curves": curves.to_dict("records"),
                                     "comparisons": compared, "ink_kept": kept,
                                     "params": {m: int(p) for m, p in params.items()},
                                     "command": report.command_line()})
  report.publish(output_dir, results_md, "invariance", lines, rows)
  return frame, curves


def notes(results) -> list[tuple[float, list[str]]]:
  """Translation as the field measures it, when the study has run: each model's accuracy at a
  4 px and an 8 px shift without and with augmentation, and the GAP head against the seed CNN."""
  summary = results.optional_summary("invariance")
  if not summary:
    return []
  curves = {(c["model"], c["condition"], int(c["shift"])): c for c in summary["shift_curves"]}
  conditions = list(dict.fromkeys(c["condition"] for c in summary["shift_curves"]))
  lines = ["", "## Translation on a canvas that keeps the digit whole", "",
           "docs/studies/invariance: MNIST centred on a 40x40 canvas, every test image shifted "
           "by k px (mean over the sweep file's directions), equal epochs (its table gives the "
           "budget and whether each cell plateaued), rates chosen on validation; test "
           "accuracy, mean ± 95% interval over seeds (uncorrected):", ""]
  for cond in conditions:
    cells = []
    for model, p in summary["params"].items():
      if all((model, cond, s) in curves for s in (0, *COMPARED_AT)):
        shown = ", ".join(
            f"{s} px " + report.fmt_interval(curves[model, cond, s]["mean"],
                                             curves[model, cond, s]["ci95"], digits=1)
            for s in (0, *COMPARED_AT))
        cells.append(f"{model} ({p:,} parameters): {shown}")
    lines.append(f"- {cond}: " + "; ".join(cells) + ".")
  for c in summary["comparisons"]:
    if c["a"] == "cnn_gap" and c["b"] == "cnn":
      lines.append(f"- {c['condition']}, {c['shift']} px: drop(GAP head) − drop(seed CNN) "
                   f"{report.fmt_diff(c['diff'], c['low'], c['high'])} pp ({c['verdict']}).")
  return [(5.5, lines)]
