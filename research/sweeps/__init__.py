"""Sweeps: what to run (grid), how (engine.run_sweep; executors: Ray or inline, one_run,
pinning, logs, progress), what was run (records), how to report it (report, evals), the
learning-rate search (lr_search). `python -m research.sweeps` is the command line (cli)."""
