"""Sweeps: a grid of config overrides x seeds, each run in its own workdir; then tables and plots.

A sweep is data, in a file under configs/sweeps/ whose `get_sweep(arg)` returns a dict:

    base:        {model: "configs.mnist_mlp", ...}  the config module each model starts from
    common:      overrides for every run (e.g. {"num_epochs": 2, "parallelism": "single"})
    models:      {model: overrides}                 (e.g. {"lcn": {"model": "lcn"}})
    conditions:  {condition: overrides}             (e.g. {"shuffled": {"pixel_permutation": ...}})
    grid:        [{"model": m, "condition": c}, ...] default: every model x every condition
    model_condition_overrides: {(model, condition): overrides}  (optional, e.g. a budget)
    seeds:       [0, 1, 2]
    model_seeds: {model: [seeds]}                   (optional, instead of `seeds`)
    evals:       {name: {"from": condition, "test": overrides}}: test-time variants scored on
                 the trained params of condition `from` (no retraining), e.g. a CNN trained on
                 normal images scored on shuffled ones, or on test images shifted by k pixels.

`product` and `sweep` build grids the big_vision way. A run's workdir is named
`{model}-{condition}-s{seed}-{hash of its overrides}`, so sweeps that share a runs_dir share
identical runs. `run_sweep` trains what is missing: a finished run (results.json) is read back,
an unfinished one resumes from its checkpoints; one progress line per run.
"""
import dataclasses
import hashlib
import importlib
import importlib.util
import json
import os
import sys
import time

import numpy as np

RESULT_COLUMNS = ("study", "model", "condition", "seed", "test_accuracy", "test_loss",
                  "train_accuracy", "train_loss", "steps", "num_params", "train_seconds",
                  "dataset", "workdir")


# --- grids as data ----------------------------------------------------------------------------


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
  module_name = "sweep_" + os.path.splitext(os.path.basename(path))[0]
  module_spec = importlib.util.spec_from_file_location(module_name, path)
  if module_spec is None:
    raise FileNotFoundError(f"no sweep file {path}")
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module.get_sweep(arg or None)


def slug(text: str) -> str:
  """A file-name-safe version of a condition or eval name."""
  out = "".join(ch if ch.isalnum() or ch in "._" else "_" for ch in text.lower())
  while "__" in out:
    out = out.replace("__", "_")
  return out.strip("_")


# --- runs -----------------------------------------------------------------------------------


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
                   **(set_overrides or {}), "seed": int(seed)}
      overrides = {k: (list(v) if isinstance(v, tuple) else v) for k, v in overrides.items()}
      base = spec["base"][model] if isinstance(spec["base"], dict) else spec["base"]
      runs.append(Run(model, condition, int(seed), base, tuple(sorted(overrides.items()))))
  return runs


def _read_json(path):
  with open(path) as f:
    return json.load(f)


def run_one(run: Run, runs_dir: str) -> tuple[dict, str]:
  """Trains `run` unless finished; returns (results, 'done' | 'resumed' | 'trained')."""
  from research import train  # heavy: jax
  workdir = os.path.join(runs_dir, run.name)
  results_path = os.path.join(workdir, "results.json")
  if os.path.exists(results_path):
    return _read_json(results_path), "done"
  status = "resumed" if os.path.isdir(os.path.join(workdir, "checkpoints")) else "trained"
  return train.train_and_evaluate(run.config(), workdir), status


def run_sweep(runs: list[Run], runs_dir: str, study: str, log=print) -> list[dict]:
  """Runs (or reads back) every run; one progress line each; returns one row per run."""
  os.makedirs(runs_dir, exist_ok=True)
  rows = []
  for i, run in enumerate(runs, 1):
    t0 = time.time()
    results, status = run_one(run, runs_dir)
    row = result_row(study, run, results, os.path.join(runs_dir, run.name))
    rows.append(row)
    train_acc = row.get("train_accuracy")
    log(f"[{i}/{len(runs)}] {run.model:4s} {run.condition:22s} seed {run.seed}: {status:7s} "
        f"test {row['test_accuracy']:.4f}"
        + (f" train {train_acc:.4f}" if train_acc is not None else "")
        + f"  {row['steps']} steps  {time.time() - t0:.0f}s  {run.name}")
    sys.stdout.flush()
  return rows


def result_row(study: str, run: Run, results: dict, workdir: str, condition: str | None = None,
               **extra) -> dict:
  row = {"study": study, "model": run.model, "condition": condition or run.condition,
         "seed": run.seed, "workdir": workdir}
  for k in ("test_accuracy", "test_loss", "train_accuracy", "train_loss", "steps", "num_params",
            "train_seconds", "dataset"):
    row[k] = results.get(k)
  row.update(extra)
  return row


# --- test-time variants of a trained run ----------------------------------------------------


class Evaluator:
  """Scores a finished run's params on test sets built by research.transforms (no training)."""

  def __init__(self, run: Run, runs_dir: str):
    self.run, self.workdir = run, os.path.join(runs_dir, run.name)
    self._batch_stats = None

  def _load(self):
    """Restores the params and compiles the scoring function (only for uncached evals)."""
    import jax
    from research import steps, train
    self.model, self.params, _ = train.load_model(self.workdir)
    model = self.model

    @jax.jit
    def batch_stats(params, x, y, mask):
      logits = model.apply({"params": params}, steps.normalize(x))
      loss = steps.cross_entropy(logits, y)
      return ((logits.argmax(-1) == y) * mask).sum(), (loss * mask).sum()

    self._batch_stats = batch_stats

  def evaluate(self, test_overrides: dict, key: str, batch_size: int = 1000) -> dict:
    """Test accuracy and loss with `test_overrides` applied; cached in WORKDIR/evals/KEY.json."""
    from research import data, transforms
    path = os.path.join(self.workdir, "evals", f"{slug(key)}.json")
    if os.path.exists(path):
      return _read_json(path)
    if self._batch_stats is None:
      self._load()
    config = self.run.config(test_overrides)
    ds = transforms.apply(config, data.load_dataset(config))
    x, y = ds.test_images, ds.test_labels
    n = len(y)
    pad = -n % batch_size
    x = np.concatenate([x, np.zeros((pad,) + x.shape[1:], x.dtype)])
    yp = np.concatenate([y, np.zeros(pad, y.dtype)])
    mask = (np.arange(n + pad) < n).astype(np.float32)
    correct, loss = 0.0, 0.0
    for s in range(0, n + pad, batch_size):
      c, l = self._batch_stats(self.params, x[s:s + batch_size], yp[s:s + batch_size],
                               mask[s:s + batch_size])
      correct, loss = correct + float(c), loss + float(l)
    out = {"test_accuracy": correct / n, "test_loss": loss / n, "test_count": n,
           "overrides": {k: (list(v) if isinstance(v, tuple) else v)
                         for k, v in test_overrides.items()}}
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w") as f:
      json.dump(out, f, indent=2)
    os.replace(tmp, path)
    return out


def run_evals(spec: dict, runs: list[Run], rows: list[dict], runs_dir: str, study: str,
              log=print) -> list[dict]:
  """Rows for the spec's `evals`: trained params of condition `from`, scored on variants."""
  out = []
  by_run = {r["workdir"]: r for r in rows}
  for run in runs:  # runs outer: each run's params are restored and compiled once
    evaluator = None
    for name, ev in spec.get("evals", {}).items():
      sources = ev["from"] if isinstance(ev["from"], (list, tuple)) else [ev["from"]]
      if run.condition not in sources or ("models" in ev and run.model not in ev["models"]):
        continue
      base_row = by_run[os.path.join(runs_dir, run.name)]
      evaluator = evaluator or Evaluator(run, runs_dir)
      res = evaluator.evaluate(ev["test"], name)
      row = {**base_row, "condition": run.condition if ev.get("keep_condition") else name,
             "eval": name, "test_accuracy": res["test_accuracy"], "test_loss": res["test_loss"],
             "trained_as": run.condition, "train_accuracy": None, "train_loss": None,
             **ev.get("fields", {})}
      out.append(row)
      log(f"  eval {run.model:4s} {name:22s} seed {run.seed}: test {res['test_accuracy']:.4f}  "
          f"(params of {run.name})")
  return out


# --- aggregation ----------------------------------------------------------------------------


def claims_table(claims) -> list[str]:
  """Markdown rows for (claim, holds: True | False | None for a reference value, measured)."""
  lines = ["| claim | holds | measured |", "|---|---|---|"]
  for claim, holds, measured in claims:
    lines.append(f"| {claim} | {'—' if holds is None else 'yes' if holds else 'NO'} | {measured} |")
  return lines


def to_frame(rows: list[dict]):
  import pandas as pd
  frame = pd.DataFrame(rows)
  lead = [c for c in RESULT_COLUMNS if c in frame.columns]
  return frame[lead + [c for c in frame.columns if c not in lead]]


def aggregate(frame, by=("model", "condition"), metrics=("test_accuracy", "train_accuracy")):
  """mean, std (ddof=1; 0 for one seed) and n over seeds, in first-seen order of `by`."""
  by = list(by)
  metrics = [m for m in metrics if m in frame.columns and frame[m].notna().any()]
  groups = frame.groupby(by, sort=False)
  out = groups[metrics].agg(["mean", "std"])
  out.columns = [f"{m}_{s}" for m, s in out.columns]
  out = out.fillna({c: 0.0 for c in out.columns if c.endswith("_std")})
  out["n"] = groups.size()
  for extra in ("num_params", "steps"):
    if extra in frame.columns:
      out[extra] = groups[extra].first()
  return out.reset_index()


def pct(mean, std) -> str:
  return f"{100 * mean:.2f} ± {100 * std:.2f}"


def markdown_table(agg, by=("model", "condition"), metrics=("test_accuracy", "train_accuracy"),
                   labels=None, extra=("n", "steps", "num_params")) -> str:
  labels = labels or {}
  metrics = [m for m in metrics if f"{m}_mean" in agg.columns]
  extra = [e for e in extra if e in agg.columns]
  head = list(by) + [labels.get(m, m.replace("_", " ") + " (%)") for m in metrics] + list(extra)
  lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
  for _, r in agg.iterrows():
    cells = [str(r[b]) for b in by] + [
        "n/a" if r[f"{m}_mean"] != r[f"{m}_mean"]  # NaN: not measured for these rows
        else f"{r[f'{m}_mean']:.3f} ± {r[f'{m}_std']:.3f}" if "loss" in m
        else pct(r[f"{m}_mean"], r[f"{m}_std"]) for m in metrics]
    cells += [f"{int(r[e]):,}" if isinstance(r[e], (int, float, np.integer, np.floating))
              and r[e] == r[e] else str(r[e]) for e in extra]
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines)


def write_outputs(output_dir: str, rows: list[dict], markdown: str) -> None:
  os.makedirs(output_dir, exist_ok=True)
  to_frame(rows).to_csv(os.path.join(output_dir, "results.csv"), index=False)
  with open(os.path.join(output_dir, "results.md"), "w") as f:
    f.write(markdown.rstrip() + "\n")


def publish(args, section: str, lines: list[str], rows: list[dict] | None = None) -> str:
  """A study's outputs: results.csv (rows) and results.md in --output_dir, its section of
  --results_md, and the markdown on stdout. Returns the markdown."""
  markdown = "\n".join(lines)
  os.makedirs(args.output_dir, exist_ok=True)
  if rows is not None:
    write_outputs(args.output_dir, rows, markdown)
  else:
    with open(os.path.join(args.output_dir, "results.md"), "w") as f:
      f.write(markdown + "\n")
  if args.results_md:
    update_markdown_section(args.results_md, section, markdown, asset_dir=args.output_dir)
  print(markdown)
  return markdown


def update_markdown_section(path: str, name: str, text: str, asset_dir: str = "") -> None:
  """Replaces (or appends) the block between `<!-- begin NAME -->` and `<!-- end NAME -->`.

  Image links to bare file names (`![x](plot.png)`) are made relative to `path` when the
  images live in `asset_dir`.
  """
  if asset_dir:
    import re
    rel = os.path.relpath(os.path.abspath(asset_dir), os.path.dirname(os.path.abspath(path)))
    text = re.sub(r"!\[([^\]]*)\]\(([^)/]+)\)",
                  lambda m: f"![{m.group(1)}]({rel}/{m.group(2)})", text)
  begin, end = f"<!-- begin {name} -->", f"<!-- end {name} -->"
  block = f"{begin}\n{text.rstrip()}\n{end}"
  old = open(path).read() if os.path.exists(path) else ""
  if begin in old and end in old:
    new = old[:old.index(begin)] + block + old[old.index(end) + len(end):]
  else:
    new = old.rstrip() + ("\n\n" if old.strip() else "") + block + "\n"
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, "w") as f:
    f.write(new)


def command_line() -> str:
  """The command that is running, as one could paste it (for the results' provenance)."""
  import shlex
  script = os.path.relpath(sys.argv[0]) if os.path.exists(sys.argv[0]) else sys.argv[0]
  return " ".join(["python", shlex.quote(script)] + [shlex.quote(a) for a in sys.argv[1:]])


def add_common_flags(parser, default_sweep: str | None = None):
  parser.add_argument("--output_dir", required=True, help="results.csv, results.md, *.png")
  parser.add_argument("--runs_dir", default="", help="run workdirs (default OUTPUT_DIR/runs); "
                      "studies sharing it share identical runs")
  if default_sweep:
    parser.add_argument("--sweep", default=default_sweep,
                        help="sweep file[:arg], e.g. configs/sweeps/shuffled.py:quick")
  parser.add_argument("--seeds", default="", help="comma-separated seeds (default: the sweep's)")
  parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                      help="override a config field in every run, e.g. --set dataset=cifar10")
  parser.add_argument("--results_md", default="",
                      help="also write the table into this markdown file's section for the study")
  return parser


def parse_set(items: list[str]) -> dict:
  out = {}
  for item in items:
    key, _, value = item.partition("=")
    try:
      out[key] = json.loads(value)
    except json.JSONDecodeError:
      out[key] = value
  return out


def parse_seeds(text: str):
  return [int(s) for s in text.split(",")] if text else None


def run_study(args, study: str, log=print):
  """The shared part of every study script: expand the sweep, train, score evals.

  Returns (spec, runs, rows, runs_dir).
  """
  os.makedirs(args.output_dir, exist_ok=True)
  spec = load_sweep(args.sweep)
  runs = expand(spec, parse_set(args.set), parse_seeds(args.seeds))
  runs_dir = os.path.abspath(args.runs_dir or os.path.join(args.output_dir, "runs"))
  log(f"{study}: {len(runs)} runs in {runs_dir}")
  rows = run_sweep(runs, runs_dir, study, log=log)
  rows += run_evals(spec, runs, rows, runs_dir, study, log=log)
  return spec, runs, rows, runs_dir


def read_metrics(workdir: str, split: str = "train") -> list[dict]:
  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.exists(path):
    return []
  with open(path) as f:
    lines = [json.loads(line) for line in f if line.strip()]
  by_step = {}
  for line in lines:  # a resumed run may repeat steps: the last write wins
    if line.get("split") == split:
      by_step[line["step"]] = line
  return [by_step[s] for s in sorted(by_step)]


def setup_matplotlib():
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  return plt


def save_figure(fig, path: str) -> None:
  """Writes a study figure (tight layout, 120 dpi) and frees it."""
  import matplotlib.pyplot as plt
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)
