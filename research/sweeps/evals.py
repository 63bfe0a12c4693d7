"""Test-time variants of finished runs: their params scored on transformed test sets (no training)."""
import json
import os

import numpy as np

from research.sweeps.grid import Run, slug


def _read_json(path):
  with open(path) as f:
    return json.load(f)


class Evaluator:
  """Scores a finished run's params on test sets built by research.transforms (no training)."""

  def __init__(self, run: Run, runs_dir: str):
    self.run, self.workdir = run, os.path.join(runs_dir, run.name)
    self._batch_stats = None

  def _load(self):
    """Restores the params and compiles the scoring function (only for uncached evals)."""
    import jax
    from research import experiment, steps
    self.model, self.params, _ = experiment.load_model(self.workdir)
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


def _wanted(spec: dict, runs: list[Run], rows: list[dict], runs_dir: str):
  """(run, [(name, eval spec), ...]) for the runs whose params the spec's `evals` score; runs
  that failed have no params and are left out (the sweep reports the failure)."""
  by_run = {r["workdir"]: r for r in rows}
  for run in runs:
    items = []
    for name, ev in spec.get("evals", {}).items():
      sources = ev["from"] if isinstance(ev["from"], (list, tuple)) else [ev["from"]]
      if run.condition not in sources or ("models" in ev and run.model not in ev["models"]):
        continue
      if by_run[os.path.join(runs_dir, run.name)].get("status") == "failed":
        continue
      items.append((name, ev))
    if items:
      yield run, items


def pending(spec: dict, runs: list[Run], rows: list[dict], runs_dir: str) -> list:
  """The evaluations not yet cached in their runs' evals/ folders, as jobs for `compute`:
  [(run, [(name, test_overrides), ...])] (an executor may score them in its workers)."""
  jobs = []
  for run, items in _wanted(spec, runs, rows, runs_dir):
    todo = [(name, ev["test"]) for name, ev in items if not os.path.exists(
        os.path.join(runs_dir, run.name, "evals", f"{slug(name)}.json"))]
    if todo:
      jobs.append((run, todo))
  return jobs


def compute(run: Run, runs_dir: str, items) -> None:
  """Scores `items` [(name, test_overrides)] on `run`'s params into its evals/ cache."""
  evaluator = Evaluator(run, runs_dir)
  for name, test_overrides in items:
    evaluator.evaluate(test_overrides, name)


def run_evals(spec: dict, runs: list[Run], rows: list[dict], runs_dir: str, log=print) -> list[dict]:
  """Rows for the spec's `evals`: trained params of condition `from`, scored on variants
  (read from the runs' evals/ cache where an executor already scored them)."""
  out = []
  by_run = {r["workdir"]: r for r in rows}
  for run, items in _wanted(spec, runs, rows, runs_dir):
    evaluator = Evaluator(run, runs_dir)  # each run's params are restored and compiled once
    base_row = by_run[os.path.join(runs_dir, run.name)]
    for name, ev in items:
      res = evaluator.evaluate(ev["test"], name)
      row = {**base_row, "condition": run.condition if ev.get("keep_condition") else name,
             "eval": name, "status": "eval", "test_accuracy": res["test_accuracy"],
             "test_loss": res["test_loss"], "trained_as": run.condition, "train_accuracy": None,
             "train_loss": None, **ev.get("fields", {})}
      out.append(row)
      log(f"  eval {run.model:4s} {name:22s} seed {run.seed}: test {res['test_accuracy']:.4f}  "
          f"(params of {run.name})")
  return out
