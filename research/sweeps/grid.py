"""What a sweep runs: sweep files as data, expanded into runs with stable workdir names.

A sweep is a file under configs/sweeps/ whose `get_sweep(arg)` returns a dict:

    base:        {model: "configs.mnist_mlp", ...}  the config module each model starts from
    common:      overrides for every run (e.g. {"num_epochs": 2, "parallelism": "single"})
    models:      {model: overrides}                 (e.g. {"lcn": {"model": "lcn"}})
    conditions:  {condition: overrides}             (e.g. {"shuffled": {"pixel_permutation": ...}})
    grid:        [{"model": m, "condition": c}, ...] default: every model x every condition
    model_condition_overrides: {(model, condition): overrides}  (optional, e.g. a budget)
    seeds:       [0, 1, 2]
    model_seeds: {model: [seeds]}                   (optional, instead of `seeds`)
    seeded_draws: ["transform_seed", ...]          (optional) config fields set to each run's
                 seed, so the data draws they seed (subset, clutter, labels, permutation)
                 vary with it and the intervals cover them (default: fixed by the config);
                 or {condition: [fields]} for some conditions only
    evals:       {name: {"from": condition, "test": overrides}}: test-time variants scored on
                 the trained params of condition `from` (no retraining), e.g. a CNN trained on
                 normal images scored on shuffled ones, or on test images shifted by k pixels.
    resources:   {"num_cpus": 2, "num_gpus": 1}     (optional) what one run asks of Ray
    lr_search:   {"learning_rates": [3e-4, 1e-3, 3e-3], "seed": 0}  (optional) each cell's
                 learning rate chosen on the validation split first (research/sweeps/
                 lr_search.py; needs validation_size > 0); learning_rates may be
                 {condition: [...]}: candidates per condition, the others not searched;
                 "follow": {condition: twin} gives a condition its twin's chosen rate

`product` and `sweep` build grids the big_vision way. A run's workdir is named
`{model}-{condition}-s{seed}-{hash of its overrides}`, so sweeps that share a runs_dir share
identical runs.
"""
import dataclasses
import hashlib
import importlib
import importlib.util
import json
import os

from research import UserError


def sweep(key: str, values) -> list[dict]:
  return [{key: v} for v in values]


def product(*axes: list[dict]) -> list[dict]:
  out = [{}]
  for axis in axes:
    out = [{**a, **b} for a in out for b in axis]
  return out


def load_sweep(spec: str) -> dict:
  """`path/to/sweep.py[:arg]` -> its get_sweep(arg)."""
  path, _, arg = spec.partition(":")
  if not os.path.isfile(path):
    raise UserError(f"no sweep file {path}")
  module_name = "sweep_" + os.path.splitext(os.path.basename(path))[0]
  module_spec = importlib.util.spec_from_file_location(module_name, path)
  if module_spec is None:
    raise UserError(f"{path} is not a Python sweep file")
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  if not hasattr(module, "get_sweep"):
    raise UserError(f"sweep file {path} has no get_sweep(arg)")
  return module.get_sweep(arg or None)


def slug(text: str) -> str:
  """A file-name-safe version of a condition or eval name."""
  out = "".join(ch if ch.isalnum() or ch in "._" else "_" for ch in text.lower())
  while "__" in out:
    out = out.replace("__", "_")
  return out.strip("_")


@dataclasses.dataclass(frozen=True)
class Run:
  model: str
  condition: str
  seed: int
  base: str
  overrides: tuple  # sorted (key, value) pairs, seed included

  @property
  def name(self) -> str:
    digest = hashlib.sha1(json.dumps([self.base, self.overrides], default=str).encode())
    return f"{self.model}-{slug(self.condition)}-s{self.seed}-{digest.hexdigest()[:8]}"

  def config(self, extra: dict | None = None):
    config = importlib.import_module(self.base).get_config()
    for k, v in list(self.overrides) + list((extra or {}).items()):
      if k not in config:
        raise KeyError(f"sweep override {k!r} is not a config field")
      config[k] = tuple(v) if isinstance(v, list) else v
    return config


def draws(spec: dict, condition: str) -> tuple:
  """The config fields a condition sets to each run's seed (`seeded_draws`)."""
  found = spec.get("seeded_draws", ())
  return tuple(found.get(condition, ()) if isinstance(found, dict) else found)


def expand(spec: dict, set_overrides: dict | None = None, seeds=None) -> list[Run]:
  """The spec's runs, in grid order then seed order."""
  grid = spec.get("grid") or product(sweep("model", list(spec["models"])),
                                     sweep("condition", list(spec["conditions"])))
  runs = []
  for point in grid:
    model, condition = point["model"], point["condition"]
    model_seeds = spec.get("model_seeds", {}).get(model, spec["seeds"])
    for seed in (seeds if seeds is not None else model_seeds):
      overrides = {**spec.get("common", {}), **spec["models"][model],
                   **spec["conditions"][condition],
                   **spec.get("model_condition_overrides", {}).get((model, condition), {}),
                   **(set_overrides or {}),
                   **{field: int(seed) for field in draws(spec, condition)},
                   "seed": int(seed)}
      overrides = {k: (list(v) if isinstance(v, tuple) else v) for k, v in overrides.items()}
      base = spec["base"][model] if isinstance(spec["base"], dict) else spec["base"]
      runs.append(Run(model, condition, int(seed), base, tuple(sorted(overrides.items()))))
  return runs


def check_set_overrides(runs: list[Run], set_overrides: dict) -> None:
  """A `--set` key that is no config field fails here, before anything runs."""
  for base in sorted({r.base for r in runs}):
    config = importlib.import_module(base).get_config()
    for key in set_overrides:
      if key not in config:
        raise UserError(f"--set {key}: not a config field of {base} (see configs/common.py)")


def parse_set(items: list[str]) -> dict:
  """["key=value", ...] -> {key: value}, values read as JSON where they parse."""
  out = {}
  for item in items:
    key, eq, value = item.partition("=")
    if not eq or not key:
      raise UserError(f"--set {item!r}: expected KEY=VALUE")
    try:
      out[key] = json.loads(value)
    except json.JSONDecodeError:
      out[key] = value
  return out


def parse_seeds(items) -> list[int] | None:
  """["0", "1"] or "0,1" -> [0, 1]; empty -> None (the sweep's own seeds)."""
  if isinstance(items, str):
    items = [s for s in items.split(",") if s.strip()]
  if not items:
    return None
  try:
    return [int(s) for s in items]
  except ValueError:
    raise UserError(f"--seeds {','.join(items)}: expected integers like 0,1,2") from None
