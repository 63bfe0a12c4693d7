"""python -m research.studies NAME [flags]: runs a study; `... verdict [flags]` writes the verdict.

  python -m research.studies shuffled --output_dir=docs/studies/shuffled --runs_dir=runs/harder
      [--seeds=0,1] [--set key=value] [--executor=ray|inline] [--records=FILE] [--results_md=MD]
  python -m research.studies params --output_dir=docs/studies/params --image_shape=32,32,3
  python -m research.studies verdict     # the same as python -m research.studies.verdict

The flags are research.sweeps.cli's, plus a study's own (its OPTIONS); each becomes an argument
of the study's run(). Exit status as `python -m research.sweeps`.
"""
import inspect
import sys

from absl import flags

from research import UserError, studies
from research.sweeps import cli

FLAGS = flags.FLAGS
flags.adopt_module_key_flags(cli)  # --help lists the sweep flags
RENAMED = {"overrides": "set"}  # run_sweep's argument -> its flag


def usage() -> str:
  return ("usage: python -m research.studies NAME [flags] (--help lists them) | verdict [flags]"
          f"\nstudies: {', '.join(studies.names())}")


def define_options(module) -> None:
  """absl flags for the study's OPTIONS ({argument: (default, help)})."""
  for key, (default, text) in getattr(module, "OPTIONS", {}).items():
    define = {bool: flags.DEFINE_bool, int: flags.DEFINE_integer,
              float: flags.DEFINE_float}.get(type(default), flags.DEFINE_string)
    define(key, default, text)


def arguments(name: str, module) -> dict:
  """The flags as the study's run() arguments; a flag given that it does not take is an error."""
  params = inspect.signature(module.run).parameters
  takes_any = any(p.kind == p.VAR_KEYWORD for p in params.values())
  given = {**cli.sweep_arguments(), "results_md": FLAGS.results_md,
           **{k: FLAGS[k].value for k in getattr(module, "OPTIONS", {})}}
  out = {}
  for key, value in given.items():
    if key in params or takes_any:
      out[key] = value
    elif FLAGS[RENAMED.get(key, key)].present:
      raise UserError(f"the {name} study takes no --{RENAMED.get(key, key)}")
  return out


def main(argv=None):
  argv = list(sys.argv if argv is None else argv)
  name = argv[1] if len(argv) > 1 else ""
  if name == "verdict":
    from research.studies import verdict
    return verdict.main([f"{argv[0]} verdict"] + argv[2:])
  if not name or name.startswith("-"):
    print(usage(), file=sys.stderr if name not in ("-h", "--help", "--helpfull") else sys.stdout)
    sys.exit(0 if name in ("-h", "--help", "--helpfull") else 2)
  try:
    module = studies.load(name)
  except UserError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  define_options(module)
  cli.run_app(lambda: module.run(**arguments(name, module)), argv=[argv[0]] + argv[2:])


if __name__ == "__main__":
  main()
