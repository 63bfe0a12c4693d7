"""Sweeps: what to run (grid), how (executors: Ray or inline), what was run (records), how to
report it (report, evals). `python -m research.sweeps` is the command line."""
