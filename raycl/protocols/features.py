"""Feature extraction: backbone h and head-layer outputs of every image, extracted once per
network, with a Ray Data actor pool reading the splits' listings or in this process."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import pyarrow as pa
import torch
from torch import nn

from raycl.config import Config
from raycl.data.listing import Listing
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
    """Ray Data ``map_batches`` actor over ``(split, window)`` rows: reads the window of that split's
    listing, decodes and centre-crops it, and returns the requested layers with ids and labels."""

    def __init__(self, config: dict, state: dict, layers: list[int], plans: list, threads: int = 1):
        from raycl.train import build_model

        torch.set_num_threads(max(1, threads))
        cfg = Config.from_dict(config)
        self.method = build_model(cfg, global_bn=False)
        self.method.load_state_dict(state)
        self.method.eval()
        self.layers, self.plans = layers, plans
        self.image_size, self.crop_size, self.on_bad = (cfg.data.image_size, cfg.augment.crop_size,
                                                        cfg.data.on_bad_image)

    def __call__(self, windows: dict[str, np.ndarray]) -> Iterator[dict[str, np.ndarray]]:
        from raycl.data.reading import read_window
        from raycl.data.workers import decode_for_eval

        for split, window in zip(windows["split"], windows["window"]):
            for batch in read_window(int(window), self.plans[split], epoch=0):
                out = decode_for_eval(batch, self.image_size, self.crop_size, self.on_bad)
                feats = layer_outputs(self.method, torch.from_numpy(out["image"]), self.layers)
                yield {"split": np.full(len(out["id"]), split, dtype=np.int8), "id": out["id"],
                       "label": out["label"], **{f"layer{k}": v.numpy() for k, v in feats.items()}}


def extract_ray(cfg: Config, state: dict, listings: dict[str, Listing], layers: Sequence[int]
                ) -> tuple[dict[str, dict[int, torch.Tensor]], dict[str, torch.Tensor]]:
    """``(features, labels)`` of every split's decodable images, in listing order, by one Ray Data
    actor pool (``eval.extract_actors``) that reads the listings' windows: no image passes through
    this process."""
    import ray

    from raycl.data.pipeline import read_plan

    names = list(listings)
    plans = [read_plan(listings[name], cfg, shuffle=False) for name in names]
    windows = [pa.table({"split": [s], "window": [w]}) for s, plan in enumerate(plans)
               for w in range(plan.num_windows)]
    actors = cfg.eval.extract_actors
    cpus = max(1.0, float(cfg.train.cpus_per_worker))
    ds = ray.data.from_arrow(windows).map_batches(
        FeatureActor, batch_size=1, batch_format="numpy", num_cpus=cpus,
        compute=ray.data.ActorPoolStrategy(size=actors),
        fn_constructor_kwargs={"config": cfg.to_dict(), "state": state, "layers": list(layers),
                               "plans": plans, "threads": int(cpus)})
    got: dict[str, list] = {"split": [], "id": []}
    with quiet_data_logs():
        quiet_data_context()
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
            for key, value in batch.items():
                got.setdefault(key, []).append(value)
    cat = {k: np.concatenate(v) for k, v in got.items()}
    features: dict[str, dict[int, torch.Tensor]] = {}
    labels: dict[str, torch.Tensor] = {}
    for s, name in enumerate(names):
        sel = np.flatnonzero(cat["split"] == s)
        order = sel[np.argsort(cat["id"][sel], kind="stable")]
        features[name] = {k: torch.from_numpy(np.ascontiguousarray(cat[f"layer{k}"][order])).float()
                          for k in layers}
        labels[name] = torch.from_numpy(cat["label"][order].astype(np.int64))
    return features, labels
