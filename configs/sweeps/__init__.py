"""Sweeps as data: each file's get_sweep(arg) returns the grid research.sweeps runs; a file
NAME.py is also the grid of the study research/studies/NAME.py (smoke.py has no study)."""
