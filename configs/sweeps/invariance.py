"""Translation as the field measures it: where does a CNN's tolerance to shifts come from?

MNIST centred on a 40x40 canvas (a 6 px margin round the 28x28 frame, whose own outer 4 px are
nearly always blank), so a test shift of up to 10 px moves the digit without cropping it (the
study reports the ink a shift crops). Models: the seed MLP, MLPs with one hidden layer matched
to the seed CNN's parameters and to its multiply-adds, the seed CNN (flatten, then Dense) and the
same CNN with a global-average-pooling head; each trained on the centred digits and with
random-shift augmentation, then scored with every test image shifted by 0 to 10 px. Budgets,
optimizer, validation split and rate search as configs/sweeps/harder.py, candidates 3e-3 and 1e-2
(the rates the translation study chose), extended by one when the best is at an end.

  python -m research.studies invariance --output_dir docs/studies/invariance \
      --runs_dir runs/invariance
  --sweep=configs/sweeps/invariance.py:ARG, ARG one of
  quick      a short version for tests
  no_flops   without the multiply-add-matched MLP (the costliest MLP)
"""
from configs import mnist_cnn
from configs.sweeps import harder
from research.studies import _layers

CANVAS = 40
SHAPE = (CANVAS, CANVAS, 1)
SHIFTS = (1, 2, 3, 4, 6, 8, 10)
DIRECTIONS = {"right": (0, 1), "down": (1, 0)}
AUGMENT = 4  # px: training shifts in [-4, 4]^2


def models() -> dict:
  """The model keys of the grid -> their config fields (the matched widths for the canvas)."""
  cnn = mnist_cnn.get_config()
  width = {m: _layers.matched_mlp_width(cnn, SHAPE, m) for m in ("params", "flops")}
  return {"mlp": {"model": "mlp", "mlp_hidden": (128,)},  # the seed MLP
          "mlp_params": {"model": "mlp", "mlp_hidden": (width["params"],)},
          "mlp_flops": {"model": "mlp", "mlp_hidden": (width["flops"],)},
          "cnn": {"model": "cnn"}, "cnn_gap": {"model": "cnn_gap"}}


def get_sweep(arg=None):
  if arg not in (None, "", "quick", "no_flops"):
    raise ValueError(f"unknown argument {arg!r}; choose quick or no_flops")
  quick = arg == "quick"
  base = harder.get_sweep("mnist_quick" if quick else "mnist")
  centred = {**base["conditions"]["MNIST"], "canvas_size": CANVAS, "canvas_position": "centre"}
  conditions = {"centred": centred, f"centred, augment ±{AUGMENT}px": {**centred,
                                                                       "augment_shift": AUGMENT}}
  keys = [k for k in models() if not (arg == "no_flops" and k == "mlp_flops")]
  if quick:
    keys = ["mlp", "mlp_params", "cnn_gap"]
  grid = [{"model": m, "condition": c} for m in keys for c in conditions]
  shifts, directions = ((4,), {"right": DIRECTIONS["right"]}) if quick else (SHIFTS, DIRECTIONS)
  evals = {f"shift {k}px {d}": {"from": list(conditions), "keep_condition": True,
                                "models": keys, "test": {"test_shift": (dy * k, dx * k)},
                                "fields": {"shift": k, "direction": d}}
           for k in shifts for d, (dy, dx) in directions.items()}
  steps = {"mlp": {"num_train_steps": 300}, "mlp_params": {"num_train_steps": 300},
           "cnn_gap": {"num_train_steps": 100}}
  spec_models = {k: {**v, **(steps.get(k, {}) if quick else {})} for k, v in models().items()}
  lr_search = ({"learning_rates": [1e-3], "seed": 0, "extend": 0} if quick else
               {"learning_rates": [3e-3, 1e-2], "seed": 0, "extend": 1})
  return {**base, "models": spec_models, "conditions": conditions, "grid": grid,
          "evals": evals, "lr_search": lr_search,
          **({"seeds": [0, 1], "model_seeds": {}} if quick else {"model_seeds": {}})}
