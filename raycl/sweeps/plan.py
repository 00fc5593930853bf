"""From a grid to the runs of a sweep: cells × seeds, each one flat dict of overrides, or a reason
why the preset cannot run it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from raycl.checks import ConfigError
from raycl.config import from_overrides
from raycl.sweeps.grids import Cell, Grid


@dataclass(frozen=True)
class PlannedRun:
    """One trial of a sweep: a grid cell at one seed."""

    cell: int  # index of the cell in the grid at this preset
    seed: int
    spec: Cell
    overrides: Mapping[str, Any]  # the run, as raycl.config.from_overrides takes it
    skip: str | None = None  # why the preset cannot run this cell (then it is not run)

    @property
    def key(self) -> str:
        return f"c{self.cell:03d}-s{self.seed}"

    def describe(self) -> str:
        shown = {**self.spec.labels} or dict(self.spec.values)
        text = ", ".join(f"{k}={v}" for k, v in shown.items())
        return f"{self.key}  {text}" + (f"  [skipped: {self.skip}]" if self.skip else "")


def seed_list(seeds: int | Sequence[int]) -> list[int]:
    """``3`` means seeds 0, 1, 2; a sequence is taken as it is."""
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        if seeds < 1:
            raise ValueError(f"seeds = {seeds!r}: at least 1")
        return list(range(seeds))
    out = [int(s) for s in seeds]
    if not out or len(set(out)) != len(out) or min(out) < 0:
        raise ValueError(f"seeds = {seeds!r}: distinct integers >= 0, at least one")
    return out


def plan(grid: Grid, preset: str, seeds: int | Sequence[int] = 1,
         overrides: Mapping[str, Any] | None = None,
         only: Mapping[str, Sequence[Any]] | None = None) -> list[PlannedRun]:
    """Every (cell, seed) of ``grid`` at ``preset``; user ``overrides`` apply to every cell and may
    not set a key the grid sweeps. ``only`` keeps a slice: the cells whose label or value of each
    key is one of the given ones (``{"first": ["crop", "color"], "second": ["crop", "color"]}``)."""
    overrides = dict(overrides or {})
    every = grid.cells(preset)
    cells = [c for c in every if _in_slice(c, only or {})]
    if not cells:
        raise ValueError(f"no cell of grid {grid.name!r} is in the slice {dict(only or {})}")
    swept = {k for c in cells for k in c.values} | {"train.seed"}
    clash = sorted(swept & set(overrides))
    if clash:
        raise ConfigError(clash[0], overrides[clash[0]], f"not set by hand in grid {grid.name!r}, "
                          f"which sweeps {', '.join(sorted(swept))}")
    runs = []
    for cell in cells:
        i = every.index(cell)  # the cell's place in the whole grid names it
        for seed in seed_list(seeds):
            flat = {"preset": preset, "method": grid.method, **grid.base,
                    **grid.presets.get(preset, {}), **overrides, **cell.values, "train.seed": seed}
            runs.append(PlannedRun(i, seed, cell, flat, _why_not(flat)))
    return runs


def _in_slice(cell: Cell, only: Mapping[str, Sequence[Any]]) -> bool:
    fields = {**cell.values, **cell.labels}
    for key, allowed in only.items():
        if key not in fields:
            raise ValueError(f"cannot slice on {key!r}: the grid's cells have {', '.join(fields)}")
        if str(fields[key]) not in {str(a) for a in allowed}:
            return False
    return True


def _why_not(flat: Mapping[str, Any]) -> str | None:
    """Why the run cannot go ahead at its preset, or None."""
    try:
        cfg = from_overrides(flat)
    except ConfigError as exc:
        return str(exc)
    d, batch = cfg.data, cfg.train.batch_size
    if d.num_images is not None and batch > int(d.num_images * (1 - d.val_fraction)):
        return (f"train.batch_size = {batch} is more than the {int(d.num_images * (1 - d.val_fraction))} "
                "training images of this preset")
    return None
