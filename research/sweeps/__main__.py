from absl import flags

from research.sweeps import cli

flags.adopt_module_key_flags(cli)  # --help lists the sweep flags
cli.main()
