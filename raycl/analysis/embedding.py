"""A checkpoint's validation embeddings in two dimensions: the backbone's h beside the projection
z = g(h), coloured by class, each projected on its first two principal components.

    from raycl.analysis import embedding_map
    embedding_map("raycl_results/simclr-tiny-…").savefig("embedding.png")
"""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.figure import Figure

__all__ = ["embedding_features", "embedding_map", "pca_2d"]


def pca_2d(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``x`` (N × D) on its first two principal components, and the fraction of variance each
    explains. Signs are fixed so that each component's largest loading is positive (a map does not
    mirror between calls)."""
    x = np.asarray(x, dtype=np.float64)
    centred = x - x.mean(axis=0)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    vt = vt[:2] * np.sign(vt[:2][np.arange(2), np.abs(vt[:2]).argmax(axis=1)])[:, None]
    explained = s[:2] ** 2 / max(float((s**2).sum()), 1e-12)
    return centred @ vt.T, explained


def embedding_features(
    checkpoint: Any,
    split: str = "val",
    max_points: int = 2000,
) -> tuple[dict[str, np.ndarray], np.ndarray, tuple[str, ...], dict]:
    """``({"h": …, "z": …}, labels, class_names, config)`` for up to ``max_points`` images of a
    split (a seeded sample when the split is larger), computed in this process."""
    import torch

    from raycl.config import Config
    from raycl.data.pipeline import load_split_listings
    from raycl.data.workers import decode_listing
    from raycl.train.state import load_checkpoint
    from raycl.protocols.features import extract_local
    from raycl.train import build_model

    if split not in ("train", "val", "test"):
        raise ValueError(f"split={split!r}: one of train, val, test")
    state, _, _ = load_checkpoint(checkpoint)
    cfg = Config.from_stored(state["config"]).validate()
    listings = load_split_listings(cfg, with_test=split == "test")
    listing = getattr(listings, split)
    if listing.num_rows > max_points:
        rng = np.random.default_rng(cfg.train.seed)
        listing = listing.take(np.sort(rng.choice(listing.num_rows, max_points, replace=False)))
    images, labels = decode_listing(
        listing, cfg.data.image_size, cfg.augment.crop_size, cfg.data.on_bad_image
    )
    model = build_model(cfg, global_bn=False)
    model.load_state_dict(state["model"])
    depth = len(model.head)
    feats = extract_local(model, torch.from_numpy(images), sorted({0, depth}), cfg.augment.batch_size)
    out = {"h": feats[0].numpy()}
    if depth:
        out["z"] = feats[depth].numpy()
    return out, labels, tuple(listing.class_names), state["config"]


def embedding_map(checkpoint: Any, split: str = "val", max_points: int = 2000) -> Figure:
    """A figure of :func:`embedding_features`: h and z = g(h) side by side, on their first two
    principal components, one colour per class."""
    import matplotlib

    feats, labels, names, config = embedding_features(checkpoint, split, max_points)
    fig = Figure(figsize=(5.6 * len(feats) + 1.6, 5.4))
    axes = np.atleast_1d(fig.subplots(1, len(feats)))
    classes = np.unique(labels)
    cmap = "tab10" if len(classes) <= 10 else "tab20"
    for ax, (name, x) in zip(axes, feats.items()):
        points, explained = pca_2d(x)
        for c in classes:
            at = labels == c
            ax.scatter(
                points[at, 0],
                points[at, 1],
                s=6,
                alpha=0.7,
                color=matplotlib.colormaps[cmap](int(c) % 20),
                label=names[c] if c < len(names) else str(c),
                rasterized=True,
            )
        ax.set_xlabel(f"PC 1 ({explained[0]:.0%} of variance)")
        ax.set_ylabel(f"PC 2 ({explained[1]:.0%} of variance)")
        what = "backbone output h" if name == "h" else "projection z = g(h)"
        ax.set_title(f"{what}, {x.shape[1]} dimensions", fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    if len(classes) <= 20:
        axes[-1].legend(
            loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8, markerscale=2.5, frameon=False
        )
    method = config.get("method", {}).get("name", "?")
    fig.suptitle(
        f"{method}: {len(labels)} {split} images on the first two principal components, coloured by class",
        fontsize=11,
    )
    fig.tight_layout()
    return fig
