"""How a sweep is reported: result rows, mean ± std over seeds, markdown and CSV, plots."""
import os
import shlex
import sys

import numpy as np

RESULT_COLUMNS = ("study", "model", "condition", "seed", "status", "test_accuracy", "test_loss",
                  "train_accuracy", "train_loss", "steps", "num_params", "train_seconds",
                  "run_seconds", "dataset", "error", "workdir")


def result_row(study: str, run, results: dict, workdir: str, condition: str | None = None,
               **extra) -> dict:
  row = {"study": study, "model": run.model, "condition": condition or run.condition,
         "seed": run.seed, "workdir": workdir}
  for k in ("test_accuracy", "test_loss", "train_accuracy", "train_loss", "steps", "num_params",
            "train_seconds", "dataset"):
    row[k] = results.get(k)
  row.update(extra)
  return row


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
  """The command that is running, as one could paste it (for the results' provenance)."""
  if sys.argv and sys.argv[0].endswith(os.path.join("research", "sweep.py")):
    head = ["python", "-m", "research.sweep"]
  else:
    script = os.path.relpath(sys.argv[0]) if os.path.exists(sys.argv[0]) else sys.argv[0]
    head = ["python", shlex.quote(script)]
  return " ".join(head + [shlex.quote(a) for a in sys.argv[1:]])


def read_metrics(workdir: str, split: str = "train") -> list[dict]:
  import json
  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.exists(path):
    return []
  with open(path) as f:
    lines = [json.loads(line) for line in f if line.strip()]
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
