"""eFCN (d'Ascoli et al. 2019): does a dense network that starts exactly on a CNN's solution
keep it, lose it, or improve on it, and how far do its weights leave the conv pattern?

Stage 1 trains the CNN (a checkpoint every epoch) and a dense network of the eFCN's shape from
random initialisation; stage 2 maps the CNN at each switch point t to its eFCN
(research/equivalence.cnn_to_fcn, through `init_from`) and trains it on as dense
(configs/sweeps/efcn.py). Every run goes through research/train.py, so it checkpoints and
resumes like any run. Writes results.csv, curves.csv, results.md, summary.json,
efcn_accuracy.png and efcn_subspaces.png into --output_dir.

  python -m research.studies efcn --runs_dir=runs/efcn --output_dir=docs/studies/efcn \
      --executor=inline --results_md=docs/results.md
"""
import json
import os
import resource

import numpy as np

from research import studies
from research.sweeps import grid, report

LAYERS = ("ConvDense_0", "ConvDense_1")


def relax_runs(spec: dict, runs: list, runs_dir: str) -> list:
  """Stage 2: for every run of model `relax.from` and switch point t, a run of the same config
  with `relax.overrides`, started from that run's checkpoint at step t * steps_per_epoch; with
  `relax.rate_from`, at the learning rate of that model's runs on the same condition (the
  eFCN is the dense network: the rate chosen for it)."""
  relax = spec["relax"]
  rates = {r.condition: dict(r.overrides)["learning_rate"] for r in runs
           if r.model == relax.get("rate_from")}
  out = []
  for run in (r for r in runs if r.model == relax["from"]):
    for t in relax["epochs"]:
      overrides = {**dict(run.overrides), **relax["overrides"],
                   **({"learning_rate": rates[run.condition]} if run.condition in rates else {}),
                   "init_from": os.path.join(runs_dir, run.name),
                   "init_from_step": int(t * relax["steps_per_epoch"])}
      out.append(grid.Run(f"efcn-t{t}", run.condition, run.seed, run.base,
                          tuple(sorted(overrides.items()))))
  return out


def switch_of(model: str):
  return int(model.split("-t")[1]) if model.startswith("efcn-t") else None


def curves(rows: list[dict], steps_per_epoch: int):
  """One row per (run, evaluation): test accuracy and, for dense runs, the subspace fractions,
  on the absolute epoch axis (an eFCN switched at t starts at epoch t)."""
  import pandas as pd
  out = []
  for r in rows:
    start = switch_of(r["model"]) or 0
    weights = {m["step"]: m for m in report.read_metrics(r["workdir"], "weights")}
    tests = {m["step"]: m for m in report.read_metrics(r["workdir"], "test")}
    for step in sorted(set(weights) | set(tests)):
      point = {"dataset": r["condition"], "model": r["model"], "switch": start, "seed": r["seed"],
               "epoch": start + step / steps_per_epoch,
               "test_accuracy": tests.get(step, {}).get("accuracy", np.nan)}
      for key, value in weights.get(step, {}).items():
        if key.startswith("outside_"):
          point[key] = value
      out.append(point)
  return pd.DataFrame(out)


def summarise(frame, by, columns):
  """mean and 95% half-width over seeds of `columns`, per `by` group (first-seen order)."""
  import pandas as pd
  out = []
  for key, g in frame.groupby(by, sort=False):
    row = dict(zip(by, key if isinstance(key, tuple) else (key,)))
    for c in columns:
      vals = g[c].dropna()
      row[c], row[f"{c}_ci95"] = report.t_interval(vals) if len(vals) else (np.nan, np.nan)
    row["n"] = len(g)
    out.append(row)
  return pd.DataFrame(out)


def pct_ci(mean, half) -> str:
  return f"{100 * mean:.2f} ± {100 * half:.2f}" if half == half else f"{100 * mean:.2f}"


def accuracy_table(curve_frame, relax: dict) -> tuple[list[str], list]:
  """Per dataset and switch point t: the CNN at t, the CNN trained on to t + R, the eFCN from t
  at t + R, their paired difference (same seed, same start: a t interval of the per-seed
  differences), and the difference to the dense net from random init at the eFCN's whole
  budget, t + R epochs (Welch interval)."""
  train_on = relax["overrides"]["num_epochs"]
  lines = ["| dataset | switch t (epoch) | CNN at t | CNN at t+R | eFCN at t+R | eFCN − CNN (pp) "
           "| dense, random init, t+R epochs | eFCN − dense (pp) | n |", "|" + "---|" * 9]
  diffs = []
  for dataset, d in curve_frame.groupby("dataset", sort=False):
    cnn = d[d["model"] == "cnn"].set_index(["seed", "epoch"])["test_accuracy"]
    for t in relax["epochs"]:  # the dense net at the eFCN's whole budget, t + R epochs
      dense = d[(d["model"] == "fcn") & (d["epoch"] == t + train_on)]["test_accuracy"].to_numpy()
      e = d[(d["model"] == f"efcn-t{t}") & (d["epoch"] == t + train_on)].set_index("seed")
      seeds = sorted(e.index)
      at_t = [cnn.get((s, float(t)), np.nan) for s in seeds]
      on = np.array([cnn.get((s, float(t + train_on)), np.nan) for s in seeds])
      efcn = e.loc[seeds, "test_accuracy"].to_numpy()
      paired = report.t_interval(100 * (efcn - on))
      low, high = paired[0] - paired[1], paired[0] + paired[1]
      vs_dense = report.diff_interval(100 * efcn, 100 * dense)
      diffs.append({"dataset": dataset, "t": t, "efcn_minus_cnn": paired,
                    "efcn_minus_cnn_verdict": report.verdict(low, high),
                    "efcn_minus_dense": vs_dense,
                    "efcn_minus_dense_verdict": report.verdict(*vs_dense[1:])})
      start = "random init" if t == 0 else pct_ci(*report.t_interval(at_t))
      lines.append(
          f"| {dataset} | {t} | {start} | {pct_ci(*report.t_interval(on))} | "
          f"{pct_ci(*report.t_interval(efcn))} | {paired[0]:+.2f} ± {paired[1]:.2f} "
          f"({report.verdict(low, high)}) | {pct_ci(*report.t_interval(dense))} | "
          f"{vs_dense[0]:+.2f} [{vs_dense[1]:+.2f}, {vs_dense[2]:+.2f}] "
          f"({report.verdict(*vs_dense[1:])}) | {len(seeds)} |")
  return lines, diffs


def subspace_table(curve_frame, relax: dict) -> list[str]:
  """The fraction of each conv-derived layer's weight norm outside the locally connected and
  the convolutional pattern at the end of each dense run (mean ± 95% half-width, %)."""
  train_on = relax["overrides"]["num_epochs"]
  dense = curve_frame[curve_frame["model"] != "cnn"]
  end = dense[np.isclose(dense["epoch"] - dense["switch"], train_on)]
  cols = [f"outside_{p}/{layer}" for layer in LAYERS for p in ("local", "conv")]
  agg = summarise(end, ["dataset", "model"], cols)
  head = ["dataset", "run"] + [f"{layer} outside {p}"
                               for layer in LAYERS for p in ("local", "conv")]
  lines = ["| " + " | ".join(head) + " | n |", "|" + "---|" * (len(head) + 1)]
  for _, r in agg.iterrows():
    name = "dense, random init" if r["model"] == "fcn" else f"eFCN from t={switch_of(r['model'])}"
    cells = [pct_ci(r[c], r[f"{c}_ci95"]) for c in cols]
    lines.append(f"| {r['dataset']} | {name} | " + " | ".join(cells) + f" | {int(r['n'])} |")
  return lines


def state_bytes(run) -> dict:
  """Parameters and optimizer state of `run`'s model on 28x28x1 (shapes only: nothing is
  allocated), for its own widths and for the seed CNN's (32, 64)."""
  import jax
  import jax.numpy as jnp
  from research import experiment, models
  out = {}
  for label, widths in (("study", None), ("seed", (32, 64))):
    config = run.config({"model": "fcn", **({"cnn_features": widths} if widths else {})})
    model = models.create_model(config, 10)
    params = jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros((1, 28, 28, 1)))
    opt = jax.eval_shape(experiment.create_optimizer(config, 1).init, params["params"])
    size = lambda tree: sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(tree))
    out[label] = {"widths": tuple(config.cnn_features), "params": models.count_params(params),
                  "param_bytes": size(params), "adam_bytes": size(opt)}
  return out


def rates_text(frame, searched: bool) -> str:
  """How the runs' rates were set: 'Adam at a fixed 0.001 (constant, not searched)', or the
  rates chosen on the validation split per dataset and the rate the eFCN runs trained on at."""
  stage1 = frame[frame["model"].isin(["cnn", "fcn"])]
  if not searched:
    return (f"Adam at a fixed {', '.join(f'{v:g}' for v in sorted(set(stage1['learning_rate'])))}"
            " (constant, not searched)")
  chosen = stage1.groupby(["condition", "model"], sort=False)["learning_rate"].first()
  efcn = frame[frame["model"].str.startswith("efcn-t")].groupby("condition")["learning_rate"]
  efcn = {d: "/".join(f"{v:g}" for v in sorted(set(rates))) for d, rates in efcn}
  per = "; ".join(f"{d}: CNN {chosen[d, 'cnn']:g}, dense {chosen[d, 'fcn']:g}"
                  + (f", eFCN trained on at {efcn[d]}" if d in efcn else "")
                  for d in dict.fromkeys(stage1["condition"]) if (d, "fcn") in chosen)
  return ("Adam at constant rates, the CNN's and the dense net's chosen on a validation split "
          f"({per})")


def verdict_line(diffs: list[dict], relax: dict, model: str, rates: str) -> str:
  """The study's answer in one line, from its intervals (the verdict prints it)."""
  parts = []
  for dataset in dict.fromkeys(d["dataset"] for d in diffs):
    ds = [d for d in diffs if d["dataset"] == dataset]
    vs_cnn = ", ".join(f"t={d['t']}: {d['efcn_minus_cnn'][0]:+.2f} ± {d['efcn_minus_cnn'][1]:.2f} "
                       f"({d['efcn_minus_cnn_verdict']})" for d in ds)
    vs_dense = ", ".join(f"t={d['t']}: {d['efcn_minus_dense'][0]:+.2f} "
                         f"({d['efcn_minus_dense_verdict']})" for d in ds)
    parts.append(f"{dataset}: eFCN − CNN trained on {vs_cnn}; eFCN − dense from random init "
                 f"trained t+R epochs {vs_dense}")
  return (f"A CNN ({model}) mapped to its exact dense network at switch point t (epochs) and "
          f"trained on for R = {relax['overrides']['num_epochs']} epochs, {rates}, test "
          "accuracy difference in pp (95% interval; "
          "> 0 / < 0 where it excludes 0, n.s. where not): " + "; ".join(parts) + ".")


def peak_memory(rows, output_dir: str, executor: str) -> int:
  """Peak resident bytes of the processes that trained this study's runs inline: this one's when
  it trained any, kept in OUTPUT_DIR/peak_rss.json across invocations (a resumed study keeps
  the largest); 0 when unknown (runs trained by Ray workers)."""
  path = os.path.join(output_dir, "peak_rss.json")
  peak = json.load(open(path))["peak_rss_bytes"] if os.path.exists(path) else 0
  if executor == "inline" and any(r.get("status") in ("trained", "resumed") for r in rows):
    peak = max(peak, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    with open(path, "w") as f:
      json.dump({"peak_rss_bytes": peak}, f)
  return peak


def plot_accuracy(curve_frame, relax, path):
  plt = report.setup_matplotlib()
  datasets = list(dict.fromkeys(curve_frame["dataset"]))
  fig, axes = plt.subplots(1, len(datasets), figsize=(6 * len(datasets), 4.2), squeeze=False)
  colors = plt.get_cmap("viridis")(np.linspace(0, 0.85, len(relax["epochs"])))
  for ax, dataset in zip(axes[0], datasets):
    d = curve_frame[(curve_frame["dataset"] == dataset) & curve_frame["test_accuracy"].notna()]
    series = [("cnn", "CNN", "black", "-"), ("fcn", "dense, random init", "tab:red", ":")]
    series += [(f"efcn-t{t}", f"eFCN from t={t}", c, "-") for t, c in zip(relax["epochs"], colors)]
    for model, label, color, ls in series:
      agg = summarise(d[d["model"] == model], ["epoch"], ["test_accuracy"])
      if agg.empty:
        continue
      mean, half = 100 * agg["test_accuracy"], 100 * agg["test_accuracy_ci95"].fillna(0)
      ax.plot(agg["epoch"], mean, ls=ls, marker="o", ms=3, color=color, label=label,
              lw=2.5 if model == "cnn" else 1.5, alpha=0.6 if model == "cnn" else 1)
      ax.fill_between(agg["epoch"], mean - half, mean + half, color=color, alpha=0.15)
    ax.set_title(f"{dataset}: test accuracy (mean, 95% interval over seeds)")
    ax.set_xlabel("epoch (from the CNN's start; an eFCN starts at its switch point t)")
    ax.set_ylabel("test accuracy (%)")
    low = np.nanpercentile(100 * d["test_accuracy"], 5)
    ax.set_ylim(max(low - 1, 0), None)
    ax.legend(fontsize=7)
  report.save_figure(fig, path)


def plot_subspaces(curve_frame, relax, path):
  plt = report.setup_matplotlib()
  datasets = list(dict.fromkeys(curve_frame["dataset"]))
  fig, axes = plt.subplots(len(datasets), len(LAYERS), figsize=(11, 3.8 * len(datasets)),
                           squeeze=False)
  colors = plt.get_cmap("viridis")(np.linspace(0, 0.85, len(relax["epochs"])))
  for row, dataset in enumerate(datasets):
    d = curve_frame[curve_frame["dataset"] == dataset]
    for col, layer in enumerate(LAYERS):
      ax = axes[row][col]
      series = [(f"efcn-t{t}", f"eFCN from t={t}", c) for t, c in zip(relax["epochs"], colors)]
      series += [("fcn", "dense, random init", "tab:red")]
      for model, label, color in series:
        cols = [f"outside_local/{layer}", f"outside_conv/{layer}"]
        agg = summarise(d[d["model"] == model].dropna(subset=cols), ["epoch"], cols)
        if agg.empty:
          continue
        ax.plot(agg["epoch"], 100 * agg[cols[0]], "-o", ms=3, color=color,
                label=f"{label}: outside local")
        ax.plot(agg["epoch"], 100 * agg[cols[1]], "--", color=color,
                label=f"{label}: outside conv")
      ax.set_title(f"{dataset}, {layer}: % of norm outside", fontsize=10)
      ax.set_xlabel("epoch")
      ax.set_ylabel("||W - P(W)|| / ||W|| (%)")
      ax.set_ylim(0, 100)
      if row == 0 and col == 0:
        ax.legend(fontsize=6)
  report.save_figure(fig, path)


def run(sweep: str | None = None, results_md: str = "", **arguments):
  """The study in its two stages; `arguments` are engine.run_sweep's (output_dir, runs_dir,
  executor, seeds, ...). Returns (frame of every run, curves, the differences)."""
  from research.sweeps import engine
  result = studies.run_grid("efcn", sweep, **arguments)
  spec, runs, rows, output_dir = result.spec, result.runs, result.rows, result.output_dir
  stage2 = relax_runs(spec, runs, result.runs_dir)
  rows += result.runner.run("efcn", spec, stage2)
  engine.stop_on_failures(rows, output_dir, "efcn")
  relax = spec["relax"]
  curve_frame = curves(rows, relax["steps_per_epoch"])
  curve_frame.to_csv(os.path.join(output_dir, "curves.csv"), index=False)
  plot_accuracy(curve_frame, relax, os.path.join(output_dir, "efcn_accuracy.png"))
  plot_subspaces(curve_frame, relax, os.path.join(output_dir, "efcn_subspaces.png"))
  table, diffs = accuracy_table(curve_frame, relax)
  frame = report.to_frame(rows)
  memory = state_bytes(runs[0])
  study, seed = memory["study"], memory["seed"]
  gib = 2 ** 30
  peak = peak_memory(rows, output_dir, result.runner.executor)
  cnn = frame[frame["model"] == "cnn"].iloc[0]
  train_on = relax["overrides"]["num_epochs"]
  seconds = frame.groupby("model", sort=False)["train_seconds"].mean()
  rates = rates_text(frame, bool(spec.get("lr_search")))
  lines = [
      f"Command: `{report.command_line()}`", "",
      f"Datasets {', '.join(dict.fromkeys(frame['condition']))}; seeds "
      f"{sorted(set(frame['seed']))}. CNN Conv {study['widths'][0]} 3x3 → pool 2 → Conv "
      f"{study['widths'][1]} 3x3 → pool 2 → Dense 10 ({int(cnn['num_params']):,} params), the "
      f"seed CNN's shape family narrowed from (32, 64) so the study fits a shared 2-core CPU; "
      f"its eFCN has {study['params']:,} params (the seed CNN's would have {seed['params']:,}). "
      f"{rates}, batch {runs[0].config().batch_size}; the CNN trained "
      f"{relax['epochs'][-1] + train_on} epochs. At each switch point t (epochs; t=0 is the "
      f"CNN's random init) the CNN is mapped to its eFCN, which trains on as dense for R = "
      f"{train_on} epochs (Adam state fresh); it is compared with the same CNN run trained on "
      f"from t to t+R (same seed: the difference is paired) and with a dense network of the "
      f"eFCN's shape trained from random (LeCun normal) init for the eFCN's whole budget, t+R "
      f"epochs (its evaluation at epoch t+R of one run of {relax['epochs'][-1] + train_on} "
      f"epochs: at a constant rate, with the data order fixed by seed and epoch, that is the "
      f"state a run of t+R epochs ends in). Accuracies in %, mean ± half-width of the "
      f"Student-t 95% interval over seeds.", "",
      *table, "",
      "Share of each conv-derived layer's weight norm outside the locally connected pattern "
      "(zeros outside each output's receptive field) and outside the convolutional pattern "
      "(locality and weights tied across positions), ||W − P(W)|| / ||W|| in %, at the end of "
      "each dense run (0 at the switch: the eFCN starts in the conv subspace).", "",
      *subspace_table(curve_frame, relax), "",
      "Each trained cell's budget and under-trained mark (test accuracy still rising by more "
      "than its 95% half-width over the last 20% of its training):", "",
      *studies.budget_table(studies.cell_budgets(rows)), "",
      *(["Learning rates (final validation accuracy %, seed 0; bold: chosen):", "",
         *report.lr_search_table(spec["lr_search_rows"]), ""]
        if spec.get("lr_search_rows") else []),
      f"Memory: the eFCN's params take {study['param_bytes'] / 2**20:.1f} MiB and Adam's state "
      f"{study['adam_bytes'] / 2**20:.1f} MiB (float32; the seed CNN's eFCN would take "
      f"{seed['param_bytes'] / gib:.2f} GiB + {seed['adam_bytes'] / gib:.2f} GiB)" +
      (f"; peak resident memory of the study's process, which trained the runs (inline): "
       f"{peak / gib:.2f} GiB" if peak else "") + ". Mean training seconds per run: " +
      ", ".join(f"{m} {s:.0f} s" for m, s in seconds.items()) +
      f" (on {studies.cpus(rows)}, shared with other jobs: not a benchmark).", "",
      "![test accuracy against epoch](efcn_accuracy.png)", "",
      "![weight norm outside each subspace](efcn_subspaces.png)"]
  model = (f"Conv {study['widths'][0]} → Conv {study['widths'][1]}, "
           f"{int(cnn['num_params']):,} params; eFCN {study['params']:,}")
  line = verdict_line(diffs, relax, model, rates)
  studies.write_summary(output_dir, {"diffs": diffs, "verdict_line": line,
                                     "memory": memory, "command": report.command_line()})
  report.publish(output_dir, results_md, "efcn", lines, rows)
  return frame, curve_frame, diffs


def notes(results) -> list[tuple[float, list[str]]]:
  """The study's one-line answer, when it has run."""
  summary = results.optional_summary("efcn")
  line = summary.get("verdict_line") if summary else None
  return [(30, ["", "## Same function, different learning (eFCN)", "", line])] if line else []
