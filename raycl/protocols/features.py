"""Feature extraction: backbone h and head-layer outputs of every image, extracted once per
network, with a Ray Data actor pool over the splits or in this process."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import torch
from torch import nn

from raycl.config import Config
from raycl.data.pipeline import quiet_data_context, quiet_data_logs


@torch.no_grad()
def layer_outputs(method: nn.Module, images: torch.Tensor, layers: Sequence[int]) -> dict[int, torch.Tensor]:
    """``{0: h, k: output of head layer k}`` for the requested ``layers`` (eval mode is the caller's)."""
    h = method.features(images)
    out, x = {0: h}, h
    for k, layer in enumerate(method.head, 1):
        if k > max(layers):
            break
        x = layer(x)
        out[k] = x
    return {k: out[k].float() for k in layers}


@torch.no_grad()
def extract_local(method: nn.Module, images: torch.Tensor, layers: Sequence[int],
                  batch_size: int = 256) -> dict[int, torch.Tensor]:
    """:func:`layer_outputs` of every image in this process, batched."""
    method.eval()
    parts = [layer_outputs(method, b, layers) for b in images.split(batch_size)]
    return {k: torch.cat([p[k] for p in parts]) for k in layers}


class FeatureActor:
    """Ray Data ``map_batches`` actor: decode, centre-crop, and return the requested layers."""

    def __init__(self, config: dict, state: dict, layers: list[int], image_size: int,
                 crop_size: int, threads: int = 1):
        from raycl.train import build_model

        torch.set_num_threads(max(1, threads))
        self.method = build_model(Config.from_dict(config), global_bn=False)
        self.method.load_state_dict(state)
        self.method.eval()
        self.layers, self.image_size, self.crop_size = layers, image_size, crop_size

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from raycl.data.workers import decode_for_eval

        images = torch.from_numpy(decode_for_eval(batch, self.image_size, self.crop_size)["image"])
        feats = layer_outputs(self.method, images, self.layers)
        return {"split": batch["split"], "id": batch["id"],
                **{f"layer{k}": v.numpy() for k, v in feats.items()}}


def extract_ray(cfg: Config, state: dict, tables: dict[str, pa.Table], layers: Sequence[int]
                ) -> dict[str, dict[int, torch.Tensor]]:
    """Features of every split's images with one Ray Data actor pool (``eval.extract_actors``)."""
    import ray

    names = list(tables)
    parts = []
    for s, name in enumerate(names):
        t = tables[name].select(["image", "label", "id"])
        parts.append(t.append_column("split", pa.array(np.full(t.num_rows, s, dtype=np.int8))))
    table = pa.concat_tables(parts)
    bs = cfg.augment.batch_size
    blocks = [table.slice(i, bs) for i in range(0, table.num_rows, bs)]
    actors = cfg.eval.extract_actors
    cpus = max(1.0, float(cfg.train.cpus_per_worker))
    ds = ray.data.from_arrow(blocks).map_batches(
        FeatureActor, batch_size=bs, batch_format="numpy", num_cpus=cpus,
        compute=ray.data.ActorPoolStrategy(size=actors),
        fn_constructor_kwargs={"config": cfg.to_dict(), "state": state, "layers": list(layers),
                               "image_size": cfg.data.image_size,
                               "crop_size": cfg.augment.crop_size, "threads": int(cpus)})
    got: dict[str, list] = {"split": [], "id": []}
    with quiet_data_logs():
        quiet_data_context()
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
            for key, value in batch.items():
                got.setdefault(key, []).append(value)
    cat = {k: np.concatenate(v) for k, v in got.items()}
    out: dict[str, dict[int, torch.Tensor]] = {}
    for s, name in enumerate(names):
        sel = np.flatnonzero(cat["split"] == s)
        order = sel[np.argsort(cat["id"][sel], kind="stable")]
        out[name] = {k: torch.from_numpy(np.ascontiguousarray(cat[f"layer{k}"][order])).float()
                     for k in layers}
    return out
