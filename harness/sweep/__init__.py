"""Optuna sweeps over the harness's configs: `python -m harness sweep SWEEP.yaml`.

spec.py (the sweep file) -> space.py, objectives.py, engines.py (what it searches, for what,
how) -> storage.py (where the study lives) -> study.py / worker.py (workers claim trials
within the budget) -> trial.py (one trial = one arm run by the experiment runner, pruned
through pruning.py) -> report.py (`report` on a sweep's output folder).
"""
