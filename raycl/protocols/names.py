"""Protocol names: ``[random_]base[percent]``, parsed and checked before anything runs."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from raycl.config import ConfigError

BASE_PROTOCOLS = ("knn", "linear", "linear_z", "finetune<P>", "distill<P>", "transform")
_PATTERN = re.compile(r"^(random_)?(knn|linear|linear_z|transform|finetune(\d+)|distill(\d+))$")


@dataclass(frozen=True)
class Protocol:
    """A parsed protocol name: ``[random_]base[percent]``."""

    name: str
    base: str  # knn, linear, linear_z, finetune, distill, transform
    random: bool  # on the randomly initialised network
    percent: int | None = None  # label percentage of finetune / distill

    @property
    def fraction(self) -> float | None:
        return None if self.percent is None else self.percent / 100


def parse_protocols(names: Iterable[str] | str) -> list[Protocol]:
    """Check protocol names (ConfigError naming the bad one and what is allowed); drop repeats."""
    if isinstance(names, str):
        names = [names]
    allowed = ("one of " + ", ".join(BASE_PROTOCOLS) + " (P: percent of labels, 1 to 100), "
               "each optionally prefixed random_ (randomly initialised network)")
    out, seen = [], set()
    for name in names:
        m = _PATTERN.match(name) if isinstance(name, str) else None
        if m is None:
            raise ConfigError("protocols", name, allowed)
        pct = m.group(3) or m.group(4)
        if pct is not None and not 1 <= int(pct) <= 100:
            raise ConfigError("protocols", name, "a label percentage P from 1 to 100 in " + allowed)
        base = re.sub(r"\d+$", "", m.group(2))
        if name not in seen:
            seen.add(name)
            out.append(Protocol(name, base, bool(m.group(1)), int(pct) if pct else None))
    if not out:
        raise ConfigError("protocols", list(names), "at least one protocol: " + allowed)
    return out
