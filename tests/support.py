"""Helpers shared by the tests: views shaped for a method, the overrides that make every part of a
method take part in one step (so that a test of its gradients sees all of them), and a reader of
TensorBoard's event files."""

import struct
from pathlib import Path

import torch

from raycl.methods import method_spec

# a part that is off at the tiny preset's defaults, switched on so that tests exercise it
EXERCISE = {
    "simclrv2": {"method.queue_size": 32},  # the memory of negatives
    "moco": {"method.queue_size": 64, "method.key_bn_groups": 2},
    "mocov2": {"method.queue_size": 64, "method.key_bn_groups": 2},
    "swav": {"method.freeze_prototypes_epochs": 0},  # prototypes learn from the first step
}


def make_views(cfg, batch: int, seed: int = 0) -> list[torch.Tensor]:
    """Random uint8 views for ``cfg``'s method: its large views, then its small crops."""
    traits = method_spec(cfg.method.name).traits
    sizes = [cfg.augment.crop_size] * traits.views
    if traits.multi_crop:
        sizes += [cfg.augment.small_crop_size] * cfg.augment.small_crops
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, 256, (batch, 3, s, s), dtype=torch.uint8, generator=g) for s in sizes]


def read_scalars(folder: Path) -> dict[str, dict[int, float]]:
    """``{tag: {step: value}}`` from the TensorBoard event files in ``folder`` (TFRecord framing:
    length, its CRC, the Event proto, its CRC)."""
    from tensorboardX.proto.event_pb2 import Event

    out: dict[str, dict[int, float]] = {}
    for file in sorted(folder.glob("events.out.tfevents.*")):
        data, at = file.read_bytes(), 0
        while at < len(data):
            (length,) = struct.unpack("<Q", data[at:at + 8])
            event = Event.FromString(data[at + 12:at + 12 + length])
            at += 12 + length + 4
            for value in event.summary.value:
                out.setdefault(value.tag, {})[event.step] = value.simple_value
    return out
