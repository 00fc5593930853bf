"""The :class:`Config` of a run: its sections, conversions, overrides and derived values."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field, fields
from typing import Any, Mapping

from raycl import plugins
from raycl.checks import ConfigError, coerce, parse_value
from raycl.config.keys import resolve_key
from raycl.config.sections import (AUTO_FIELDS, SECTION_CLASSES, AugmentConfig, DataConfig, EvalConfig,
                                   MethodConfig, ModelConfig, OptimConfig, TrainConfig)
from raycl.config.validate import validate


@dataclass
class Config:
    """A whole raycl run."""

    method: MethodConfig = field(default_factory=MethodConfig)
    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    storage_path: str = "raycl_results"
    name: str | None = None  # run name (default: method-preset-timestamp)
    preset: str | None = None  # the preset it started from (set by raycl.config.preset)
    # modules or .py files imported first by every process of the run (raycl.plugins): methods and
    # recipes of the user's own
    plugins: tuple = ()

    # ----------------------------------------------------------------- conversions
    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"method": self.method.to_dict()}
        for name in SECTION_CLASSES:
            out[name] = dataclasses.asdict(getattr(self, name))
        out.update(storage_path=self.storage_path, name=self.name, preset=self.preset,
                   plugins=list(self.plugins))
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Config":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(unknown[0], d[unknown[0]], "an existing field of Config: " + ", ".join(known))
        kwargs: dict[str, Any] = {"plugins": plugins.load(d.get("plugins"))}  # first: they add names
        for name, value in d.items():
            if name == "method":
                kwargs[name] = value if isinstance(value, MethodConfig) else MethodConfig.from_dict(value)
            elif name in SECTION_CLASSES:
                kwargs[name] = (value if dataclasses.is_dataclass(value)
                                else _section_from_dict(name, SECTION_CLASSES[name], value))
            elif name != "plugins":
                kwargs[name] = value
        return cls(**kwargs)

    @classmethod
    def from_stored(cls, d: Mapping[str, Any]) -> "Config":
        """A configuration read from a file someone may have handed over (a checkpoint's): the
        plugins it names are not imported, so that opening it cannot run code; those this process
        imported itself (``--plugin``) stand in for them."""
        return cls.from_dict({**d, "plugins": list(plugins.loaded())})

    def flat(self) -> dict[str, Any]:
        """``{"optim.lr": 0.3, ...}``: one entry per leaf field (handy for result tables)."""
        out: dict[str, Any] = {}
        for section, value in self.to_dict().items():
            if isinstance(value, dict):
                out.update({f"{section}.{k}": v for k, v in value.items()})
            else:
                out[section] = value
        return out

    def override(self, overrides: Mapping[str, Any]) -> "Config":
        """A copy with ``overrides`` applied: dotted keys (``"optim.lr"``), unique leaf names
        (``"epochs"``) or section dicts (``optim={"lr": 0.1}``).

        A new method (``"method.name"`` or ``"method"``) is applied first and starts from its own
        option defaults (:func:`raycl.config.preset` gives a method's paper defaults at a scale);
        the other ``method.*`` keys are then checked against that method's options."""
        flat = _flatten(overrides)
        if "preset" in flat:
            raise ConfigError("preset", flat["preset"], "where a configuration starts, not an override: "
                              "raycl.config.preset(...) or from_overrides({'preset': ...})")
        d = self.to_dict()
        if "plugins" in flat:  # first: they may register the method named below
            d["plugins"] = list(plugins.load(flat.pop("plugins")))
        method = flat.pop("method.name", d["method"]["name"])
        if method != d["method"]["name"]:
            d["method"] = {"name": method}
        MethodConfig(method)  # an unknown method fails here, before its keys are resolved
        for key, value in flat.items():
            path = resolve_key(key, method)
            if "." in path:
                section, _, leaf = path.partition(".")
                d[section][leaf] = value
            else:
                d[path] = value
        return Config.from_dict(d)

    # ----------------------------------------------------------------- derived values
    @property
    def local_batch_size(self) -> int:
        return self.train.batch_size // self.train.workers

    def effective_lr(self) -> float:
        """Peak learning rate after batch scaling (SimCLR: lr × B/256; sqrt: lr × sqrt(B))."""
        b = self.train.batch_size
        if self.optim.lr_scaling == "linear":
            return self.optim.lr * b / 256
        if self.optim.lr_scaling == "sqrt":
            return self.optim.lr * math.sqrt(b)
        return self.optim.lr

    def validate(self) -> "Config":
        """Raise :class:`ConfigError` on the first bad value; return self when all is well."""
        validate(self)
        return self


def _flatten(overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Section dicts to dotted keys; ``"method": "byol"`` to ``"method.name"``."""
    flat: dict[str, Any] = {}
    for key, value in overrides.items():
        if key in ("method", *SECTION_CLASSES) and isinstance(value, Mapping):
            flat.update({f"{key}.{k}": v for k, v in value.items()})
        elif key == "method":
            flat["method.name"] = value
        else:
            flat[key] = value
    return flat


def _section_from_dict(section: str, cls: type, d: Mapping[str, Any]):
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(d) - set(known))
    if unknown:
        raise ConfigError(f"{section}.{unknown[0]}", d[unknown[0]],
                          f"an existing field of {cls.__name__}: " + ", ".join(known))
    return cls(**{k: _auto_or(v) if f"{section}.{k}" in AUTO_FIELDS and isinstance(v, str)
                  else coerce(f"{section}.{k}", v, known[k].default) for k, v in d.items()})


def _auto_or(text: str) -> Any:
    """A string for a field that takes "auto" or a number: "auto", else its parsed value (validation
    then names what is allowed)."""
    return text if text == "auto" else parse_value(text)
