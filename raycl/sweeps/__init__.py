"""Sweeps: the papers' ablation grids as Ray Tune experiments (:func:`sweep`), their grid definitions
(:data:`GRIDS`) and their tidy tables (:func:`load_sweep`). Importing this package stays light (no
Ray, no torch) until :func:`sweep` is used."""

from raycl.sweeps.grids import GRIDS, Cell, Grid, get_grid
from raycl.sweeps.plan import PlannedRun, plan
from raycl.sweeps.tables import SweepResult, load_sweep

__all__ = ["GRIDS", "Cell", "Grid", "PlannedRun", "SweepResult", "get_grid", "load_sweep", "plan", "sweep"]


def __getattr__(name: str):
    if name == "sweep":  # lazy: the runner imports Ray Tune and the training stack
        from raycl.sweeps.runner import sweep

        return sweep
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
