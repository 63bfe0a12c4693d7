"""The locality study's pictures: first-layer locality and weights left against epoch, and the
first-layer weights of a few hidden units as 28x28 images (research/studies/locality.py)."""
import json
import os

import numpy as np

from research import locality
from research.studies.locality import DATASETS, describe, label, usual_epochs
from research.sweeps import report


def plot_curves(frame, path: str, reference: float) -> None:
  plt = report.setup_matplotlib()
  datasets = list(dict.fromkeys(frame["dataset"]))
  fig, axes = plt.subplots(2, len(datasets), figsize=(4.2 * len(datasets), 6.4), squeeze=False)
  for j, ds in enumerate(datasets):
    sub = frame[frame["dataset"] == ds]
    for i, lab in enumerate(dict.fromkeys(sub["label"])):
      line = sub[sub["label"] == lab]
      for row, what in ((0, "locality"), (1, "weights_left")):
        stats = [(x,) + report.t_interval(g[what]) for x, g in line.groupby("epoch")]
        x = np.array([s[0] for s in stats])
        mean = np.array([s[1] for s in stats])
        half = np.nan_to_num(np.array([s[2] for s in stats]))
        ax = axes[row][j]
        ax.plot(x, mean, marker="o", ms=2.5, color=f"C{i}", label=lab.split(", ", 1)[-1]
                + (" (shuffled, un-permuted)" if "shuffled" in lab else ""))
        ax.fill_between(x, mean - half, mean + half, color=f"C{i}", alpha=0.2)
        if what == "locality":
          chance = line.groupby("epoch")["chance"].mean()
          ax.plot(chance.index, chance.values, ls=":", color=f"C{i}", lw=1)
    axes[0][j].axhline(reference, color="k", lw=0.8, ls="--", label="3x3 conv's dense form")
    axes[0][j].set_title(f"{DATASETS.get(ds, ds)}: first-layer locality (dotted: chance)",
                         fontsize=9)
    axes[0][j].set_ylabel(f"mass in the {locality.WINDOW}-window")
    axes[1][j].set_ylabel("fraction of weights left")
    axes[1][j].set_yscale("log")
    for row in (0, 1):
      axes[row][j].set_xlabel("epoch")
      axes[row][j].grid(alpha=0.3)
    axes[0][j].legend(fontsize=6)
  fig.suptitle("Dense first layer over training (mean, 95% CI over seeds)", fontsize=10)
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
