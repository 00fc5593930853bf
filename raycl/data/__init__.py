"""Data: sources, batched augmentations, Ray Data pipelines and a view viewer.

Submodules are imported on demand so that ``import raycl.data`` stays light (no matplotlib, no Ray).
"""

from __future__ import annotations

__all__ = ["show_views"]


def __getattr__(name: str):
    if name == "show_views":
        from raycl.data.show import show_views

        return show_views
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
