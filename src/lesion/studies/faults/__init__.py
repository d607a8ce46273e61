"""Crash faults of neurons and their error bounds b1-b4 (El-Mhamdi et al. 2019).

bounds: Monte Carlo crash errors against the bounds, and the b3 regulariser;
plots: its figures (no torch); cli: its steps.
"""
