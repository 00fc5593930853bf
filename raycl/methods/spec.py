"""What a method declares about itself, in its own file: options, paper defaults per scale, traits.

A :class:`MethodSpec` is plain data (no torch), so the configuration derives everything it knows
about methods from the specs: the ``method.*`` fields a run accepts and their validation, the
presets' per-method values and the rules that depend on a method's shape (a predictor, multi-crop,
a projection head). Adding a method is one file with a spec and a class, plus one registry line in
:mod:`raycl.methods`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping

from raycl.checks import Check, ConfigError, at_least, between, choice, positive

if TYPE_CHECKING:
    from raycl.config import Config

SCALES = ("tiny", "cifar10", "imagenet")  # the presets' scales; "all" in defaults applies to every one


@dataclass(frozen=True)
class Option:
    """One ``method.<name>`` field: its default (whose type the value is coerced to), a one-line
    help, and a check that raises :class:`~raycl.checks.ConfigError` on a bad value."""

    name: str
    default: Any
    help: str
    check: Check | None = None


@dataclass(frozen=True)
class Traits:
    """The method's shape, as far as the rest of a run needs to know it."""

    views: int = 2  # large views per image the loss takes
    multi_crop: bool = False  # may also take augment.small_crops small views
    needs_head: bool = True  # its loss is on a projection head: model.proj_depth >= 1
    predictor: bool = False  # has a predictor network: optim.predictor_* apply to it


@dataclass(frozen=True)
class MethodSpec:
    """Everything a method declares about itself.

    ``defaults`` maps a scale (``"tiny"``, ``"cifar10"``, ``"imagenet"``, or ``"all"`` for every
    scale) to dotted overrides of the scale's preset: the method's paper recipe at that scale.
    ``rules`` are checks across fields (e.g. a queue that must hold whole global batches).
    """

    name: str
    paper: str
    options: tuple[Option, ...] = ()
    defaults: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    traits: Traits = Traits()
    rules: tuple[Callable[["Config"], None], ...] = ()

    def __post_init__(self) -> None:
        unknown = set(self.defaults) - set(SCALES) - {"all"}
        if unknown:
            raise ValueError(f"{self.name}: defaults for unknown scales {sorted(unknown)}")

    def option_defaults(self) -> dict[str, Any]:
        return {o.name: o.default for o in self.options}

    def paper_defaults(self, scale: str) -> dict[str, Any]:
        """The overrides that turn the scale's preset into this method's paper recipe."""
        return {**self.defaults.get("all", {}), **self.defaults.get(scale, {})}

    def check(self, cfg: "Config") -> None:
        """Check every option of ``cfg.method`` and then the cross-field rules."""
        for o in self.options:
            if o.check is not None:
                o.check(f"method.{o.name}", getattr(cfg.method, o.name))
        for rule in self.rules:
            rule(cfg)

    def variant(self, name: str, paper: str, options: tuple[Option, ...] = (),
                defaults: Mapping[str, Mapping[str, Any]] | None = None, **changes: Any) -> "MethodSpec":
        """A spec built on this one (SimCLRv2 on SimCLR, MoCo v2 on MoCo): more options, and
        per-scale defaults laid over this spec's."""
        extra = defaults or {}
        merged = {s: {**self.paper_defaults(s), **extra.get("all", {}), **extra.get(s, {})}
                  for s in SCALES}
        return dataclasses.replace(self, name=name, paper=paper, options=self.options + options,
                                   defaults=merged, **changes)


# --------------------------------------------------------------------------- shared options
def temperature(default: float, what: str) -> Option:
    return Option("temperature", default, f"softmax temperature τ of {what}", positive)


def momentum_options(default: float) -> tuple[Option, ...]:
    """The EMA of a momentum network (MoCo's key encoder, BYOL's target, SimCLRv2's memory)."""
    return (Option("momentum", default, "EMA coefficient of the momentum network (MoCo m, BYOL τ_base)",
                   between(0.0, 1.0)),
            Option("momentum_schedule", "constant", "constant, or cosine: BYOL's τ_base → 1 over all steps",
                   choice("constant", "cosine")))


def queue_option(default: int, what: str) -> Option:
    return Option("queue_size", default, what, at_least(0))


def queue_holds_whole_batches(cfg: "Config") -> None:
    """A queue is filled one global batch at a time, so it holds a whole number of them."""
    size, batch = cfg.method.queue_size, cfg.train.batch_size
    if size and isinstance(batch, int) and batch > 0 and size % batch:
        raise ConfigError("method.queue_size", size,
                          f"a multiple of the global batch train.batch_size = {batch}")


def needs_queue(cfg: "Config") -> None:
    if cfg.method.queue_size == 0:
        raise ConfigError("method.queue_size", 0, f"at least one batch of keys for {cfg.method.name!r} "
                          f"(a multiple of train.batch_size = {cfg.train.batch_size})")


__all__ = ["MethodSpec", "Option", "SCALES", "Traits", "momentum_options",
           "needs_queue", "queue_holds_whole_batches", "queue_option", "temperature"]
