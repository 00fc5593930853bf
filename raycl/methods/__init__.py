"""Self-supervised methods, one file each, behind :class:`raycl.methods.base.Method`."""

from __future__ import annotations

from raycl.config import Config, ConfigError
from raycl.methods.base import Method
from raycl.methods.simclr import SimCLR

REGISTRY: dict[str, type[Method]] = {cls.name: cls for cls in (SimCLR,)}


def build_method(cfg: Config) -> Method:
    """Instantiate the method named by ``cfg.method.name``."""
    try:
        cls = REGISTRY[cfg.method.name]
    except KeyError:
        raise ConfigError("method.name", cfg.method.name, "one of " + ", ".join(REGISTRY)) from None
    return cls(cfg)


__all__ = ["Method", "REGISTRY", "SimCLR", "build_method"]
