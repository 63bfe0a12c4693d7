"""The locality study's pictures: first-layer locality and weights left against epoch, and the
first-layer weights of a few hidden units as 28x28 images (research/studies/locality.py)."""
import json
import os

import numpy as np

from research import locality
from research.studies.locality import DATASETS, describe, label, usual_epochs
from research.sweeps import report


ROWS = (("test_accuracy", "test accuracy"), ("locality", "mass in the {w}-window"),
        ("weights_left", "fraction of weights left"))


def plot_curves(frame, path: str, reference: float) -> None:
  """Per (dataset, dense net) a column; rows: test accuracy, first-layer locality (dotted: its
  chance level; dashed: a 3x3 conv's dense form) and first-layer weights left, against epoch."""
  plt = report.setup_matplotlib()
  order = list(DATASETS)
  panels = sorted(dict.fromkeys(zip(frame["dataset"], frame["net"])), key=lambda p: (
      order.index(p[0]) if p[0] in order else len(order), p[1] != "fc", p[1]))
  fig, axes = plt.subplots(len(ROWS), len(panels), figsize=(3.6 * len(panels), 8.4),
                           squeeze=False)
  for j, (ds, net) in enumerate(panels):
    sub = frame[(frame["dataset"] == ds) & (frame["net"] == net)]
    for i, lab in enumerate(dict.fromkeys(sub["label"])):
      line = sub[sub["label"] == lab]
      name = lab.split(", ", 2 if net != "fc" else 1)[-1] + (
          " (shuffled, un-permuted)" if "shuffled" in lab else "")
      for row, (what, _) in enumerate(ROWS):
        points = line.dropna(subset=[what])
        stats = [(x,) + report.t_interval(g[what]) for x, g in points.groupby("epoch")]
        if not stats:
          continue
        x, mean, half = (np.array([s[k] for s in stats]) for k in range(3))
        ax = axes[row][j]
        ax.plot(x, mean, marker="o", ms=2.5, color=f"C{i % 10}", label=name,
                ls="-" if i < 10 else "--")
        ax.fill_between(x, mean - np.nan_to_num(half), mean + np.nan_to_num(half),
                        color=f"C{i % 10}", alpha=0.2)
        if what == "locality":
          chance = line.groupby("epoch")["chance"].mean()
          ax.plot(chance.index, chance.values, ls=":", color=f"C{i % 10}", lw=1)
    axes[1][j].axhline(reference, color="k", lw=0.8, ls="--")
    axes[0][j].set_title(f"{DATASETS.get(ds, ds)}, {'784-512-10' if net == 'fc' else net}",
                         fontsize=9)
    for row, (what, ylabel) in enumerate(ROWS):
      axes[row][j].set_ylabel(ylabel.format(w=locality.WINDOW), fontsize=8)
      axes[row][j].set_xlabel("epoch", fontsize=8)
      axes[row][j].grid(alpha=0.3)
    axes[2][j].set_yscale("log")
    axes[0][j].legend(fontsize=6)
  fig.suptitle("Dense nets over training (mean, 95% CI over seeds; row 2 dotted: chance, "
               "dashed: a 3x3 conv's dense form)", fontsize=10)
  report.save_figure(fig, path)


def plot_weights(rows: list[dict], path: str, units: int = 6) -> bool:
  """First-layer weights of a few hidden units as 28x28 images (seed 0 of each MNIST
  condition): SGD and β-LASSO, on original pixels and on shuffled pixels (as trained and
  un-permuted). The units shown are each run's largest in weight mass (not chosen by locality)."""
  from research import experiment, transforms
  picked = []
  for r in rows:
    with open(os.path.join(r["workdir"], "config.json")) as f:
      config = json.load(f)
    d = describe(config)
    if (d["model"] == "fc" and d["dataset"] == "mnist" and int(r["seed"]) == 0
        and d["epochs"] == usual_epochs("mnist")
        and d["lam"] in (None, 4e-4) and d["optimizer"] != "adam"):
      picked.append((d, r["workdir"], config))
  if not picked:
    return False
  panels = []
  for d, workdir, config in sorted(picked, key=lambda p: (p[0]["shuffled"], p[0]["optimizer"])):
    kernel = np.asarray(experiment.load_model(workdir)[1]["Dense_0"]["kernel"])
    if d["shuffled"]:
      perm = transforms.pixel_permutation((28, 28, 1), int(config["permutation_seed"]))
      panels.append((label(d) + ": as trained (shuffled grid)", kernel))
      panels.append((label(d) + ": un-permuted", locality.unpermute(kernel, (28, 28, 1), perm)))
    else:
      panels.append((label(d), kernel))
  plt = report.setup_matplotlib()
  fig, axes = plt.subplots(len(panels), units, figsize=(1.3 * units, 1.45 * len(panels)),
                           squeeze=False)
  for i, (title, kernel) in enumerate(panels):
    order = np.argsort(-np.abs(kernel).sum(axis=0))[:units]
    for j, u in enumerate(order):
      img = kernel[:, u].reshape(28, 28)
      v = np.abs(img).max() or 1.0
      axes[i][j].imshow(img, cmap="RdBu_r", vmin=-v, vmax=v)
      axes[i][j].set_xticks([])
      axes[i][j].set_yticks([])
    axes[i][0].set_title(title, fontsize=7, loc="left")
  fig.suptitle("First-layer weights of 6 hidden units (MNIST, seed 0; red +, blue −)", fontsize=9)
  report.save_figure(fig, path)
  return True
