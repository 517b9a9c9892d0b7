"""Evaluation: one engine (engine.py) under train.py's final numbers
(results.py) and evaluate.py's suites (suites.py), with their sanity
checks, reports, plots and the black-box source model.

Import the modules themselves; this file imports nothing, so that
blackbox.py (which trains a source model) can import training.py, which
imports results.py.
"""
