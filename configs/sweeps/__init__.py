"""Sweeps as data: each file's get_sweep(arg) returns the grid research/sweeps/cli.py runs."""
