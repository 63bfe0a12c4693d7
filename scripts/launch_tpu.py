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

For a GPU host there is no launcher: check the program here first, then run research.main there
(README, "One GPU"):  python -m research.tpu.preflight --config=configs/mnist_cnn.py:gpu --platform=cuda
"""
import os
import shlex
import subprocess
import sys

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_string("tpu", None, "TPU VM name.", required=True)
flags.DEFINE_string("zone", None, "GCP zone, e.g. us-central2-b.", required=True)
flags.DEFINE_string("project", None, "GCP project (default: gcloud's configured one).")
flags.DEFINE_string("accelerator_type", "v4-8", "TPU type for a new VM, e.g. v4-8, v5litepod-16.")
flags.DEFINE_string("runtime_version", "tpu-ubuntu2204-base", "TPU VM software version.")
flags.DEFINE_bool("spot", False, "Create a Spot (preemptible) VM; runs resume from checkpoints.")
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


def _gcloud(*args):
  cmd = ["gcloud", "compute", "tpus", "tpu-vm", *args, f"--zone={FLAGS.zone}"]
  if FLAGS.project:
    cmd.append(f"--project={FLAGS.project}")
  return cmd


def _ssh_all(command: str):
  return _gcloud("ssh", FLAGS.tpu, "--worker=all", f"--command={command}")


def commands() -> dict[str, list[list[str]]]:
  """The launch as stages of argv lists: create (if missing), copy + install, run."""
  create = _gcloud("create", FLAGS.tpu, f"--accelerator-type={FLAGS.accelerator_type}",
                   f"--version={FLAGS.runtime_version}")
  if FLAGS.spot:
    create.append("--spot")
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


def main(argv):
  del argv
  stages = commands()
  if FLAGS.preflight:
    report = run_preflight()
    print("\n".join(f"# {l}" for l in report.splitlines()[:-1]), flush=True)  # table, not JSON
  if FLAGS.dry_run:
    print(f"# create {FLAGS.tpu} unless `{shlex.join(_gcloud('describe', FLAGS.tpu))}` finds it")
    for stage in ("create", "copy", "run"):
      for cmd in stages[stage]:
        print(shlex.join(cmd))
    return
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
