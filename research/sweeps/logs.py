"""A Ray task's output in its run's train.log: stdout, stderr (file descriptors 1 and 2, so the
output of C++ libraries too) and the absl log, redirected while the run lasts."""
import contextlib
import os
import sys

from research import cli


@contextlib.contextmanager
def log_to(path: str):
  """Sends this process's stdout, stderr and absl log to `path` (appended) while it lasts."""
  import logging as pylogging
  from absl import logging
  sys.stdout.flush()
  sys.stderr.flush()
  log_file = open(path, "a", buffering=1)
  saved = os.dup(1), os.dup(2)
  os.dup2(log_file.fileno(), 1)
  os.dup2(log_file.fileno(), 2)
  handler = pylogging.StreamHandler(log_file)
  handler.setFormatter(pylogging.Formatter(
      "%(levelname).1s%(asctime)s %(filename)s:%(lineno)d] %(message)s", "%m%d %H:%M:%S"))
  handler.addFilter(cli.QuietLibraries())
  absl_logger = logging.get_absl_logger()
  level, propagate = absl_logger.level, absl_logger.propagate
  absl_logger.addHandler(handler)
  absl_logger.setLevel(pylogging.INFO)
  absl_logger.propagate = False
  try:
    yield log_file
  finally:
    sys.stdout.flush()
    sys.stderr.flush()
    absl_logger.removeHandler(handler)
    absl_logger.setLevel(level)
    absl_logger.propagate = propagate
    os.dup2(saved[0], 1)
    os.dup2(saved[1], 2)
    os.close(saved[0])
    os.close(saved[1])
    log_file.close()
