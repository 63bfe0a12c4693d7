"""Dense vs Conv research code: importable pieces, no flags (docs/architecture.md).

The core: main (the absl entry point), experiment (what a run is: model, program, data, state),
train (the loop), steps, parallel, models, data, transforms, equivalence, checkpoint, metrics,
watchdog, machine, cli. The other parts, each a package: research.cpu (CPU speed; reached only
through models.conv_block), research.sweeps (grids, executors, records, reports),
research.studies (one module per study, the verdict), research.tpu (slices, preflight).
"""
from research import machine

machine.fix_xla_threads()  # same bits on any number of cores (docs/runs.md, Determinism)
machine.unroll_threefry_on_cpu()  # random draws compile faster, same bits (docs/performance.md)


class UserError(Exception):
  """Bad input from the user: main prints it as one line and exits non-zero."""
