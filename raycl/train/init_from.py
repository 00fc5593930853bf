"""``model.init_from``: start a run from pre-trained weights instead of a random initialisation.

The weights may be a file written by :func:`raycl.export` (the backbone, or the backbone and head
under ``backbone.`` / ``head.``), torchvision's ResNet state dict (its ``fc`` is not a backbone
weight and is left out), or a raycl checkpoint (a checkpoint or run directory, or its ``state.pt``).
The backbone must match the run's exactly; the projection head is taken when the weights have one of
the same shapes and otherwise keeps its fresh initialisation. Momentum targets (BYOL, MoCo, SimCLRv2's
memory) then copy their online networks, so they start from the same weights.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow.fs as pafs
import torch

from raycl.checks import ConfigError
from raycl.config import Config
from raycl.methods import build_method
from raycl.methods.base import Method
from raycl.storage import filesystem
from raycl.train.state import STATE_FILE, load_checkpoint, read_state

TORCHVISION_CLASSIFIER = "fc."  # torchvision ResNets' last layer: not part of the backbone


@dataclass
class Weights:
    backbone: dict[str, torch.Tensor]
    head: dict[str, torch.Tensor]
    source: str  # what they are, for the run's log line


def read_weights(path: str) -> Weights:
    """The backbone and head weights at ``path``; a :class:`ConfigError` naming ``model.init_from``
    when there are none."""
    fs, where = filesystem(path)
    kind = fs.get_file_info(where).type
    if kind == pafs.FileType.NotFound:
        raise ConfigError("model.init_from", path, "an existing file from raycl.export, a torchvision "
                          "ResNet state dict, or a raycl checkpoint or run directory")
    if kind == pafs.FileType.Directory or where.endswith("/" + STATE_FILE) or where == STATE_FILE:
        try:
            state, checkpoint, _ = load_checkpoint(path.rsplit("/" + STATE_FILE, 1)[0]
                                                   if kind == pafs.FileType.File else path)
        except ValueError as exc:
            raise ConfigError("model.init_from", path, f"a raycl checkpoint ({exc})") from None
        cfg = state["config"]
        return Weights(*_split(state["model"]), f"checkpoint {checkpoint} ({cfg['method']['name']}, "
                                                f"{cfg['model']['backbone']}, epoch {state.get('epoch')})")
    with fs.open_input_file(where) as f:
        try:
            state = read_state(f.read(), path)
        except (ValueError, RuntimeError) as exc:  # not tensors only, or not a torch file at all
            raise ConfigError("model.init_from", path, f"a state dict of tensors ({exc})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConfigError("model.init_from", path, "a state dict of tensors (the file holds something else)")
    backbone, head = _split(state)
    if not backbone and not head:  # a backbone-only export (or torchvision's keys): no prefixes
        backbone = {k: v for k, v in state.items() if not k.startswith(TORCHVISION_CLASSIFIER)}
    return Weights(backbone, head, f"weights {path}" + (" (backbone and head)" if head else " (backbone)"))


def _split(state: dict[str, torch.Tensor]) -> tuple[dict, dict]:
    """The ``backbone.`` and ``head.`` entries of a method's (or an export's) state dict, unprefixed."""
    parts: dict[str, dict] = {"backbone": {}, "head": {}}
    for key, value in state.items():
        part, _, rest = key.partition(".")
        if part in parts:
            parts[part][rest] = value
    return parts["backbone"], parts["head"]


def mismatch(module: torch.nn.Module, weights: dict[str, torch.Tensor]) -> str | None:
    """How ``weights`` fail to fit ``module`` exactly (missing or unexpected keys, other shapes), or
    None when they fit; checked before loading, as a failed ``load_state_dict`` may have loaded part."""
    own = module.state_dict()
    problems = {"missing": sorted(set(own) - set(weights)), "unexpected": sorted(set(weights) - set(own)),
                "other shapes": [f"{k} {tuple(weights[k].shape)} vs {tuple(v.shape)}"
                                 for k, v in own.items() if k in weights and v.shape != weights[k].shape]}
    said = [f"{what} {', '.join(keys[:3])}" + (f" and {len(keys) - 3} more" if len(keys) > 3 else "")
            for what, keys in problems.items() if keys]
    return "; ".join(said) or None


def check_fits(backbone: torch.nn.Module, weights: Weights, path: str, backbone_name: str) -> None:
    """A :class:`ConfigError` when ``weights``' backbone does not fit ``backbone`` exactly."""
    problem = mismatch(backbone, weights.backbone)
    if problem:
        raise ConfigError("model.init_from", path, f"weights of this run's backbone (model.backbone = "
                          f"{backbone_name!r}); these do not fit it: {problem}")


def init_from(method: Method, path: str, backbone_name: str) -> str:
    """Load the weights at ``path`` into ``method``'s backbone (and head when they fit) and copy
    them into its momentum targets; return one line saying what was loaded."""
    weights = read_weights(path)
    check_fits(method.backbone, weights, path, backbone_name)
    method.backbone.load_state_dict(weights.backbone)
    head = "a fresh head"
    if weights.head and mismatch(method.head, weights.head) is None:
        method.head.load_state_dict(weights.head)
        head = "head"
    elif weights.head:
        head = "a fresh head (the file's head has other shapes)"
    with torch.no_grad():
        for target, online in method.momentum_pairs():
            target.load_state_dict(online.state_dict())
    return f"model.init_from: backbone and {head} from {weights.source}"


def check_init_from(cfg: Config) -> str:
    """On the driver, before any worker starts: ``model.init_from`` loads into a model of the run
    (a :class:`ConfigError` when it does not); the line the run prints about it."""
    return init_from(build_method(cfg), cfg.model.init_from, cfg.model.backbone)
