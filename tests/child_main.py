"""`python -m research.main` with test-only delays, for the tests that signal a running child.

A short run is over in a second once compiled, faster than a test can notice a log line and
send a signal, so the kill tests slow each chunk of steps down; and the stall test needs a peer
that is alive (its heartbeats go on) but stuck where it should take part in the run's end.

  CHILD_CHUNK_DELAY=S           sleep S seconds before each chunk of train steps
  CHILD_STALL_IN_EVALUATE=1     block forever at the first evaluation (the final one, in a run
                                shorter than an epoch)
Neither changes a number the run computes.
"""
import os
import sys
import time


from research import experiment  # noqa: E402

if os.environ.get("CHILD_CHUNK_DELAY"):
  _batch_indices = experiment.batch_indices

  def _slow_batch_indices(*args, **kwargs):
    time.sleep(float(os.environ["CHILD_CHUNK_DELAY"]))
    return _batch_indices(*args, **kwargs)

  experiment.batch_indices = _slow_batch_indices

if os.environ.get("CHILD_STALL_IN_EVALUATE"):

  def _stuck(*args, **kwargs):
    print("child: stalling in evaluate", file=sys.stderr, flush=True)
    while True:
      time.sleep(60)

  experiment.Experiment.evaluate = _stuck

from research import main  # noqa: E402

if __name__ == "__main__":
  main.run()
