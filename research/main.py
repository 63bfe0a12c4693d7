"""Entry point: `python -m research.main --config=configs/mnist_cnn.py --workdir=DIR`.

Intentionally thin: flags, optional jax.distributed, then one call into research.train.
Any config field can be overridden, e.g. `--config.learning_rate=3e-4`.

Multi-host: on Cloud TPU VMs pass `--distributed` (JAX finds the coordinator itself); elsewhere
start one process per host with `--coordinator_address=HOST:PORT --num_processes=N
--process_id=I` (docs/tpu.md).
"""
from absl import app, flags, logging
from ml_collections import config_flags

from research import cli

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file(
    "config", None,
    "Experiment config: configs/mnist_cnn.py or configs/mnist_mlp.py, optionally FILE:VARIANTS "
    "with VARIANTS a comma-separated list of debug, runlocal, gpu, tpu. Override any field with "
    "--config.FIELD=VALUE. Optional with --mode=eval (WORKDIR/config.json) and --show_config "
    "(the defaults).", lock_config=True)
FLAGS["config"].default_as_str = None
flags.DEFINE_bool("show_config", False, "Print every config field: its value, what it does and "
                  "its valid values (of --config, of --workdir's run, or the defaults); then exit.")
flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and results.")
flags.DEFINE_enum("mode", "train", ["train", "eval"],
                  "train (resumes from WORKDIR's newest checkpoint) or eval (score a checkpoint).")
flags.DEFINE_integer("checkpoint_step", None, "With --mode=eval: the step to evaluate (default newest).")
flags.DEFINE_bool("distributed", False, "Call jax.distributed.initialize() (auto-detects TPU VMs).")
flags.DEFINE_string("coordinator_address", None, "HOST:PORT of process 0 (multi-process runs).")
flags.DEFINE_integer("num_processes", None, "Number of processes in a multi-process run.")
flags.DEFINE_integer("process_id", None, "This process's index in a multi-process run.")
flags.DEFINE_integer("heartbeat_timeout", 60,
                     "Seconds without a heartbeat after which a multi-process run gives up on a peer.")
flags.DEFINE_string("cpu_collectives", "gloo", "CPU collectives for multi-process CPU runs.")


def _init_distributed():
  if not (FLAGS.distributed or FLAGS.coordinator_address):
    return
  import jax
  if FLAGS.cpu_collectives:
    jax.config.update("jax_cpu_collectives_implementation", FLAGS.cpu_collectives)
  jax.distributed.initialize(
      coordinator_address=FLAGS.coordinator_address, num_processes=FLAGS.num_processes,
      process_id=FLAGS.process_id, heartbeat_timeout_seconds=FLAGS.heartbeat_timeout,
      initialization_timeout=max(FLAGS.heartbeat_timeout, 60))
  logging.info("process %d of %d, %d local / %d global devices", jax.process_index(),
               jax.process_count(), jax.local_device_count(), jax.device_count())


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  logging.get_absl_handler().addFilter(cli.QuietLibraries())
  from configs import common
  from research import UserError, experiment, train
  try:
    config = FLAGS.config
    if config is None and FLAGS.workdir and (FLAGS.mode == "eval" or FLAGS.show_config):
      config = experiment.read_config(FLAGS.workdir)  # the run's own config
    if FLAGS.show_config:
      print(common.describe(config))
      return
    _init_distributed()
    if FLAGS.mode == "eval":
      train.evaluate_checkpoint(config, FLAGS.workdir, FLAGS.checkpoint_step)
    else:
      train.train_and_evaluate(config, FLAGS.workdir)
  except UserError as e:
    cli.fail(str(e))
  except FloatingPointError as e:
    cli.fail(f"training diverged: {e}", code=3)


def _parse_flags(argv):
  argv = cli.parse_flags(argv)
  if not (FLAGS.workdir or FLAGS.show_config):
    cli.fail("flag --workdir must have a value (the run's output directory)")
  if FLAGS.config is None and not FLAGS.show_config and FLAGS.mode == "train":
    cli.fail("flag --config must have a value, e.g. --config=configs/mnist_cnn.py (with "
             "--mode=eval it defaults to WORKDIR's config.json)")
  return argv


def run():
  app.run(main, flags_parser=_parse_flags)


if __name__ == "__main__":
  run()
