"""Translation: accuracy vs a fixed test shift (0 to 10 px) per model, trained with and without
random-shift augmentation, and translated MNIST on a 40x40 canvas (digit at a random position).

The 'original' runs (no augmentation) have exactly the shuffled study's 'original' overrides, so with a shared
--runs_dir they are trained once for both studies.

  python scripts/study_translation.py --output_dir runs/study_translation
"""
from configs.sweeps import shuffled

SHIFTS = (1, 2, 3, 4, 6, 8, 10)
# Two directions keep the evaluation cheap (LCN inference is slow on CPU); add "left": (0, -1),
# "up": (-1, 0) for all four.
DIRECTIONS = {"right": (0, 1), "down": (1, 0)}
AUGMENT = 4  # px: training shifts in [-4, 4]^2


def get_sweep(arg=None):
  quick = arg == "quick"
  base = shuffled.get_sweep("quick" if quick else None)
  models = dict(base["models"])
  canvas_budget = {"cnn": {"num_epochs": 1}}  # a 40x40 input: ~2x the CNN's cost per step
  grid = [{"model": m, "condition": c} for m in ("mlp", "cnn") if m in models
          for c in ("original", f"augment ±{AUGMENT}px", "canvas 40x40")]
  if "lcn" in models:
    grid.append({"model": "lcn", "condition": "original"})  # no augmentation: ~7x the CNN's cost
  directions = {"right": DIRECTIONS["right"]} if quick else DIRECTIONS
  shifts = (4,) if quick else SHIFTS
  evals = {}
  for k in shifts:
    for d, (dy, dx) in directions.items():
      evals[f"shift {k}px {d}"] = {
          "from": ["original", f"augment ±{AUGMENT}px"], "keep_condition": True,
          # LCN inference is slow on CPU: it is scored at 4 and 8 px only.
          "models": [m for m in models if m != "lcn" or k in (4, 8)],
          "test": {"test_shift": (dy * k, dx * k)}, "fields": {"shift": k, "direction": d}}
  return {
      "base": base["base"],
      "common": base["common"],
      "models": models,
      "conditions": {"original": {}, f"augment ±{AUGMENT}px": {"augment_shift": AUGMENT},
                     "canvas 40x40": {"canvas_size": 40}},
      "grid": grid,
      "model_condition_overrides": {("cnn", "canvas 40x40"): canvas_budget["cnn"]},
      "model_seeds": base.get("model_seeds", {}),
      "evals": evals,
      "seeds": base["seeds"],
  }
