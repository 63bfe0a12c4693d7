"""Cluttered MNIST 60x60 at growing budgets: does the CNN's lead over Dense hold once every model
has trained to a plateau, and against MLPs of the CNN's size?

Each MNIST digit placed at random on a 60x60 canvas with 4 clutter crops of 8x8 px from other
digits, train and test; the placement and the clutter drawn again for every seed (seeded_draws:
transform_seed is the run's seed). Models: the seed MLP; an MLP with one hidden layer matched to
the seed CNN's parameters on this canvas; the seed CNN; a CNN and a locally connected net (the
CNN's layout without weight sharing) of half the seed CNN's widths, Conv 16 -> 32 (the seed
widths make an LCN of 14.7M weights); an MLP matched to the half-width CNN's multiply-adds,
which has about the half-width LCN's parameters (one matched to the seed CNN's would be 4,020
wide, 14.5M weights: ~1 step/s here, too slow for this CPU's budget). Every model of a budget trains the
same epochs: 3, 9 and 27; batch 128, Adam with cosine decay, a 5,000-image validation split on
which the rate is chosen per model and budget (candidates 1e-3 and 3e-3, the rates the harder
study chose here, extended by one beyond an end); 5 seeds.

  python -m research.studies cluttered --output_dir docs/studies/cluttered \
      --runs_dir runs/cluttered
  --sweep=configs/sweeps/cluttered.py:ARG, ARG a comma list of budgets (3, 9, 27; default all)
  and of models (default all), e.g. 9,cnn,mlp; runs are shared, so the study runs in parts;
  parts joined by + make one page of the union of their grids, e.g. 3+9,cnn,mlp (every model
  at 3 epochs, the CNN and the MLP at 9)
  quick      a few steps of the MLPs on a 1,280-image subset, two seeds: the tests
"""
from configs import mnist_cnn
from research.studies import _layers

CANVAS = 60
SHAPE = (CANVAS, CANVAS, 1)
EPOCHS = (3, 9, 27)
NARROW = (16, 32)
CLUTTER = {"dataset": "mnist", "canvas_size": CANVAS, "clutter_pieces": 4, "clutter_size": 8}


def models() -> dict:
  """The model keys of the grid -> their config fields (the matched widths for the canvas)."""
  cnn, narrow = mnist_cnn.get_config(), mnist_cnn.get_config()
  narrow.cnn_features = NARROW
  params = _layers.matched_mlp_width(cnn, SHAPE, "params")
  flops = _layers.matched_mlp_width(narrow, SHAPE, "flops")
  return {"mlp": {"model": "mlp", "mlp_hidden": (128,)},  # the seed MLP
          "mlp_params": {"model": "mlp", "mlp_hidden": (params,)},
          "mlp_flops_narrow": {"model": "mlp", "mlp_hidden": (flops,)},
          "cnn": {"model": "cnn"},
          "cnn_narrow": {"model": "cnn", "cnn_features": NARROW},
          "lcn_narrow": {"model": "lcn", "cnn_features": NARROW}}


def condition_name(epochs: int) -> str:
  return f"cluttered 60x60, {epochs} epochs"


def get_sweep(arg=None):
  if arg and "+" in arg:
    if "quick" in arg:
      raise ValueError("quick is a sweep of its own; it joins no other part")
    parts = [get_sweep(part) for part in arg.split("+")]
    spec = parts[0]
    for part in parts[1:]:
      spec["conditions"].update(part["conditions"])
      spec["grid"] += [cell for cell in part["grid"] if cell not in spec["grid"]]
    return spec
  keys = [k for k in (arg or "").split(",") if k]
  quick = keys == ["quick"]
  known = models()
  budgets = [int(k) for k in keys if k.isdigit()]
  names = [k for k in keys if not k.isdigit() and k != "quick"]
  unknown = [k for k in names if k not in known] + [b for b in budgets if b not in EPOCHS]
  if unknown:
    raise ValueError(f"unknown keys {unknown}; choose budgets from {list(EPOCHS)} and models "
                     f"from {list(known)}, or quick")
  budgets = [3] if quick else budgets or list(EPOCHS)
  names = ["mlp", "mlp_params"] if quick else names or list(known)
  conditions = {condition_name(e): {**CLUTTER, **({} if quick else {
      "num_epochs": e, "eval_every_epochs": max(1, e // 9)})} for e in budgets}
  common = {"parallelism": "single", "optimizer": "adam", "lr_schedule": "cosine",
            "batch_size": 128, "validation_size": 5000, "eval_train": False,
            "log_every_steps": 430, "checkpoint_every_steps": 2000, "permutation_seed": 0}
  if quick:
    common.update(train_subset=1280, validation_size=256, num_train_steps=30,
                  eval_every_epochs=0, log_every_steps=10)
  return {
      "base": "configs.mnist_cnn",
      "common": common,
      "models": known,
      "conditions": conditions,
      "grid": [{"model": m, "condition": c} for c in conditions for m in names],
      "seeds": [0, 1] if quick else [0, 1, 2, 3, 4],
      "seeded_draws": ["transform_seed"],
      "lr_search": {"learning_rates": [1e-3] if quick else [1e-3, 3e-3], "seed": 0,
                    "extend": 0 if quick else 1},
      "resources": {"num_cpus": 1},
  }
