"""A real study's sweep inline vs through Ray on this machine, and what it would take on more.

  python scripts/benchmark_sweep.py [--sweep=configs/sweeps/shuffled.py:quick] [--repeats=2] \
      [--seeds=21,22] [--set num_train_steps=150 ...]

Runs `python -m research.sweeps` on the sweep (with --seeds and --set passed on) with
--executor=inline and with --executor=ray (a local Ray instance started by the sweep), each in a
fresh runs_dir, alternating the order over --repeats rounds (a shared machine gives noisy single
timings; the load average before each is printed). Reported: wall time of each, the ratio
Ray/inline per round, whether every cell of results.csv (test accuracy and loss of every run and
evaluation) is the same bits both ways, Ray's start-up (ray.init, from the sweep's log), its
overhead per run, how many of the Ray runs' compilations came from JAX's persistent cache, the
peak memory of the process tree (sum of RSS: driver, Ray's own processes, workers) and of Ray's
own processes alone. Then an estimate on paper: the measured per-run times scheduled
longest-first on 8 slots (an 8-GPU server, one run per GPU) and on 32 (a 32-node cluster), for
this sweep and for the full study whose per-run train_seconds are in --study_csv. Prints a
markdown report and writes it to OUTPUT_DIR/benchmark_sweep.md (and .json); asserts nothing.
"""
import heapq
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time

from absl import app, flags

from research import machine
from research.sweeps.progress import duration

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

FLAGS = flags.FLAGS
flags.DEFINE_string("sweep", "configs/sweeps/shuffled.py:quick", "Sweep file[:arg] to time.")
flags.DEFINE_integer("repeats", 2, "Rounds of (inline, ray), order alternating.")
flags.DEFINE_list("seeds", [], "Passed on as --seeds (default: the sweep file's).")
flags.DEFINE_multi_string("set", [], "Passed on as --set KEY=VALUE (repeatable).")
flags.DEFINE_string("output_dir", "runs/benchmark_sweep", "Report and the rounds' runs.")
flags.DEFINE_string("study_csv", "docs/studies/shuffled/results.csv",
                    "A full study's results.csv whose train_seconds feed the estimate.")


class TreeMemory:
  """Samples the sum of RSS of a process and all its descendants; Ray's own processes apart."""

  def __init__(self, pid: int, every_s: float = 0.5):
    import psutil
    self.root, self.every_s = psutil.Process(pid), every_s
    self.peak_mb = self.peak_ray_mb = 0.0
    self._stop = threading.Event()
    self._thread = threading.Thread(target=self._loop, daemon=True)
    self._thread.start()

  def _loop(self):
    import psutil
    while not self._stop.is_set():
      try:
        procs = [self.root] + self.root.children(recursive=True)
      except psutil.Error:
        break
      total = ray_own = 0.0
      for p in procs:
        try:
          rss = p.memory_info().rss / 2**20
          name = " ".join(p.cmdline()[:3])
        except psutil.Error:
          continue
        total += rss
        if p.pid != self.root.pid and "ray::" not in name and "ray" in name:
          ray_own += rss  # gcs_server, raylet, monitors, agents: not the workers
      self.peak_mb, self.peak_ray_mb = max(self.peak_mb, total), max(self.peak_ray_mb, ray_own)
      self._stop.wait(self.every_s)

  def stop(self):
    self._stop.set()
    self._thread.join(timeout=5)


def run_sweep(executor: str, workdir: str) -> dict:
  shutil.rmtree(workdir, ignore_errors=True)
  os.makedirs(workdir)
  log_path = os.path.join(workdir, "sweep.log")
  cmd = [sys.executable, "-m", "research.sweeps", f"--sweep={FLAGS.sweep}",
         f"--runs_dir={workdir}/runs", f"--output_dir={workdir}", f"--executor={executor}"]
  cmd += [f"--seeds={','.join(FLAGS.seeds)}"] if FLAGS.seeds else []
  cmd += [f"--set={kv}" for kv in FLAGS.set]
  load = os.getloadavg()[0]
  t0 = time.time()
  with open(log_path, "w") as log:
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    memory = TreeMemory(proc.pid)
    rc = proc.wait(timeout=3600)
  wall = time.time() - t0
  memory.stop()
  text = open(log_path).read()
  if rc:
    sys.exit(f"error: the {executor} sweep failed (exit {rc}); see {log_path}")
  import pandas as pd
  frame = pd.read_csv(os.path.join(workdir, "results.csv"))
  runs = frame[frame["status"].isin(["trained", "resumed"])]
  started = re.search(r"connected in ([\d.]+)s", text)
  cells = {f"{os.path.basename(r.workdir)}|{r.condition}": (r.test_accuracy, r.test_loss)
           for r in frame.itertuples()}  # every run and every evaluation
  hits = [tuple(map(int, m)) for w in runs["workdir"] if os.path.exists(f"{w}/train.log")
          for m in re.findall(r"compilation cache: (\d+) of (\d+)", open(f"{w}/train.log").read())]
  return {"executor": executor, "wall_s": wall, "runs": len(runs), "load_before": load,
          "cells": cells, "cache_hits": sum(h for h, _ in hits),
          "compiles": sum(c for _, c in hits),
          "run_seconds": runs["run_seconds"].tolist(), "train_seconds": runs["train_seconds"].tolist(),
          "ray_start_s": float(started.group(1)) if started else 0.0,
          "peak_tree_mb": memory.peak_mb, "peak_ray_own_mb": memory.peak_ray_mb,
          "test_accuracy": runs["test_accuracy"].tolist()}


def makespan(durations, slots: int) -> float:
  """Longest-first onto the least-loaded slot: the wall time of `durations` on `slots` workers."""
  loads = [0.0] * slots
  for d in sorted(durations, reverse=True):
    heapq.heapreplace(loads, loads[0] + d)
  return max(loads)


def _mean(xs):
  return sum(xs) / len(xs)


def main(argv):
  del argv
  os.makedirs(FLAGS.output_dir, exist_ok=True)
  rounds = []
  for r in range(FLAGS.repeats):
    order = ("inline", "ray") if r % 2 == 0 else ("ray", "inline")
    for executor in order:
      res = run_sweep(executor, os.path.abspath(os.path.join(FLAGS.output_dir, f"r{r}-{executor}")))
      res["round"] = r
      rounds.append(res)
      print(f"round {r} {executor}: {res['wall_s']:.1f} s, {res['runs']} runs, peak "
            f"{res['peak_tree_mb']:.0f} MB, load average before {res['load_before']:.2f}",
            flush=True)
  inline = [x for x in rounds if x["executor"] == "inline"]
  ray = [x for x in rounds if x["executor"] == "ray"]
  differ = sorted({k for a in inline for b in ray for k in set(a["cells"]) | set(b["cells"])
                   if a["cells"].get(k) != b["cells"].get(k)})
  command = " ".join([f"python scripts/benchmark_sweep.py --sweep={FLAGS.sweep}",
                      f"--repeats={FLAGS.repeats}"] + (
      [f"--seeds={','.join(FLAGS.seeds)}"] if FLAGS.seeds else []) + [
      f"--set {kv}" for kv in FLAGS.set])
  lines = [f"Sweep `{FLAGS.sweep}`: `{command}` on {os.cpu_count()} CPUs of "
           f"{machine.cpu_name()}, shared with other jobs (load average before each sweep in "
           "the table); rounds alternate the order.", "",
           "| round | executor | wall s | load before | runs | sum of run s | peak RSS of the tree "
           "MB | Ray's own processes MB | ray.init s |", "|---|---|---|---|---|---|---|---|---|"]
  for x in rounds:
    lines.append(f"| {x['round']} | {x['executor']} | {x['wall_s']:.1f} | "
                 f"{x['load_before']:.2f} | {x['runs']} | "
                 f"{sum(x['run_seconds']):.1f} | {x['peak_tree_mb']:,.0f} | "
                 f"{x['peak_ray_own_mb']:,.0f} | {x['ray_start_s']:.1f} |")
  ratios = [b["wall_s"] / a["wall_s"] for a, b in zip(inline, ray)]
  per_run = [(b["wall_s"] - a["wall_s"] - b["ray_start_s"]) / b["runs"] for a, b in zip(inline, ray)]
  cached = sum(x["cache_hits"] for x in ray), sum(x["compiles"] for x in ray)
  lines += ["", f"Ray / inline wall time per round: {', '.join(f'{q:.2f}x' for q in ratios)} "
            f"(mean {_mean(ratios):.2f}x). Cells of results.csv (test accuracy and loss of "
            f"{len(inline[0]['cells'])} runs and evaluations) the same bits through Ray as inline "
            f"in every round: {'yes' if not differ else 'NO: ' + ', '.join(differ)}. "
            f"Compilations of the Ray runs read from the persistent cache: {cached[0]} of "
            f"{cached[1]}. Ray start-up (ray.init): "
            f"{_mean([x['ray_start_s'] for x in ray]):.1f} s; overhead per run beyond it "
            f"(wall difference less start-up, over {ray[0]['runs']} runs): "
            f"{', '.join(f'{p:+.1f} s' for p in per_run)}; peak memory of Ray's own processes "
            f"{_mean([x['peak_ray_own_mb'] for x in ray]):,.0f} MB (sum of RSS; the object store is "
            "capped at 256 MB of /dev/shm)."]
  # On paper: measured per-run wall times (in their workers), scheduled onto more slots.
  run_s = ray[-1]["run_seconds"]
  start = _mean([x["ray_start_s"] for x in ray])
  fixed = _mean([a - b for a, b in zip(ray[-1]["run_seconds"], ray[-1]["train_seconds"])])
  lines += ["", "Estimate on paper (not measured): the per-run wall times measured above "
            "(in their Ray workers, on the CPU above) scheduled longest-first, plus Ray's "
            "start-up; a GPU would shorten every run by a factor not measured here.", "",
            "| sweep | runs | here, 1 at a time | 8-GPU server (8 at a time) | 32-node cluster "
            "(32 at a time) |", "|---|---|---|---|---|"]
  lines.append(f"| `{FLAGS.sweep}` | {len(run_s)} | {sum(run_s) + start:.0f} s | "
               f"{makespan(run_s, 8) + start:.0f} s | {makespan(run_s, 32) + start:.0f} s |")
  study_csv = os.path.join(ROOT, FLAGS.study_csv)
  if os.path.exists(study_csv):
    import pandas as pd
    study = pd.read_csv(study_csv)
    study = study[study["eval"].isna()] if "eval" in study.columns else study
    full = (study["train_seconds"] + fixed).tolist()  # + data, compile-free set-up, evaluation
    groups = study.groupby(["model", "condition"])["train_seconds"].mean() + fixed
    many = [t for t in groups for _ in range(50)]
    for label, durations in ((f"full study (`{FLAGS.study_csv}`)", full),
                             ("its 6 (model, condition) cells x 50 seeds", many)):
      lines.append(f"| {label} | {len(durations)} | {duration(sum(durations) + start)} | "
                   f"{duration(makespan(durations, 8) + start)} | "
                   f"{duration(makespan(durations, 32) + start)} |")
    lines += ["", f"Full-study run times: its train_seconds plus {fixed:.1f} s per run of "
              "set-up outside the training loop (data, model, evaluation, checkpoints) measured "
              "above."]
  text = "\n".join(lines)
  print(text)
  with open(os.path.join(FLAGS.output_dir, "benchmark_sweep.md"), "w") as f:
    f.write(text + "\n")
  with open(os.path.join(FLAGS.output_dir, "benchmark_sweep.json"), "w") as f:
    json.dump(rounds, f, indent=2)


if __name__ == "__main__":
  app.run(main)
