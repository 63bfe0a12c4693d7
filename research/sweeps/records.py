"""Run records: the small files of finished runs, kept in one text file beside a study's results.

A study's runs live in --runs_dir, with their checkpoints; on another machine (or once that
folder is deleted) a study that took hours would have to start again.
`save` writes every finished run's small files (config.json, results.json, metrics.jsonl,
model_info.json, train_seconds.json and the cached test-time evaluations in evals/) into one
JSON-lines file, a run a line, sorted by name: a few KB a run, small enough to commit beside
the study's results.csv. `restore` writes them back into a runs dir for the runs it lacks; the
executors then read those runs back as finished (their results.json exists) instead of training
them again, and the studies find every number, curve and evaluation they report.

A restored run has no checkpoints: what needs its params (an evaluation that was not cached, a
run started from it with init_from, load_model) says so in one line; delete that run's folder
to train it again.
"""
import json
import os

FILES = ("config.json", "results.json", "metrics.jsonl", "model_info.json", "train_seconds.json")


def _files(workdir: str) -> dict[str, str] | None:
  """{relative path: text} of a finished run's small files; None when it has not finished."""
  if not os.path.isfile(os.path.join(workdir, "results.json")):
    return None
  out = {}
  for name in FILES:
    path = os.path.join(workdir, name)
    if os.path.isfile(path):
      with open(path) as f:
        out[name] = f.read()
  evals = os.path.join(workdir, "evals")
  if os.path.isdir(evals):
    for name in sorted(os.listdir(evals)):
      if name.endswith(".json"):
        with open(os.path.join(evals, name)) as f:
          out[f"evals/{name}"] = f.read()
  return out


def read(path: str) -> dict[str, dict[str, str]]:
  """{run name: {relative path: text}} of a records file ({} when there is none)."""
  if not path or not os.path.isfile(path):
    return {}
  out = {}
  with open(path) as f:
    for n, line in enumerate(f, 1):
      if line.strip():
        try:
          entry = json.loads(line)
          out[entry["name"]] = entry["files"]
        except (ValueError, KeyError, TypeError):
          raise ValueError(f"{path}, line {n}: not a run record") from None
  return out


def restore(path: str, runs_dir: str, names) -> list[str]:
  """Writes the records of `names` that `runs_dir` lacks (no results.json there) into it.
  Returns the names restored. A run folder that exists without results.json (an unfinished run,
  its checkpoints) is left alone: it resumes from its checkpoints instead. A finished run's folder
  gets the recorded files it lacks (the cached evaluations of another study that shares it)."""
  records, restored = read(path), []
  for name in names:
    workdir = os.path.join(runs_dir, name)
    if name in records and os.path.isfile(os.path.join(workdir, "results.json")):
      _add_missing(workdir, records[name])
    if name not in records or os.path.exists(workdir):
      continue
    tmp = f"{workdir}.restoring.{os.getpid()}"
    for rel, text in records[name].items():
      target = os.path.join(tmp, rel)
      os.makedirs(os.path.dirname(target), exist_ok=True)
      with open(target, "w") as f:
        f.write(text)
    os.replace(tmp, workdir)  # whole or not at all
    restored.append(name)
  return restored


def _add_missing(workdir: str, files: dict[str, str]) -> None:
  for rel, text in files.items():
    target = os.path.join(workdir, rel)
    if not os.path.exists(target):
      os.makedirs(os.path.dirname(target), exist_ok=True)
      tmp = f"{target}.tmp.{os.getpid()}"
      with open(tmp, "w") as f:
        f.write(text)
      os.replace(tmp, target)


def save(path: str, runs_dir: str, names) -> int:
  """Adds (or refreshes) the records of the finished runs among `names`; keeps the others that
  the file holds. Written to a temporary file and renamed: a crash leaves the old file whole.
  Returns the number of runs recorded."""
  records = read(path)
  for name in names:
    files = _files(os.path.join(runs_dir, name))
    if files is not None:
      records[name] = files
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = f"{path}.tmp.{os.getpid()}"
  with open(tmp, "w") as f:
    for name in sorted(records):
      f.write(json.dumps({"name": name, "files": records[name]}, sort_keys=True) + "\n")
  os.replace(tmp, path)
  return len(records)
