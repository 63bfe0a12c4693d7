"""Runs an experiment on every worker of a Cloud TPU VM (one host or a pod slice).

  python scripts/launch_tpu.py --tpu=my-tpu --zone=us-central2-b --accelerator_type=v4-32 \
      --config=configs/mnist_cnn.py:tpu --workdir=gs://BUCKET/runs/cnn --dry_run

Steps: first the TPU preflight (research/tpu/preflight.py: the config's train and eval steps
compiled here for `--accelerator_type` with libtpu, no TPU needed), stopping when it fails; then
create the TPU VM unless it exists; copy this checkout (git archive of HEAD) to every worker and
install it with jax[tpu]; start `research.main --distributed` on all workers at once
(`--worker=all`), where jax.distributed finds its peers by itself. `--dry_run` runs the preflight
and prints its report (as `#` lines) and the exact gcloud commands instead of running them. Use a
gs:// workdir on a multi-host slice so every host writes its checkpoint shards to the same place.

Spot capacity that comes back: `--spot` asks for the slice through a queued resource (Cloud TPU's
way to wait for capacity), and `--watch` then keeps the run going: it waits for the slice, starts
the run on every worker, and when the slice is preempted deletes and re-queues it and starts the
same command again (the run resumes from its newest checkpoint in the workdir), at most
`--max_retries` times, one line per event. `--dry_run` prints every command of that loop.

For a GPU host there is no launcher: check the program here first, then run research.main there
(README, "One GPU"):  python -m research.tpu.preflight --config=configs/mnist_cnn.py:gpu --platform=cuda
"""
import os
import shlex
import subprocess
import sys

from absl import app, flags

from research.tpu.slices import LOST, decide

FLAGS = flags.FLAGS
flags.DEFINE_string("tpu", None, "TPU VM name.", required=True)
flags.DEFINE_string("zone", None, "GCP zone, e.g. us-central2-b.", required=True)
flags.DEFINE_string("project", None, "GCP project (default: gcloud's configured one).")
flags.DEFINE_string("accelerator_type", "v4-8", "TPU type for a new VM, e.g. v4-8, v5litepod-16.")
flags.DEFINE_string("runtime_version", "tpu-ubuntu2204-base", "TPU VM software version.")
flags.DEFINE_bool("spot", False, "Ask for a Spot slice through a queued resource (runs resume "
                  "from checkpoints); with --watch, re-queued after a preemption.")
flags.DEFINE_bool("watch", False, "With --spot: wait for the slice, run, and after a preemption "
                  "re-create it and restart the run, up to --max_retries times.")
flags.DEFINE_integer("max_retries", 5, "Re-creations of a preempted slice before --watch gives up.")
flags.DEFINE_integer("poll_seconds", 60, "Seconds between --watch's looks at the slice's state.")
flags.DEFINE_string("gcloud", "gcloud", "The gcloud command.")
flags.DEFINE_string("config", "configs/mnist_cnn.py:tpu", "Config file (and :variants) to run.")
flags.DEFINE_string("workdir", None, "Run directory (gs://... for multi-host).", required=True)
flags.DEFINE_multi_string("override", [], "Extra config overrides, e.g. --override=seed=1.")
flags.DEFINE_string("tfds_data_dir", "", "TFDS data dir on the workers (e.g. gs://BUCKET/tfds).")
flags.DEFINE_string("remote_dir", "dense-vs-conv", "Checkout location in the workers' home.")
flags.DEFINE_bool("dry_run", False, "Run the preflight, print the gcloud commands, run nothing else.")
flags.DEFINE_bool("preflight", True, "Compile the config for --accelerator_type first (research.tpu.preflight).")
flags.DEFINE_integer("preflight_timeout", 1200, "Seconds the preflight may take.")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

ARCHIVE = "/tmp/dense-vs-conv.tar.gz"


def _gcloud(*args, group="tpu-vm"):
  cmd = [FLAGS.gcloud, "compute", "tpus", group, *args, f"--zone={FLAGS.zone}"]
  if FLAGS.project:
    cmd.append(f"--project={FLAGS.project}")
  return cmd


def _ssh_all(command: str):
  return _gcloud("ssh", FLAGS.tpu, "--worker=all", f"--command={command}")


def commands() -> dict[str, list[list[str]]]:
  """The launch as stages of argv lists: create (if missing), copy + install, run."""
  if FLAGS.spot:  # a queued resource named after the node: it waits for Spot capacity
    create = _gcloud("create", FLAGS.tpu, f"--node-id={FLAGS.tpu}",
                     f"--accelerator-type={FLAGS.accelerator_type}",
                     f"--runtime-version={FLAGS.runtime_version}", "--spot",
                     group="queued-resources")
  else:
    create = _gcloud("create", FLAGS.tpu, f"--accelerator-type={FLAGS.accelerator_type}",
                     f"--version={FLAGS.runtime_version}")
  remote = FLAGS.remote_dir
  install = (f"mkdir -p ~/{remote} && tar xzf ~/{ARCHIVE.split('/')[-1]} -C ~/{remote} && "
             f"cd ~/{remote} && pip install -q -e '.[tpu]'")
  env = f"TFDS_DATA_DIR={shlex.quote(FLAGS.tfds_data_dir)} " if FLAGS.tfds_data_dir else ""
  run = (f"cd ~/{remote} && {env}python3 -m research.main "
         f"--config={shlex.quote(FLAGS.config)} --workdir={shlex.quote(FLAGS.workdir)} --distributed"
         + "".join(f" --config.{shlex.quote(o)}" for o in FLAGS.override))
  return {
      "create": [create],
      "copy": [["git", "archive", "--format=tar.gz", f"--output={ARCHIVE}", "HEAD"],
               _gcloud("scp", ARCHIVE, f"{FLAGS.tpu}:~/", "--worker=all"),
               _ssh_all(install)],
      "run": [_ssh_all(run)],
      # the queued resource's state, and its removal before it is asked for again
      "state": [_gcloud("describe", FLAGS.tpu, "--format=value(state.state)",
                        group="queued-resources")],
      "delete": [_gcloud("delete", FLAGS.tpu, "--force", "--quiet", "--async",
                         group="queued-resources")],
  }


def preflight_command() -> list[str]:
  return ([sys.executable, "-m", "research.tpu.preflight", f"--config={FLAGS.config}",
           f"--topology={FLAGS.accelerator_type}"] + [f"--config.{o}" for o in FLAGS.override])


def run_preflight() -> str:
  """The preflight's report (its stdout); exits with its error line when it fails."""
  cmd = preflight_command()
  print(f"# preflight: {shlex.join(cmd)}", flush=True)
  try:
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                          timeout=FLAGS.preflight_timeout)
  except subprocess.TimeoutExpired:
    sys.exit(f"error: the TPU preflight took more than {FLAGS.preflight_timeout} s; "
             "nothing was created (--nopreflight skips it)")
  if proc.returncode:
    lines = [l for l in proc.stderr.splitlines() if l.strip()]
    reason = lines[-1].removeprefix("error: ") if lines else f"exit status {proc.returncode}"
    sys.exit(f"error: TPU preflight for {FLAGS.accelerator_type} failed, nothing was created: "
             f"{reason}")
  return proc.stdout


def _exists() -> bool:
  probe = _gcloud("describe", FLAGS.tpu)
  return subprocess.run(probe, capture_output=True).returncode == 0


def _state(stages) -> str:
  proc = subprocess.run(stages["state"][0], capture_output=True, text=True)
  return proc.stdout.strip().upper() if proc.returncode == 0 else ""


def watch(stages) -> int:
  """The --watch loop (module docstring); returns the exit status."""
  import time
  retries, run_status = 0, None
  if subprocess.run(stages["state"][0], capture_output=True).returncode:  # none yet: ask for it
    print(f"queueing {FLAGS.tpu} ({FLAGS.accelerator_type}, spot)", flush=True)
    subprocess.run(stages["create"][0], check=True)
  while True:
    state = _state(stages)
    action = decide(state, run_status, retries, FLAGS.max_retries)
    if action == "wait":
      time.sleep(FLAGS.poll_seconds)
    elif action == "run":
      print(f"{FLAGS.tpu} is ACTIVE: starting the run on every worker", flush=True)
      run_status = 0
      for cmd in stages["copy"] + stages["run"]:
        run_status = subprocess.run(cmd).returncode
        if run_status:
          break
    elif action == "done":
      print(f"the run finished on {FLAGS.tpu}", flush=True)
      return 0
    elif action == "failed":
      print(f"error: the run failed on a live slice (exit status {run_status}); not retried",
            file=sys.stderr)
      return 1
    elif action == "give_up":
      print(f"error: {FLAGS.tpu} was lost ({state or 'gone'}) {retries + 1} times; giving up "
            f"after {FLAGS.max_retries} re-creations (the workdir keeps its checkpoints)",
            file=sys.stderr)
      return 1
    else:  # recreate
      retries += 1
      print(f"{FLAGS.tpu} was lost ({state or 'gone'}): re-queueing it ({retries} of "
            f"{FLAGS.max_retries}); the run will resume from its checkpoint", flush=True)
      subprocess.run(stages["delete"][0])
      while subprocess.run(stages["state"][0], capture_output=True).returncode == 0:
        time.sleep(FLAGS.poll_seconds)  # until the old one is gone
      subprocess.run(stages["create"][0], check=True)
      run_status = None


def main(argv):
  del argv
  stages = commands()
  if FLAGS.watch and not FLAGS.spot:
    sys.exit("error: --watch re-queues a Spot slice: give --spot too")
  if FLAGS.preflight:
    report = run_preflight()
    print("\n".join(f"# {l}" for l in report.splitlines()[:-1]), flush=True)  # table, not JSON
  if FLAGS.dry_run:
    if FLAGS.watch:
      print(f"# --watch: ask for {FLAGS.tpu} unless its state is known; every "
            f"{FLAGS.poll_seconds} s read its state; when ACTIVE copy, install and run; when "
            f"lost ({', '.join(sorted(LOST - {''}))}) delete, wait until gone and re-queue, "
            f"at most {FLAGS.max_retries} times")
      for stage in ("state", "create", "copy", "run", "delete"):
        for cmd in stages[stage]:
          print(shlex.join(cmd))
      return
    probe = stages["state"][0] if FLAGS.spot else _gcloud("describe", FLAGS.tpu)
    print(f"# create {FLAGS.tpu} unless `{shlex.join(probe)}` finds it")
    for stage in ("create", "copy", "run"):
      for cmd in stages[stage]:
        print(shlex.join(cmd))
    return
  if FLAGS.watch:
    sys.exit(watch(stages))
  if _exists():
    print(f"using the existing TPU VM {FLAGS.tpu}")
  else:
    subprocess.run(stages["create"][0], check=True)
  for cmd in stages["copy"] + stages["run"]:
    print("+", shlex.join(cmd), flush=True)
    if subprocess.run(cmd).returncode:
      sys.exit(f"error: command failed: {shlex.join(cmd)}")


if __name__ == "__main__":
  app.run(main)
