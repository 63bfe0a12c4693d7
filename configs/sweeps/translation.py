"""Translation: accuracy vs a fixed test shift (0 to 10 px) per model, trained with and without
random-shift augmentation, and translated MNIST on a 40x40 canvas (digit at a random position).

Every model trains the same epochs on each training set, its learning rate chosen on the
validation split, as in the harder-task study (configs/sweeps/harder.py), whose 'MNIST' runs are
this study's 'MNIST' runs (trained once with a shared --runs_dir).

  python -m research.studies translation --output_dir docs/studies/translation \
      --runs_dir runs/harder
  --sweep=configs/sweeps/translation.py:ARG, ARG one of
  quick    a short version for tests
  no_lcn   the MLP and the CNN only (the LCN's MNIST runs are its costliest part here)
"""
from configs.sweeps import shuffled

SHIFTS = (1, 2, 3, 4, 6, 8, 10)
# Two directions keep the evaluation cheap (LCN inference is slow on CPU); add "left": (0, -1),
# "up": (-1, 0) for all four.
DIRECTIONS = {"right": (0, 1), "down": (1, 0)}
AUGMENT = 4  # px: training shifts in [-4, 4]^2


def get_sweep(arg=None):
  quick = arg == "quick"
  base = shuffled.get_sweep(arg)
  models = dict(base["models"])
  mnist = base["conditions"]["MNIST"]
  conditions = {"MNIST": mnist, f"MNIST augment ±{AUGMENT}px": {**mnist, "augment_shift": AUGMENT},
                "canvas 40x40": {**mnist, "canvas_size": 40}}
  trained_models = [m for m in ("mlp", "cnn", "lcn") if m in {g["model"] for g in base["grid"]}]
  # The LCN is trained on MNIST only (the shared runs) and scored on shifted test images: its
  # runs cost ~2x the CNN's at 28x28 and ~2.6x at 40x40, more than a 2-core CPU affords for the
  # augmented and canvas cells, which compare the MLP and the CNN.
  grid = [{"model": m, "condition": c} for m in trained_models for c in conditions
          if m != "lcn" or c == "MNIST"]
  directions = {"right": DIRECTIONS["right"]} if quick else DIRECTIONS
  shifts = (4,) if quick else SHIFTS
  evals = {}
  for k in shifts:
    for d, (dy, dx) in directions.items():
      evals[f"shift {k}px {d}"] = {
          "from": ["MNIST", f"MNIST augment ±{AUGMENT}px"], "keep_condition": True,
          "models": trained_models,
          "test": {"test_shift": (dy * k, dx * k)}, "fields": {"shift": k, "direction": d}}
  return {**base, "conditions": conditions, "grid": grid, "evals": evals}
