"""Writes docs/verdict.md: every claim of the two seed documents, its verdict, and the measured
numbers with their 95% intervals, from the studies' result files (nothing typed by hand); and
the answer paragraph of README.md, between its answer markers, from the same files.

  python -m research.studies.verdict [--studies_dir docs/studies] [--output docs/verdict.md] \
      [--readme README.md]

Each study module says what it judges (`claims(results)`, `notes(results)`: research/studies);
this module gathers them in order. A missing result file is an error (one line naming it and
the command that writes it; exit 1): a verdict is never drawn from a study that did not run.
Each verdict follows the rule printed under it.
"""
import dataclasses
import json
import os
import sys

from research import studies
from research.studies import _rules
from research.sweeps import records, report

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SEED_1 = "Can Dense and Conv2D layers perform equivalent functions? (seed document 1)"
SEED_2 = "What Dense \"sees\" in an image (seed document 2)"
ANSWER_BEGIN = "<!-- answer:begin (written by python -m research.studies.verdict) -->"
ANSWER_END = "<!-- answer:end -->"
ANCHORS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "anchors.json")
ALPHA = 0.05  # the family-wise error rate of the verdict's tests (Holm)
MARGINS = {3: 0.005, 8: 0.01}  # equivalence margins (fractions) of claims 3 and 8
PLURAL = {"holds": "hold", "holds in part": "hold in part", "does not hold": "do not hold"}
VERDICTS = ("holds", "holds in part", "not contradicted", "undetermined", "does not hold",
            "not judged (under-trained)")


@dataclasses.dataclass
class Claim:
  """A claim of the seeds: `order` places it on the page (the seeds' order). A study gives its
  evidence; the verdict and its rule are decided in research/studies/_rules.py for the claims it
  judges (1-9), and only a claim it has no rule for (another study's) brings its own."""
  order: float
  source: str
  quote: str
  verdict: str = ""  # holds | holds in part | does not hold | ... (VERDICTS)
  evidence: list[str] = dataclasses.field(default_factory=list)
  rule: str = ""


class Missing(Exception):
  pass


class Results:
  """The studies' result files under `studies_dir`, read when first asked for; a missing one
  raises Missing with the command that writes it."""

  def __init__(self, studies_dir: str):
    self.studies_dir = studies_dir
    self._cache = {}

  def path(self, study: str, name: str) -> str:
    path = os.path.join(self.studies_dir, study, name)
    if not os.path.isfile(path):
      raise Missing(f"{path} is missing: run `{studies.writer(study)} ...` first (see "
                    "docs/results.md)")
    return path

  def summary(self, study: str) -> dict:
    if (study, "summary") not in self._cache:
      with open(self.path(study, "summary.json")) as f:
        self._cache[study, "summary"] = json.load(f)
    return self._cache[study, "summary"]

  def optional_summary(self, study: str) -> dict | None:
    """A study's summary.json, or None when it has not run (a study the verdict can do without)."""
    if not os.path.isfile(os.path.join(self.studies_dir, study, "summary.json")):
      return None
    return self.summary(study)

  def csv(self, study: str):
    import pandas as pd
    if (study, "csv") not in self._cache:
      self._cache[study, "csv"] = pd.read_csv(self.path(study, "results.csv"))
    return self._cache[study, "csv"]

  def acc(self, study: str, model: str, condition: str):
    """The trained runs' test accuracies of a cell (no test-time evaluations)."""
    f = self.csv(study)
    sel = f[(f["model"] == model) & (f["condition"] == condition) & (f["status"] != "eval")]
    return sel["test_accuracy"].to_numpy(float)

  def cell_info(self, study: str) -> dict:
    """{(model, condition): {marker, budget, rate, n, mean, ci95}} of a study's trained cells,
    from results.csv and the run records (runs.jsonl: each run's config and test curve)."""
    if (study, "cells") not in self._cache:
      frame = self.csv(study)
      trained = frame[frame["status"] != "eval"]
      runs = records.read(os.path.join(self.studies_dir, study, "runs.jsonl"))
      curves = report.learning_curves(trained.to_dict("records"), "test", runs)
      markers = report.under_trained_cells(curves) if len(curves) else {}
      out = {}
      how = {(c.get("sweep_model"), c.get("condition")): c["rate_how"]
             for c in (self.optional_summary(study) or {}).get("cells", []) if "rate_how" in c}
      for (model, condition), cell in trained.groupby(["model", "condition"], sort=False):
        name = os.path.basename(os.path.normpath(cell["workdir"].iloc[0]))
        config = json.loads(runs[name]["config.json"]) if name in runs else {}
        mean, half = report.t_interval(cell["test_accuracy"])
        out[model, condition] = {"marker": markers.get((model, condition)), "n": len(cell),
                                 "mean": mean, "ci95": half, "budget": _rules.budget(config, cell),
                                 "rate": _rules.rate(config, cell, how.get((model, condition)))}
      self._cache[study, "cells"] = out
    return self._cache[study, "cells"]


def anchors(path: str = "") -> dict:
  """The external numbers (research/studies/anchors.json, or `path`); every anchor must cite
  its source."""
  path = path or ANCHORS
  with open(path) as f:
    found = {k: v for k, v in json.load(f).items() if not k.startswith("_")}
  for name, anchor in found.items():
    if not anchor.get("source") or not anchor.get("rows"):
      raise ValueError(f"{path}: anchor {name!r} needs a 'source' and its 'rows'")
  return found


def pct(mean, half=float("nan")):
  return report.fmt_interval(mean, half) + "%"


def pp(d):
  return report.fmt_diff(d["diff"], d["low"], d["high"]) + " pp"


def cell(summary, model, condition):
  for c in summary["cells"]:
    if c["model"] == model and c["condition"] == condition:
      return c
  raise Missing(f"no {model} / {condition} cell in the study's summary.json (rerun the study)")


def gap(summary, a, b, condition):
  for g in summary["gaps"]:
    if (g["a"], g["b"], g["condition"]) == (a, b, condition):
      return g
  raise Missing(f"no {a} − {b} on {condition} in the harder study's summary.json")


def claims(results: Results) -> list[Claim]:
  """Every registered study's claims, in the seeds' order, as the studies gather them (their
  evidence); `judge` decides the verdicts."""
  found = []
  for name in studies.names():
    module = studies.load(name)
    if hasattr(module, "claims"):
      found += module.claims(results)
  return sorted(found, key=lambda c: c.order)


def judge(found: list[Claim], results: Results):
  """Each claim's verdict from the family of tests (research/studies/_rules.py); external
  numbers from anchors.json. Returns the family."""
  tests = _rules.judge(found, results)
  zhang = anchors()["zhang2017_cifar10"]
  for claim in found:
    if claim.order == 7:
      claim.evidence.append(
          f"CIFAR-10 (not in the offline data; {zhang['source']}; {zhang['budget']}): " +
          "; ".join(f"{setting}: " + ", ".join(f"{k} {v}%" for k, v in row.items())
                    for setting, row in zhang["rows"].items()) + f" ({zhang['taken']}).")
  return tests


def notes(results: Results) -> list[str]:
  """The paragraphs after the claims: the studies' notes and the seeds' Keras runs, in order."""
  parts = []
  for name in studies.names():
    module = studies.load(name)
    if hasattr(module, "notes"):  # the anchors are this module's (anchors.json), not a study's
      parts += module.notes(results)
  paper = anchors()["mnist1d_paper"]
  parts.append((10, ["", "## External anchors", "", f"MNIST-1D's paper ({paper['source']}; "
                     f"{paper['budget']}), test accuracy, mean ± std: " + "; ".join(
                         f"{cond}: " + ", ".join(f"{k} {v[0]} ± {v[1]}%" for k, v in row.items())
                         for cond, row in paper["rows"].items()) +
                     ". This project's runs of its recipe: docs/studies/mnist1d (when run)."]))
  parts.append((15, keras_anchor(os.path.dirname(results.studies_dir))))
  return [line for _, lines in sorted(parts, key=lambda p: p[0]) for line in lines]


def keras_anchor(docs_dir: str) -> list[str]:
  """The seeds' own Keras models on MNIST, from docs/benchmark/benchmark.json when it exists."""
  path = os.path.join(docs_dir, "benchmark", "benchmark.json")
  if not os.path.isfile(path):  # the seeds' own Keras code, run by scripts/benchmark.py
    return []
  with open(path) as f:
    b = json.load(f)
  runs = [(m, b[m]["keras"], b[m]["project"]) for m in ("cnn", "mlp") if m in b]
  return ["", "The seeds' own Keras models on MNIST, trained by `scripts/benchmark.py` "
          f"(batch 128, Adam 1e-3, {b['epochs']} epochs, one seed; the project's models "
          "beside them in the same run): " + "; ".join(
              f"{m.upper()} Keras {100 * k['final_accuracy']:.2f}%, this project "
              f"{100 * p['final_accuracy']:.2f}%" for m, k, p in runs) + "."]


def render(found: list[Claim], after: list[str], tests=(), cells=()) -> str:
  counts = {v: sum(1 for c in found if c.verdict == v) for v in VERDICTS}
  usable = sum(t.usable for t in tests)
  lines = ["# Verdict: the seeds' claims, measured", "",
           "Written by `python -m research.studies.verdict` from the studies' result files in "
           "docs/studies/ (each names the command that wrote it) and the external numbers of "
           "research/studies/anchors.json (each with its source); no number on this page is "
           "typed by hand. Cells: mean ± 95% Student t interval over seeds. Each verdict rests "
           f"on the tests listed under it: together they are one family of {usable} tests, "
           f"corrected by Holm's procedure at a family-wise error rate of {100 * ALPHA:.0f}% "
           "(Welch tests of differences; TOST with a stated margin for claims of no "
           "difference; one-sample t tests of a mean against a threshold). A cell still rising by more than its own interval over the last 20% "
           "of its training is under-trained and carries no verdict. The intervals in the "
           "evidence lines and in the notes after the claims are uncorrected, each at 95%.", "",
           f"Of {len(found)} claims: " + ", ".join(
               f"{n} {PLURAL.get(v, v) if n > 1 else v}" for v, n in counts.items() if n) +
           ".", "", "| # | claim | verdict |", "|---|---|---|"]
  for i, c in enumerate(found, 1):
    short = c.quote if len(c.quote) < 90 else c.quote[:87] + "..."
    lines.append(f"| {i} | {short} | **{c.verdict}** |")
  for i, c in enumerate(found, 1):
    lines += ["", f"## {i}. {c.verdict}", "", f"> {c.quote}", "", f"*{c.source}*", ""]
    lines += [f"- {e}" for e in c.evidence]
    lines += ["", f"Rule: {c.rule}"]
  if cells:
    lines += ["", "## The cells the tests use", "", "Each with its budget and how its learning "
              "rate was set; 'under-trained': the mean rise of test accuracy over the last 20% "
              "of training (linear between evaluations) against the cell's 95% half-width.", "",
              *cells]
  return "\n".join(lines + after) + "\n"


def update_readme(path: str, text: str, log=print) -> bool:
  """Replaces the lines between README's answer markers with `text`; says so in one line and
  changes nothing when the markers are absent. Returns whether it wrote."""
  old = open(path).read() if os.path.isfile(path) else ""
  lines = old.split("\n")
  if ANSWER_BEGIN not in lines or ANSWER_END not in lines:
    log(f"{path}: no answer markers ({ANSWER_BEGIN} ... {ANSWER_END}); answer not written")
    return False
  begin, end = lines.index(ANSWER_BEGIN), lines.index(ANSWER_END)
  if end < begin:
    log(f"{path}: the answer markers are out of order; answer not written")
    return False
  new = "\n".join(lines[:begin + 1] + text.rstrip("\n").split("\n") + lines[end:])
  if new != old:
    _write(path, new)
  return True


def _write(path: str, text: str) -> None:
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    f.write(text)
  os.replace(tmp, path)


def write(studies_dir: str, output: str, readme: str = "", log=print) -> list[Claim]:
  """Writes the verdict page (and the README's answer when `readme` is given); raises Missing
  before writing anything when a result file is missing."""
  results = Results(studies_dir)
  found = claims(results)
  tests = judge(found, results)
  page = render(found, notes(results), tests, _rules.cells_table(results, tests))
  from research.studies import _answer
  text = _answer.answer(results) if readme else ""
  _write(output, page)
  log(f"wrote {output}: " + ", ".join(f"{i}. {c.verdict}" for i, c in enumerate(found, 1)))
  if readme and update_readme(readme, text, log):
    log(f"wrote the answer in {readme}")
  return found


def main(argv=None):
  """`python -m research.studies.verdict [flags]` (also `python -m research.studies verdict`)."""
  from absl import app, flags
  main_module = {"module_name": sys.argv[0]}  # --help lists the flags of the program run
  flags.DEFINE_string("studies_dir", os.path.join(ROOT, "docs", "studies"),
                      "Where the studies wrote their outputs.", **main_module)
  flags.DEFINE_string("output", os.path.join(ROOT, "docs", "verdict.md"), "The page to write.",
                      **main_module)
  flags.DEFINE_string("readme", os.path.join(ROOT, "README.md"), "The README whose answer "
                      "paragraph (between its answer markers) is rewritten; '' for none.",
                      **main_module)
  FLAGS = flags.FLAGS

  def main_(args):
    if len(args) > 1:
      print(f"error: unexpected arguments: {' '.join(args[1:])}", file=sys.stderr)
      sys.exit(2)
    try:
      write(FLAGS.studies_dir, FLAGS.output, FLAGS.readme)
    except Missing as e:
      print(f"error: {e}", file=sys.stderr)
      sys.exit(1)

  app.run(main_, argv=argv)


if __name__ == "__main__":
  from research.studies import verdict  # one copy of the module: the studies import it too
  verdict.main()
