"""Entry point: `python -m research.main --config=configs/mnist_cnn.py --workdir=DIR`.

Intentionally thin: flags, optional jax.distributed, then train.train_and_evaluate.
Any config field can be overridden, e.g. `--config.learning_rate=3e-4`.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # configs/

from absl import app, flags, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Experiment config file (configs/*.py[:variants]).",
                                lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and results.")
flags.mark_flags_as_required(["config", "workdir"])


class _QuietLibraries:
  """Keeps orbax's and tensorflow's INFO chatter out of the progress log (warnings pass)."""

  def filter(self, record):
    noisy = any(part in record.pathname for part in ("/orbax/", "/tensorflow", "/etils/"))
    return record.levelno >= 30 or not noisy


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  logging.get_absl_handler().addFilter(_QuietLibraries())
  from research import UserError, train
  try:
    train.train_and_evaluate(FLAGS.config, FLAGS.workdir)
  except UserError as e:
    logging.flush()
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  except FloatingPointError as e:
    print(f"error: training diverged: {e}", file=sys.stderr)
    sys.exit(3)


def run():
  app.run(main)


if __name__ == "__main__":
  run()
