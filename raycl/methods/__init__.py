"""Self-supervised methods, one file each, behind :class:`raycl.methods.base.Method`."""

from __future__ import annotations

from raycl.config import Config, ConfigError
from raycl.methods.base import Method, Progress
from raycl.methods.byol import BYOL
from raycl.methods.moco import MoCo, MoCoV2
from raycl.methods.simclr import SimCLR
from raycl.methods.simclrv2 import SimCLRv2
from raycl.methods.swav import SwAV

REGISTRY: dict[str, type[Method]] = {cls.name: cls
                                     for cls in (SimCLR, SimCLRv2, MoCo, MoCoV2, BYOL, SwAV)}


def build_method(cfg: Config) -> Method:
    """Instantiate the method named by ``cfg.method.name``."""
    try:
        cls = REGISTRY[cfg.method.name]
    except KeyError:
        raise ConfigError("method.name", cfg.method.name, "one of " + ", ".join(REGISTRY)) from None
    return cls(cfg)


__all__ = ["BYOL", "Method", "MoCo", "MoCoV2", "Progress", "REGISTRY", "SimCLR", "SimCLRv2", "SwAV",
           "build_method"]
