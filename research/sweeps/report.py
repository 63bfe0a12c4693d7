"""How a sweep is reported: result rows, mean ± std and 95% intervals over seeds, markdown and
CSV, plots.

Intervals are Student t: a cell of n seeds reports mean ± t(0.975, n-1) * std / sqrt(n); a
difference between two cells (e.g. CNN minus MLP) uses Welch's interval, and a claim of a
difference "holds" only when that interval excludes zero (`diff_interval`).
"""
import os
import shlex
import sys

import numpy as np

RESULT_COLUMNS = ("study", "model", "condition", "seed", "status", "test_accuracy", "test_loss",
                  "train_accuracy", "train_loss", "validation_accuracy", "validation_loss",
                  "learning_rate", "steps", "num_params", "train_seconds", "run_seconds",
                  "dataset", "error", "workdir")


def result_row(study: str, run, results: dict, workdir: str, condition: str | None = None,
               **extra) -> dict:
  row = {"study": study, "model": run.model, "condition": condition or run.condition,
         "seed": run.seed, "workdir": workdir}
  for k in ("test_accuracy", "test_loss", "train_accuracy", "train_loss", "validation_accuracy",
            "validation_loss", "learning_rate", "steps", "num_params", "train_seconds", "dataset"):
    row[k] = results.get(k)
  row.update(extra)
  return row


def claims_table(claims) -> list[str]:
  """Markdown rows for (claim, holds: True | False | None for a reference value, measured)."""
  lines = ["| claim | holds | measured |", "|---|---|---|"]
  for claim, holds, measured in claims:
    lines.append(f"| {claim} | {'—' if holds is None else 'yes' if holds else 'NO'} | {measured} |")
  return lines


def t_interval(values, level: float = 0.95) -> tuple[float, float]:
  """(mean, half-width) of the Student t interval of the mean; half-width NaN for one value."""
  from scipy import stats
  x = np.asarray(values, np.float64)
  x = x[~np.isnan(x)]
  if len(x) == 0:
    return float("nan"), float("nan")
  if len(x) == 1:
    return float(x[0]), float("nan")
  sem = x.std(ddof=1) / np.sqrt(len(x))
  return float(x.mean()), float(stats.t.ppf(0.5 + level / 2, len(x) - 1) * sem)


def diff_interval(a, b, level: float = 0.95) -> tuple[float, float, float]:
  """(mean(a) - mean(b), low, high): Welch's t interval of the difference of two independent
  groups (seeds of two models need not pair up). NaN bounds when a group has < 2 values."""
  from scipy import stats
  a = np.asarray(a, np.float64)
  b = np.asarray(b, np.float64)
  a, b = a[~np.isnan(a)], b[~np.isnan(b)]
  d = float(a.mean() - b.mean()) if len(a) and len(b) else float("nan")
  if len(a) < 2 or len(b) < 2:
    return d, float("nan"), float("nan")
  va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
  se = np.sqrt(va + vb)
  if se == 0:
    return d, d, d
  dof = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
  half = float(stats.t.ppf(0.5 + level / 2, dof) * se)
  return d, d - half, d + half


def verdict(low: float, high: float) -> str:
  """'> 0', '< 0' or 'n.s.' (the interval contains zero, or was not computable)."""
  if low != low or high != high:
    return "n.s."
  return "> 0" if low > 0 else "< 0" if high < 0 else "n.s."


def fmt_interval(mean: float, half: float, scale: float = 100.0, digits: int = 2) -> str:
  """'98.12 ± 0.10' (a 95% half-width), or just the mean when there is no interval."""
  if half != half:
    return f"{scale * mean:.{digits}f}"
  return f"{scale * mean:.{digits}f} ± {scale * half:.{digits}f}"


def fmt_diff(d: float, low: float, high: float, scale: float = 100.0) -> str:
  """'+1.23 [+0.80, +1.66]' in percentage points."""
  if low != low:
    return f"{scale * d:+.2f} (no interval: < 2 seeds)"
  return f"{scale * d:+.2f} [{scale * low:+.2f}, {scale * high:+.2f}]"


def differences_table(rows) -> list[str]:
  """Markdown: one row per difference {model, what, diff, low, high, verdict} (Welch 95% CI)."""
  lines = ["| model | difference | pp (95% CI, Welch) | verdict |", "|---|---|---|---|"]
  return lines + [f"| {r['model']} | {r['what']} | {fmt_diff(r['diff'], r['low'], r['high'])} "
                  f"| {r['verdict']} |" for r in rows]


def to_frame(rows: list[dict]):
  import pandas as pd
  frame = pd.DataFrame(rows)
  lead = [c for c in RESULT_COLUMNS if c in frame.columns]
  return frame[lead + [c for c in frame.columns if c not in lead]]


def aggregate(frame, by=("model", "condition"), metrics=("test_accuracy", "train_accuracy")):
  """mean, std (ddof=1; 0 for one seed), 95% t half-width (`_ci95`, NaN for one seed) and n over
  seeds, in first-seen order of `by`."""
  by = list(by)
  metrics = [m for m in metrics if m in frame.columns and frame[m].notna().any()]
  groups = frame.groupby(by, sort=False)
  out = groups[metrics].agg(["mean", "std"])
  out.columns = [f"{m}_{s}" for m, s in out.columns]
  out = out.fillna({c: 0.0 for c in out.columns if c.endswith("_std")})
  for m in metrics:
    out[f"{m}_ci95"] = groups[m].agg(lambda v: t_interval(v)[1])
  out["n"] = groups.size()
  for extra in ("num_params", "steps"):
    if extra in frame.columns:
      out[extra] = groups[extra].first()
  return out.reset_index()


def markdown_table(agg, by=("model", "condition"), metrics=("test_accuracy", "train_accuracy"),
                   labels=None, extra=("n", "steps", "num_params"), spread: str = "std",
                   more: dict | None = None) -> str:
  """One row per group; `spread` 'std' (mean ± std) or 'ci95' (mean ± 95% t half-width).
  `more`: {(model, condition): {column: text}} ends each row (a study's budget and under-trained
  columns: research.studies.budget_columns); '—' where a row has none."""
  labels = labels or {}
  metrics = [m for m in metrics if f"{m}_mean" in agg.columns]
  extra = [e for e in extra if e in agg.columns]
  what = "± 95% CI" if spread == "ci95" else "± std"
  more_head = list(next(iter(more.values()), {})) if more else []
  head = list(by) + [labels.get(m, m.replace("_", " ") + f" (%, {what})") for m in metrics] + list(
      extra) + more_head
  lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
  for _, r in agg.iterrows():
    cells = [str(r[b]) for b in by] + [
        "n/a" if r[f"{m}_mean"] != r[f"{m}_mean"]  # NaN: not measured for these rows
        else f"{r[f'{m}_mean']:.3f} ± {r[f'{m}_{spread}']:.3f}" if "loss" in m
        else fmt_interval(r[f"{m}_mean"], r[f"{m}_{spread}"]) for m in metrics]
    cells += [f"{int(r[e]):,}" if isinstance(r[e], (int, float, np.integer, np.floating))
              and r[e] == r[e] else str(r[e]) for e in extra]
    cells += [(more or {}).get((r["model"], r["condition"]), {}).get(h, "—") for h in more_head]
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines)


def lr_search_table(table: list[dict]) -> list[str]:
  """Markdown: per (model, condition), each candidate learning rate's final validation accuracy
  (seed of the search), the chosen one in bold; ‡ marks a choice at an end of the candidates the
  cell tried (the search had stopped extending: not bracketed)."""
  if not table:
    return []
  rates = sorted(set(r["learning_rate"] for r in table))
  lines = ["| model | condition | " + " | ".join(f"lr {lr:g}" for lr in rates) + " | chosen |",
           "|---|---|" + "---|" * (len(rates) + 1)]
  cells = {}
  for r in table:
    cells.setdefault((r["model"], r["condition"]), {})[r["learning_rate"]] = r
  unbracketed = 0
  for (model, condition), by_lr in cells.items():
    out, chosen = [], ""
    for lr in rates:
      r = by_lr.get(lr)
      acc = None if r is None else r["validation_accuracy"]
      text = "" if r is None else "failed" if acc is None else f"{100 * acc:.2f}"
      if r is not None and r["chosen"]:
        text, chosen = f"**{text}**", f"{lr:g}"
        if len(by_lr) > 1 and lr in (min(by_lr), max(by_lr)):
          chosen, unbracketed = chosen + " ‡", unbracketed + 1
      out.append(text)
    lines.append(f"| {model} | {condition} | " + " | ".join(out) + f" | {chosen} |")
  return lines + ([
      "", f"‡ the best candidate is at an end of those tried ({unbracketed} of {len(cells)} "
      "cells): the search stopped extending there, so a rate beyond it may do better."]
                  if unbracketed else [])


def learning_curves(rows: list[dict], split: str = "test", records: dict | None = None):
  """A frame (model, condition, seed, step, epoch, accuracy, total_steps) of every finished
  run's per-epoch `split` evaluations ('test' or 'validation'), read from the runs'
  metrics.jsonl, or from `records` ({run name: files}, records.read of a study's runs.jsonl)
  for a run whose workdir is not on this machine."""
  import json
  import pandas as pd
  out = []
  for r in rows:
    if r.get("status") in ("failed", "eval") or not r.get("workdir"):
      continue
    files = (records or {}).get(os.path.basename(os.path.normpath(r["workdir"])))
    if files and not os.path.isfile(os.path.join(r["workdir"], "metrics.jsonl")):
      metrics = _metrics(files.get("metrics.jsonl", "").splitlines(), split)
      config = json.loads(files["config.json"])
    else:
      metrics = read_metrics(r["workdir"], split)
      if not metrics:
        continue
      with open(os.path.join(r["workdir"], "config.json")) as f:
        config = json.load(f)
    if not metrics:
      continue
    last = metrics[-1]["step"]  # the final evaluation: num_epochs epochs (when set by epochs)
    per_epoch = last / config["num_epochs"] if config.get("num_train_steps", -1) <= 0 else None
    total = r.get("steps") if r.get("steps") == r.get("steps") and r.get("steps") else last
    for m in metrics:
      out.append({"model": r["model"], "condition": r["condition"], "seed": r["seed"],
                  "step": m["step"], "epoch": m["step"] / per_epoch if per_epoch else None,
                  "accuracy": m["accuracy"], "total_steps": int(total)})
  return pd.DataFrame(out, columns=["model", "condition", "seed", "step", "epoch", "accuracy",
                                    "total_steps"])


def under_trained_cells(curves, fraction: float = 0.2) -> dict:
  """{(model, condition): stats.under_trained(...)} of learning_curves' frame: a cell whose test
  accuracy still rose, over its last `fraction` of training, by more than its own 95% half-width
  is under-trained (its table marks it; it carries no verdict)."""
  from research import stats
  out = {}
  for (model, condition), cell in curves.groupby(["model", "condition"], sort=False):
    rises, finals = [], []
    for _, run in cell.groupby("seed"):
      run = run.sort_values("step")
      rises.append(stats.late_rise(run["step"], run["accuracy"], run["total_steps"].iloc[0],
                                   fraction))
      finals.append(run["accuracy"].iloc[-1])
    out[model, condition] = stats.under_trained(rises, finals, fraction)
  return out


def under_trained_mark(marker: dict | None) -> str:
  """The table cell of a marker: 'under-trained (+1.20 pp > ±0.40)', 'no (+0.05 pp)', or '?'."""
  if not marker or marker["under_trained"] is None:
    return "? (no curve that early)"
  word = "**under-trained**" if marker["under_trained"] else "no"
  sign = ">" if marker["under_trained"] else "<="
  return f"{word} (last 20%: {100 * marker['rise']:+.2f} pp {sign} ±{100 * marker['half']:.2f})"


def plot_learning_curves(curves, path: str, title: str, panels: str = "condition") -> None:
  """Accuracy against epoch (mean over seeds, shaded 95% t interval), one line per model, one
  panel per `panels` value (steps on the x axis for runs budgeted in steps)."""
  plt = setup_matplotlib()
  names = list(dict.fromkeys(curves[panels]))
  lines_by = "model" if panels == "condition" else "condition"
  fig, axes = plt.subplots(1, len(names), figsize=(3.6 * len(names), 3.2), squeeze=False)
  colors = {label: f"C{i}" for i, label in enumerate(dict.fromkeys(curves[lines_by]))}
  for ax, name in zip(axes[0], names):
    sub = curves[curves[panels] == name]
    for label in dict.fromkeys(sub[lines_by]):
      line = sub[sub[lines_by] == label]
      by_epoch = line["epoch"].notna().all()
      stats = [(x,) + t_interval(g["accuracy"])
               for x, g in line.groupby("epoch" if by_epoch else "step")]
      x = np.array([s for s, _, _ in stats], np.float64)
      mean = 100 * np.array([m for _, m, _ in stats])
      half = 100 * np.nan_to_num(np.array([h for _, _, h in stats]))
      ax.plot(x, mean, marker="o", ms=3, color=colors[label],
              label=str(label).upper() if lines_by == "model" else str(label))
      ax.fill_between(x, mean - half, mean + half, color=colors[label], alpha=0.2)
    ax.set_title(str(name), fontsize=9)
    ax.set_xlabel("epoch" if sub["epoch"].notna().all() else "step")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
  axes[0][0].set_ylabel("accuracy (%)")
  fig.suptitle(title, fontsize=10)
  save_figure(fig, path)


def failed(rows: list[dict]) -> list[dict]:
  return [r for r in rows if r.get("status") == "failed"]


def failures_table(rows: list[dict]) -> list[str]:
  """Markdown rows naming each failed run and its one error line (empty when none failed)."""
  bad = failed(rows)
  if not bad:
    return []
  lines = ["| failed run | error |", "|---|---|"]
  lines += [f"| {os.path.basename(r['workdir'])} | {str(r.get('error', '')).replace('|', '/')} |"
            for r in bad]
  return lines


def sweep_markdown(rows: list[dict], study: str) -> str:
  """The generic sweep report: mean ± std over seeds of the finished runs, then any failures."""
  done = [r for r in rows if r.get("status") != "failed"]
  runs = [r for r in rows if r.get("status") != "eval"]
  lines = [f"Sweep `{study}`: {len(runs)} runs ({len(runs) - len(failed(rows))} finished, "
           f"{len(failed(rows))} failed) and {len(rows) - len(runs)} test-time evaluations. "
           f"Command: `{command_line()}`", ""]
  if done:
    frame = to_frame(done)
    metrics = [m for m in ("test_accuracy", "train_accuracy", "test_loss") if m in frame.columns]
    lines += [markdown_table(aggregate(frame, metrics=metrics), metrics=metrics,
                             labels={"test_loss": "test loss"}), ""]
  return "\n".join(lines + failures_table(rows))


def write_outputs(output_dir: str, rows: list[dict], markdown: str) -> None:
  os.makedirs(output_dir, exist_ok=True)
  to_frame(rows).to_csv(os.path.join(output_dir, "results.csv"), index=False)
  with open(os.path.join(output_dir, "results.md"), "w") as f:
    f.write(markdown.rstrip() + "\n")


def publish(output_dir: str, results_md: str, section: str, lines: list[str],
            rows: list[dict] | None = None) -> str:
  """A study's outputs: results.csv (rows) and results.md in `output_dir`, its section of
  `results_md` (when given), and the markdown on stdout. Returns the markdown."""
  markdown = "\n".join(lines)
  os.makedirs(output_dir, exist_ok=True)
  if rows is not None:
    write_outputs(output_dir, rows, markdown)
  else:
    with open(os.path.join(output_dir, "results.md"), "w") as f:
      f.write(markdown + "\n")
  if results_md:
    update_markdown_section(results_md, section, markdown, asset_dir=output_dir)
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
  """The command that is running, as one could paste it (for the results' provenance): a
  module of this package run with `python -m` is named as such (`python -m research.studies`)."""
  argv0 = sys.argv[0] if sys.argv else ""
  package_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  path = os.path.abspath(argv0) if argv0 else ""
  if path.endswith(".py") and path.startswith(os.path.join(package_root, "research") + os.sep):
    module = os.path.relpath(path, package_root)[:-3].replace(os.sep, ".")
    head = ["python", "-m", module.removesuffix(".__main__")]
  else:
    script = os.path.relpath(argv0) if os.path.exists(argv0) else argv0
    head = ["python", shlex.quote(script)]
  return " ".join(head + [shlex.quote(a) for a in sys.argv[1:]])


def read_metrics(workdir: str, split: str = "train") -> list[dict]:
  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return _metrics(f, split)


def _metrics(lines, split: str) -> list[dict]:
  """The `split` lines of a metrics.jsonl's lines, one per step (the last), by step."""
  import json
  lines = [json.loads(line) for line in lines if line.strip()]
  by_step = {}
  for line in lines:  # runs resumed before metrics.jsonl was trimmed on resume may repeat steps
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
