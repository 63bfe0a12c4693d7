"""Dense vs Conv research code: importable pieces, no flags.

  research.models    Flax Linen models looked up by name (mlp, cnn, lcn)
  research.data      TFDS -> uint8 arrays in host memory, with clear errors offline
  research.train     train_and_evaluate(config, workdir) and the pure step functions
  research.parallel  single-device, jit-over-a-mesh and pmap flavours of the steps
  research.main      the absl entry point (thin)
  research.sweeps     the sweep entry point: grid (what to run), executors (Ray tasks or
                     inline), report (tables), evals (test-time variants of finished runs)
"""


class UserError(Exception):
  """Bad input from the user: main prints it as one line and exits non-zero."""
