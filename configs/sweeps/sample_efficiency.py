"""Sample efficiency: test accuracy against the number of training examples, at equal steps.

{seed MLP, MLP matched to the seed CNN's parameters, seed CNN, LCN} on MNIST and Fashion-MNIST
with 500, 2,000, 10,000 and all training examples (55,000 once the validation split is held
out); {MLP, 1-D CNN} of configs/mnist1d.py on MNIST-1D with 500, 1,000, 2,000 and all (3,500).
Subsets are class-balanced and nested (each holds every smaller one: train_subset_balanced),
drawn again for every seed (with the validation split: transform_seed is the run's seed);
every size trains the same steps (a small set for many epochs), its rate chosen per cell on the
validation split; test and validation scored every epoch, or about ten times a run where
the epochs are many.

  python -m research.studies sample_efficiency --output_dir docs/studies/sample_efficiency \
      --runs_dir runs/sample_efficiency
  --sweep=configs/sweeps/sample_efficiency.py:ARG, ARG a comma list of
  mnist, fashion, mnist1d   those datasets (default: all three); runs are shared, so a study can
                            run in parts and then once whole
  no_lcn                    without the LCN (its runs cost the most)
  no_lcn_fashion            without the LCN on that dataset only (no_lcn_mnist likewise)
  quick                     MNIST, two sizes, MLP and matched MLP, few steps: the tests
"""
from configs import mnist1d, mnist_cnn
from research.studies import _layers

STEPS = 2000  # every size: about 4.7 epochs of the full set at batch 128
BATCH = 128
VALIDATION = 5000
SIZES = (500, 2000, 10000, 0)  # 0: every training example
STEPS_1D, BATCH_1D, VALIDATION_1D = mnist1d.STEPS, 100, 500
SIZES_1D = (500, 1000, 2000, 0)
DATASETS = {"mnist": ("MNIST", "mnist", 60000), "fashion": ("Fashion-MNIST", "fashion_mnist", 60000),
            "mnist1d": ("MNIST-1D", "mnist1d", 4000)}


def _eval_every(size: int, full: int, batch: int, steps: int) -> int:
  """Epochs between evaluations: about ten in a run of `steps` steps on `size` examples."""
  per_epoch = max(1, (size or full) // batch)
  return max(1, round(steps / per_epoch / 10))


def models() -> dict:
  cnn = mnist_cnn.get_config()
  return {"mlp": {"model": "mlp", "mlp_hidden": (128,)},
          "mlp_params": {"model": "mlp",
                         "mlp_hidden": (_layers.matched_mlp_width(cnn, (28, 28, 1), "params"),)},
          "cnn": {"model": "cnn"}, "lcn": {"model": "lcn"},
          "mlp_1d": dict(mnist1d.MODELS["mlp"]), "cnn1d": dict(mnist1d.MODELS["cnn"])}


def condition_name(label: str, size: int) -> str:
  return f"{label} n={size:,}" if size else f"{label} n=all"


def get_sweep(arg=None):
  keys = [k for k in (arg or "").split(",") if k]
  known = {"quick", "no_lcn", *DATASETS, *(f"no_lcn_{k}" for k in DATASETS)}
  unknown = [k for k in keys if k not in known]
  if unknown:
    raise ValueError(f"unknown keys {unknown}; choose from {list(DATASETS)}, no_lcn, "
                     "no_lcn_DATASET, quick")
  quick = "quick" in keys
  without_lcn = set(DATASETS) if "no_lcn" in keys else {
      k[len("no_lcn_"):] for k in keys if k.startswith("no_lcn_")}
  keys = [k for k in keys if k in DATASETS] or (["mnist"] if quick else list(DATASETS))
  conditions, grid = {}, []
  for key in keys:
    label, dataset, full = DATASETS[key]
    one_d = key == "mnist1d"
    sizes = (500, 2000) if quick else SIZES_1D if one_d else SIZES
    steps = 60 if quick else STEPS_1D if one_d else STEPS
    batch = BATCH_1D if one_d else BATCH
    validation = VALIDATION_1D if one_d else VALIDATION
    names = (("mlp_1d", "cnn1d") if one_d else ("mlp", "mlp_params") if quick else
             ("mlp", "mlp_params", "cnn") + (() if key in without_lcn else ("lcn",)))
    for size in sizes:
      name = condition_name(label, size)
      conditions[name] = {
          "dataset": dataset, "validation_size": validation, "train_subset": size,
          "train_subset_balanced": True, "num_train_steps": steps, "batch_size": batch,
          "eval_every_epochs": _eval_every(size, full - validation, batch, steps),
          "log_every_steps": max(10, steps // 10), "checkpoint_every_steps": steps,
          **({"lr_schedule": "constant", "weight_decay": 0.0} if one_d else {})}
      grid += [{"model": m, "condition": name} for m in names]
  return {
      "base": "configs.mnist_cnn",
      "common": {"parallelism": "single", "optimizer": "adam", "lr_schedule": "cosine",
                 "eval_train": False, "permutation_seed": 0},
      "models": models(),
      "conditions": conditions,
      "grid": grid,
      "seeds": [0, 1] if quick else [0, 1, 2, 3, 4],
      "seeded_draws": ["transform_seed"],
      "lr_search": {"learning_rates": [1e-3] if quick else [3e-4, 1e-3, 3e-3, 1e-2],
                    "seed": 0, "extend": 0 if quick else 2},
      "resources": {"num_cpus": 1},
  }
