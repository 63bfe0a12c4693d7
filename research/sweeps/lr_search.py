"""The learning-rate search: each grid cell's rate chosen on the validation split, never the test
split, before the sweep's own runs (a sweep file's `lr_search`)."""
from research import UserError
from research.sweeps import grid


def choose_learning_rates(spec: dict, overrides: dict, execute, log=print, study="") -> dict:
  """The sweep's learning rate per (model, condition), chosen on the validation split.

  spec["lr_search"] = {"learning_rates": [...ascending...], "seed": 0, "extend": 2}: every grid
  cell (or, with learning_rates = {condition: [...]}, every cell of those conditions: the others
  keep the rate their overrides give, or with "follow" = {condition: twin} take the rate
  chosen for their model on the twin condition) trains once per candidate (that seed, the
  cell's full budget) and keeps the rate with the best final validation accuracy (ties: the
  smaller rate). A cell whose best rate is the largest (smallest) of its candidates gets the
  next rate beyond it (continuing the grid's pattern: 3e-4, 1e-3, 3e-3 -> 1e-2 -> 3e-2), up to
  `extend` times, so the choice is bracketed rather than cut off by the grid. The test split
  plays no part.

  `execute(runs) -> {name: outcome}` runs (or reads back) the candidates. Returns a copy of the
  spec whose model_condition_overrides carry the choices, so the cell's run at that seed is the
  search's own run (same overrides, same workdir: trained once), and whose "lr_search_rows" hold
  every candidate's validation score and which one was chosen (report.lr_search_table).
  """
  search = spec["lr_search"]
  given, seed = search["learning_rates"], int(search.get("seed", 0))
  extend = int(search.get("extend", 2))
  per_condition = given if isinstance(given, dict) else None
  expanded = grid.expand(spec, overrides, [seed])
  cells = [c for c in expanded if per_condition is None or c.condition in per_condition]
  keys = [(c.model, c.condition) for c in cells]
  candidates = {key: sorted(float(r) for r in (given if per_condition is None else
                                               per_condition[key[1]])) for key in keys}
  if not keys or not all(candidates.values()):
    raise UserError("lr_search: give learning_rates (a list, or {condition: list})")
  if cells[0].config().validation_size <= 0:
    raise UserError("lr_search needs a validation split: set validation_size > 0 in the sweep "
                    "(the test split never chooses anything)")
  factors = {key: c[-1] / c[-2] if len(c) > 1 else 3.0 for key, c in candidates.items()}
  runs = {}  # (key, lr) -> Run

  def run_for(key, lr):
    if (key, lr) not in runs:
      for r in grid.expand(spec, {**overrides, "learning_rate": lr}, [seed]):
        runs[(r.model, r.condition), lr] = r
    return runs[key, lr]

  outcomes, chosen = {}, {}
  for round_ in range(extend + 1):
    todo = [run_for(key, lr) for key in keys for lr in candidates[key]]
    log(f"{study}: learning rates on the validation split, round {round_ + 1}: "
        f"{len(todo)} runs (seed {seed})")
    outcomes.update(execute(todo))
    grown = False
    for key in keys:
      scores = {lr: outcomes[run_for(key, lr).name] for lr in candidates[key]}
      finite = {lr: o["results"]["validation_accuracy"] for lr, o in scores.items()
                if o["status"] != "failed" and "validation_accuracy" in o["results"]}
      if not finite:
        raise UserError(f"lr_search: every candidate of {key} failed (see the runs' train.log)")
      best = max(finite, key=lambda lr: (finite[lr], -lr))
      chosen[key] = best
      c = candidates[key]
      if round_ < extend and best == c[-1]:
        # The pattern continues: two steps on from c[-2] (1e-3, 3e-3 -> 1e-2), else one factor.
        c.append(float(f"{(c[-2] * c[-1] / c[-3] if len(c) > 2 else best * factors[key]):.3g}"))
        grown = True
      elif round_ < extend and best == c[0] and len(c) > 1:
        c.insert(0, float(f"{(c[1] * c[0] / c[2] if len(c) > 2 else best / factors[key]):.3g}"))
        grown = True
    if not grown:
      break
  table = []
  for key in keys:
    for lr in candidates[key]:
      run = run_for(key, lr)
      out = outcomes.get(run.name)
      if out is None:  # a candidate added in the last round was never needed
        continue
      acc = out["results"].get("validation_accuracy") if out["status"] != "failed" else None
      table.append({"model": key[0], "condition": key[1], "learning_rate": lr, "seed": seed,
                    "validation_accuracy": acc, "status": out["status"],
                    "error": out.get("error", ""), "workdir": run.name,
                    "chosen": chosen[key] == lr})
  new = dict(spec)
  mco = {k: dict(v) for k, v in spec.get("model_condition_overrides", {}).items()}
  for key, lr in chosen.items():
    mco.setdefault(key, {})["learning_rate"] = lr
  # A condition that follows another (search["follow"] = {condition: twin}) is not searched: each
  # of its cells takes the rate chosen for the same model on the twin condition.
  for model, condition in {(r.model, r.condition) for r in expanded}:
    twin = search.get("follow", {}).get(condition)
    if twin and (model, twin) in chosen:
      mco.setdefault((model, condition), {})["learning_rate"] = chosen[model, twin]
  new["model_condition_overrides"] = mco
  new["lr_search_rows"] = table
  return new
