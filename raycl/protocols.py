"""Evaluation protocols run on a pre-trained checkpoint: ``raycl.evaluate(checkpoint, protocols)``.

Protocols (prefix any of them with ``random_`` to run it on the randomly initialised network, the
floor every pre-training should beat; ``random_finetune100`` is the supervised baseline):

- ``knn``: weighted kNN (:mod:`raycl.knn`) of validation / test against the training features.
- ``linear``: linear probe on frozen, standardised features (backbone h, or head layer
  ``eval.linear_layer``), multinomial logistic regression fitted with L-BFGS; the L2 weight decay is
  chosen on the validation split, the test split is scored once at the end. ``linear_z`` probes the
  head's output z = g(h) (SimCLR: h is better than g(h)).
- ``finetune<P>`` (``finetune1``, ``finetune10``, ``finetune100``): the whole network (backbone and
  the first ``model.finetune_from`` head layers) plus a new linear layer trained on a class-balanced
  P % label subset with crop + flip (SimCLRv2's semi-supervised protocol).
- ``distill<P>``: the ``finetune<P>`` network as teacher labels every training image; a student of the
  same architecture learns from the teacher's softened outputs (``eval.distill_temperature``) plus the
  labelled loss (weight ``eval.distill_alpha``) (SimCLRv2).
- ``transform``: linear probes predicting which transformation an image got (colour vs grayscale,
  rotation 0/90/180/270, original vs Sobel, original vs noise) from h and from z = g(h) (SimCLR
  Table 3).

Label subsets are deterministic (seed ``eval.subset_seed``), class-balanced, nested (1 % ⊂ 10 %) and
saved as ``label_subsets/<P>pct_seed<S>.npy`` (indices into the labelled training part) in the run
directory. Results are one row per protocol and split in ``evaluation.parquet``.

Features are extracted once per network, with a Ray Data actor pool over the three splits when Ray
is running, in this process otherwise.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import math
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import torch
import torch.nn.functional as F
from torch import nn

from raycl.config import Config, ConfigError
from raycl.data.augment import Crop, Noise, ViewPipeline, grayscale, rotate90, sobel
from raycl.knn import knn_accuracy
from raycl.losses import topk_accuracy

EVALUATION = "evaluation.parquet"
SUBSET_DIR = "label_subsets"
BASE_PROTOCOLS = ("knn", "linear", "linear_z", "finetune<P>", "distill<P>", "transform")
TRANSFORM_CLASSES = {"color": 2, "rotation": 4, "sobel": 2, "noise": 2}
_PATTERN = re.compile(r"^(random_)?(knn|linear|linear_z|transform|finetune(\d+)|distill(\d+))$")


# ================================================================ protocol names
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


# ================================================================ label subsets
def label_subset(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Sorted indices of a class-balanced subset holding ``fraction`` of ``labels``.

    Every class gets ``max(1, round(fraction * N / C))`` examples (all it has if fewer); which ones
    depends only on ``labels`` and ``seed``: each class is permuted once by the seed and its first
    examples are taken, so subsets of one seed are nested (1 % ⊂ 10 % ⊂ 100 %).
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction={fraction!r} is invalid; expected a number in (0, 1]")
    labels = np.asarray(labels)
    classes = np.unique(labels)
    if fraction == 1.0:
        return np.arange(len(labels))
    per_class = max(1, math.floor(fraction * len(labels) / len(classes) + 0.5))
    rng = np.random.default_rng(seed)
    keep = [rng.permutation(np.flatnonzero(labels == c))[:per_class] for c in classes]
    return np.sort(np.concatenate(keep))


def subset_file(percent: float, seed: int) -> str:
    return f"{SUBSET_DIR}/{percent:g}pct_seed{seed}.npy"


def save_subset(run_dir: str, indices: np.ndarray, percent: float, seed: int) -> str:
    """Write the indices as ``.npy`` under the run directory; return the file's path."""
    from raycl.results import _fs

    fs, root = _fs(run_dir)
    path = f"{root}/{subset_file(percent, seed)}"
    fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
    buf = io.BytesIO()
    np.save(buf, np.asarray(indices, dtype=np.int64))
    with fs.open_output_stream(path) as f:
        f.write(buf.getvalue())
    return path


# ================================================================ linear classifier
def _topk(logits: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    acc = topk_accuracy(logits, y.long(), (1, 5))
    return {"top1": acc[1], "top5": acc[5]}


@dataclass
class LinearModel:
    """A fitted linear classifier on standardised features."""

    mean: torch.Tensor
    std: torch.Tensor
    linear: nn.Linear
    weight_decay: float

    @torch.no_grad()
    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear((x.float() - self.mean) / self.std)


def fit_linear(x: torch.Tensor, y: torch.Tensor, num_classes: int, weight_decay: float = 0.0,
               steps: int = 200) -> LinearModel:
    """Multinomial logistic regression on standardised ``x`` (full-batch L-BFGS, strong Wolfe).

    Minimises ``mean CE + weight_decay / 2 · ‖W‖²``; standardisation uses the training statistics.
    """
    x = x.float()
    mean, std = x.mean(0), x.std(0).clamp(min=1e-6)
    xs = (x - mean) / std
    y = y.long()
    with torch.random.fork_rng():
        torch.manual_seed(0)
        linear = nn.Linear(x.shape[1], num_classes)
    nn.init.zeros_(linear.weight)
    nn.init.zeros_(linear.bias)
    opt = torch.optim.LBFGS(linear.parameters(), lr=1.0, max_iter=steps, history_size=20,
                            tolerance_grad=1e-6, tolerance_change=1e-9,
                            line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(linear(xs), y) + 0.5 * weight_decay * linear.weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad(), _threads(1 if xs.numel() < 4_000_000 else None):
        opt.step(closure)
    return LinearModel(mean, std, linear, float(weight_decay))


@contextlib.contextmanager
def _threads(n: int | None):
    """Run with ``n`` torch threads (None: unchanged). Small L-BFGS problems are many tiny ops, where
    extra threads only add synchronisation (200 iterations on 540 × 128: 0.07 s on one thread, 1–4 s
    on two busy cores)."""
    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def linear_probe(train: tuple[torch.Tensor, torch.Tensor], val: tuple[torch.Tensor, torch.Tensor],
                 num_classes: int, weight_decays: Sequence[float] = (0.0, 1e-4, 1e-3, 1e-2, 1e-1),
                 steps: int = 200, test: tuple[torch.Tensor, torch.Tensor] | None = None
                 ) -> dict[str, Any]:
    """Fit one classifier per weight decay, keep the best on ``val`` (top-1, ties: larger decay),
    then score ``test`` once with it. Returns ``{"val": {top1, top5}, "test": ..., "weight_decay",
    "val_top1_by_weight_decay"}``."""
    best, best_key, scores = None, None, {}
    for wd in weight_decays:
        model = fit_linear(*train, num_classes, wd, steps)
        acc = _topk(model.logits(val[0]), val[1])
        scores[float(wd)] = acc["top1"]
        key = (acc["top1"], acc["top5"], wd)
        if best_key is None or key > best_key:
            best, best_key, best_val = model, key, acc
    out = {"val": best_val, "weight_decay": best.weight_decay, "val_top1_by_weight_decay": scores,
           "model": best}
    if test is not None:
        out["test"] = _topk(best.logits(test[0]), test[1])
    return out


# ================================================================ networks for fine-tuning
class Classifier(nn.Module):
    """uint8 images → logits: normalisation, backbone, the first ``keep`` head layers, a new linear."""

    def __init__(self, method: nn.Module, keep: int, num_classes: int):
        super().__init__()
        self.normalize = copy.deepcopy(method.normalize)
        self.backbone = copy.deepcopy(method.backbone)
        layers = list(method.head)[:keep]
        self.head = nn.Sequential(*[copy.deepcopy(layer) for layer in layers])
        dim = method.backbone.out_dim
        for layer in layers:
            linears = [m for m in layer.modules() if isinstance(m, nn.Linear)]
            if linears:
                dim = linears[-1].out_features
        self.fc = nn.Linear(dim, num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.fc(self.head(self.backbone(self.normalize(images))))


def light_augment(crop_size: int) -> ViewPipeline:
    """Fine-tuning augmentation: random resized crop (scale 0.25–1) and horizontal flip."""
    return ViewPipeline([Crop(crop_size, scale=(0.25, 1.0), flip=0.5)])


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """Logits of ``model`` in eval mode, batched."""
    was = model.training
    model.eval()
    out = torch.cat([model(b) for b in images.split(batch_size)]) if len(images) else \
        torch.zeros(0, 1)
    model.train(was)
    return out


def _train(model: nn.Module, n: int, loss_fn: Callable[[torch.Tensor], torch.Tensor], *,
           epochs: int, batch_size: int, lr: float, weight_decay: float, seed: int) -> None:
    """SGD (Nesterov, momentum 0.9, lr × B/256, cosine per step) over ``n`` examples;
    ``loss_fn(batch_indices)`` returns the batch loss. Batches of one are dropped (batch norm)."""
    gen = torch.Generator().manual_seed(seed)
    bs = min(batch_size, n)
    steps_per_epoch = max(1, math.ceil(n / bs))
    total = epochs * steps_per_epoch
    peak = lr * bs / 256
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=peak,
                          momentum=0.9, nesterov=True, weight_decay=weight_decay)
    model.train()
    step = 0
    for _ in range(epochs):
        for idx in torch.randperm(n, generator=gen).split(bs):
            if len(idx) < 2:
                continue
            for g in opt.param_groups:
                g["lr"] = 0.5 * peak * (1 + math.cos(math.pi * step / total))
            loss = loss_fn(idx)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
    model.eval()


def finetune(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *, epochs: int = 30,
             batch_size: int = 64, lr: float = 0.1, weight_decay: float = 0.0,
             augment: ViewPipeline | None = None, seed: int = 0) -> nn.Module:
    """Train ``model`` (uint8 images → logits) with cross-entropy on augmented ``images``."""
    gen = torch.Generator().manual_seed(seed + 1)
    labels = labels.long()

    def loss_fn(idx):
        x = images[idx] if augment is None else augment(images[idx], gen)
        return F.cross_entropy(model(x), labels[idx])

    _train(model, len(images), loss_fn, epochs=epochs, batch_size=batch_size, lr=lr,
           weight_decay=weight_decay, seed=seed)
    return model


def distill(teacher: nn.Module, student: nn.Module, images: torch.Tensor,
            labelled: torch.Tensor | None = None, labels: torch.Tensor | None = None, *,
            temperature: float = 1.0, alpha: float = 0.0, epochs: int = 10, batch_size: int = 64,
            lr: float = 0.1, weight_decay: float = 0.0, augment: ViewPipeline | None = None,
            seed: int = 0) -> nn.Module:
    """Train ``student`` on all ``images`` from ``teacher``'s softened outputs (SimCLRv2 eq. 3).

    Loss ``(1 − α) · T² · KL(softmax(t/T) ‖ softmax(s/T)) + α · CE(s, y)``, the second term over the
    batch's labelled images (``labelled``: indices into ``images`` with ``labels``). Teacher and
    student see the same augmented batch; the teacher stays in eval mode.
    """
    gen = torch.Generator().manual_seed(seed + 1)
    teacher.eval()
    y_full = torch.full((len(images),), -1, dtype=torch.long)
    if labelled is not None and alpha > 0:
        y_full[torch.as_tensor(labelled).long()] = torch.as_tensor(labels).long()
    T = temperature

    def loss_fn(idx):
        x = images[idx] if augment is None else augment(images[idx], gen)
        with torch.no_grad():
            target = F.softmax(teacher(x).float() / T, dim=1)
        logits = student(x)
        loss = F.kl_div(F.log_softmax(logits / T, dim=1), target, reduction="batchmean") * T * T
        y = y_full[idx]
        if alpha > 0 and (y >= 0).any():
            loss = (1 - alpha) * loss + alpha * F.cross_entropy(logits[y >= 0], y[y >= 0])
        elif alpha > 0:
            loss = (1 - alpha) * loss
        return loss

    _train(student, len(images), loss_fn, epochs=epochs, batch_size=batch_size, lr=lr,
           weight_decay=weight_decay, seed=seed)
    return student


# ================================================================ transformation probe
def apply_transform(task: str, images: torch.Tensor, targets: torch.Tensor,
                    generator: torch.Generator | None = None) -> torch.Tensor:
    """uint8 ``images`` with transformation ``targets[i]`` of ``task`` applied to image i.

    color: 0 original, 1 grayscale; rotation: k × 90°; sobel: 0 original, 1 Sobel edges;
    noise: 0 original, 1 Gaussian noise (σ = 0.1 of the range).
    """
    if task not in TRANSFORM_CLASSES:
        raise ValueError(f"unknown transformation task {task!r}; allowed: {', '.join(TRANSFORM_CLASSES)}")
    x = images.float() / 255.0
    mask = targets.bool()
    if task == "color":
        x = grayscale(x, mask)
    elif task == "rotation":
        x = rotate90(x, targets.long())
    elif task == "sobel":
        x = torch.lerp(x, sobel(x), mask.float().view(-1, 1, 1, 1))
    else:
        noise = Noise(std=0.1)
        x = noise.apply(x, {"noise": torch.randn(x.shape, generator=generator) * 0.1, "mask": mask})
    return x.mul(255.0).round_().clamp_(0, 255).to(torch.uint8)


def balanced_targets(n: int, k: int, seed: int) -> torch.Tensor:
    """``n`` targets in ``0..k-1``, as balanced as possible, in a seeded random order."""
    gen = torch.Generator().manual_seed(seed)
    return (torch.arange(n) % k)[torch.randperm(n, generator=gen)]


def transformation_probe(featurize: Callable[[torch.Tensor], dict[str, torch.Tensor]],
                         splits: dict[str, torch.Tensor], tasks: Sequence[str] = tuple(TRANSFORM_CLASSES),
                         weight_decays: Sequence[float] = (0.0, 1e-3, 1e-1), steps: int = 200,
                         seed: int = 0) -> list[dict[str, Any]]:
    """Linear probes predicting the transformation applied (SimCLR Table 3).

    ``splits``: uint8 images of ``"train"``, ``"val"`` and optionally ``"test"``; each image gets one
    balanced random transformation of the task. ``featurize(images)`` returns named representations
    (e.g. ``{"h": ..., "z": ...}``). The weight decay is chosen on val. One row per task,
    representation and evaluated split: ``{task, features, split, top1}``.
    """
    rows = []
    for t, task in enumerate(tasks):
        k = TRANSFORM_CLASSES[task]
        feats, targets = {}, {}
        for s, (split, images) in enumerate(splits.items()):
            y = balanced_targets(len(images), k, seed * 1000 + 10 * t + s)
            gen = torch.Generator().manual_seed(seed * 1000 + 10 * t + s + 500)
            targets[split] = y
            feats[split] = featurize(apply_transform(task, images, y, gen))
        for rep in feats["train"]:
            res = linear_probe((feats["train"][rep], targets["train"]),
                               (feats["val"][rep], targets["val"]), k, weight_decays, steps,
                               test=(feats["test"][rep], targets["test"]) if "test" in feats else None)
            for split in ("val", "test"):
                if split in res:
                    rows.append({"task": task, "features": rep, "split": split,
                                 "top1": res[split]["top1"], "chance": 1 / k,
                                 "weight_decay": res["weight_decay"]})
    return rows


# ================================================================ features
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
        from raycl.data.pipeline import decode_for_eval

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


# ================================================================ checkpoints
def load_checkpoint(checkpoint: Any) -> tuple[dict, str, str]:
    """``(state, checkpoint_dir, run_dir)`` from a checkpoint directory, a run directory (its latest
    checkpoint) or a :class:`~raycl.api.RunResult`."""
    from raycl.results import _fs
    from raycl.train import STATE_FILE

    if hasattr(checkpoint, "checkpoint") and hasattr(checkpoint, "path"):
        checkpoint = checkpoint.checkpoint
    if checkpoint is None:
        raise ValueError("no checkpoint to evaluate (the run saved none)")
    checkpoint = str(checkpoint)
    fs, path = _fs(checkpoint)
    if fs.get_file_info(f"{path}/{STATE_FILE}").type == pafs.FileType.NotFound:
        found = sorted(i.path for i in fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
                       if i.base_name.startswith("checkpoint_")
                       and fs.get_file_info(f"{i.path}/{STATE_FILE}").type != pafs.FileType.NotFound)
        if not found:
            raise ValueError(f"{checkpoint!r} holds neither {STATE_FILE} nor checkpoint_* folders")
        path = found[-1]
        checkpoint = path if "://" not in checkpoint else checkpoint.split("://")[0] + "://" + path
    with fs.open_input_file(f"{path}/{STATE_FILE}") as f:
        state = torch.load(io.BytesIO(f.read()), map_location="cpu", weights_only=False)
    run_dir = checkpoint.rstrip("/").rsplit("/", 1)[0] if Path(path).name.startswith("checkpoint_") \
        else checkpoint
    return state, checkpoint, run_dir


# ================================================================ the evaluation session
@dataclass
class _Session:
    cfg: Config
    state: dict
    run_dir: str
    use_ray: bool | None = None
    tables: dict = field(default_factory=dict)
    num_classes: int = 0
    _images: dict = field(default_factory=dict)
    _labels: dict = field(default_factory=dict)
    _models: dict = field(default_factory=dict)
    _features: dict = field(default_factory=dict)
    _finetuned: dict = field(default_factory=dict)

    def __post_init__(self):
        from raycl.data.pipeline import load_split_tables

        t = load_split_tables(self.cfg, with_test=True)
        self.tables = {"train": t.train, "val": t.val, "test": t.test}
        self.num_classes = t.num_classes
        self._labels = {k: torch.from_numpy(v.column("label").to_numpy().copy()).long()
                        for k, v in self.tables.items()}

    # ------------------------------------------------------------------ data
    def labels(self, split: str) -> torch.Tensor:
        return self._labels[split]

    def images(self, split: str) -> torch.Tensor:
        """Decoded, centre-cropped uint8 NCHW images of a split (decoded once)."""
        from raycl.data.pipeline import decode_for_eval

        if split not in self._images:
            t = self.tables[split]
            batch = {"image": t.column("image").to_numpy(zero_copy_only=False),
                     "label": t.column("label").to_numpy()}
            self._images[split] = torch.from_numpy(decode_for_eval(
                batch, self.cfg.data.image_size, self.cfg.augment.crop_size)["image"])
        return self._images[split]

    # ------------------------------------------------------------------ networks
    def model(self, random: bool) -> nn.Module:
        """The pre-trained network, or the same architecture at its (seeded) initialisation."""
        from raycl.train import build_model

        if random not in self._models:
            m = build_model(self.cfg, global_bn=False)
            if not random:
                m.load_state_dict(self.state["model"])
            self._models[random] = m.eval()
        return self._models[random]

    def features(self, random: bool, layer: int) -> dict[str, torch.Tensor]:
        """Features of layer ``layer`` for all splits: every layer of a network is extracted at once."""
        key = (random, layer)
        if key not in self._features:
            depth = len(self.model(random).head)
            layers = sorted({0, depth, self.cfg.eval.linear_layer, layer})
            import ray

            if self.use_ray or (self.use_ray is None and ray.is_initialized()):
                state = self.model(random).state_dict()
                feats = extract_ray(self.cfg, state, self.tables, layers)
            else:
                feats = {s: extract_local(self.model(random), self.images(s), layers,
                                          self.cfg.augment.batch_size) for s in self.tables}
            for k in layers:
                self._features[(random, k)] = {s: feats[s][k] for s in self.tables}
        return self._features[key]

    def subset(self, percent: int) -> np.ndarray:
        seed = self.cfg.eval.subset_seed
        idx = label_subset(self.labels("train").numpy(), percent / 100, seed)
        save_subset(self.run_dir, idx, percent, seed)
        return idx

    # ------------------------------------------------------------------ protocols
    def run(self, p: Protocol) -> tuple[list[dict], dict]:
        return getattr(self, f"_{p.base}")(p)

    def _knn(self, p: Protocol):
        e = self.cfg.eval
        f = self.features(p.random, 0)
        bank, bank_y = f["train"], self.labels("train")
        if e.knn_bank_size is not None and e.knn_bank_size < len(bank):
            keep = np.sort(np.random.default_rng(self.cfg.train.seed).choice(
                len(bank), e.knn_bank_size, replace=False))
            bank, bank_y = bank[keep], bank_y[keep]
        rows = []
        for split in ("val", "test"):
            acc = knn_accuracy(f[split], self.labels(split), bank, bank_y, self.num_classes,
                               e.knn_k, e.knn_temperature)
            rows.append({"split": split, "features": "h", "top1": acc["knn_top1"],
                         "top5": acc["knn_top5"]})
        return rows, {"k": e.knn_k, "temperature": e.knn_temperature, "bank": len(bank)}

    def _linear(self, p: Protocol):
        e = self.cfg.eval
        layer = len(self.model(p.random).head) if p.base == "linear_z" else e.linear_layer
        f = self.features(p.random, layer)
        res = linear_probe((f["train"], self.labels("train")), (f["val"], self.labels("val")),
                           self.num_classes, e.linear_weight_decays, e.linear_steps,
                           test=(f["test"], self.labels("test")))
        name = "h" if layer == 0 else f"g{layer}"
        rows = [{"split": s, "features": name, **res[s]} for s in ("val", "test")]
        return rows, {"layer": layer, "weight_decay": res["weight_decay"],
                      "weight_decays": list(e.linear_weight_decays), "steps": e.linear_steps,
                      "val_top1_by_weight_decay": res["val_top1_by_weight_decay"]}

    _linear_z = _linear

    def _finetuned_model(self, p: Protocol) -> tuple[nn.Module, np.ndarray]:
        key = (p.random, p.percent)
        if key not in self._finetuned:
            e, keep = self.cfg.eval, self.cfg.model.finetune_from
            idx = self.subset(p.percent)
            torch.manual_seed(self.cfg.train.seed)
            model = Classifier(self.model(p.random), keep, self.num_classes)
            finetune(model, self.images("train")[idx], self.labels("train")[idx],
                     epochs=e.finetune_epochs, batch_size=e.finetune_batch_size, lr=e.finetune_lr,
                     weight_decay=e.finetune_weight_decay,
                     augment=light_augment(self.cfg.augment.crop_size), seed=self.cfg.train.seed)
            self._finetuned[key] = (model, idx)
        return self._finetuned[key]

    def _score(self, model: nn.Module) -> dict[str, dict[str, float]]:
        return {s: _topk(predict(model, self.images(s)), self.labels(s)) for s in ("val", "test")}

    def _finetune_settings(self, idx: np.ndarray) -> dict:
        e = self.cfg.eval
        return {"labelled_images": len(idx), "head_layers_kept": self.cfg.model.finetune_from,
                "epochs": e.finetune_epochs, "batch_size": e.finetune_batch_size,
                "lr": e.finetune_lr, "weight_decay": e.finetune_weight_decay,
                "subset_seed": e.subset_seed, "augment": "crop(0.25-1)+flip"}

    def _finetune(self, p: Protocol):
        model, idx = self._finetuned_model(p)
        scores = self._score(model)
        rows = [{"split": s, "features": "network", **scores[s]} for s in ("val", "test")]
        return rows, self._finetune_settings(idx)

    def _distill(self, p: Protocol):
        e, cfg = self.cfg.eval, self.cfg
        teacher, idx = self._finetuned_model(p)
        teacher_scores = self._score(teacher)
        if e.distill_student == "pretrained":
            base = self.model(p.random)
        else:
            from raycl.train import build_model

            base = build_model(cfg.override({"train.seed": cfg.train.seed + 1}), global_bn=False)
        torch.manual_seed(cfg.train.seed + 1)
        student = Classifier(base, cfg.model.finetune_from, self.num_classes)
        labelled = torch.from_numpy(idx)
        distill(teacher, student, self.images("train"), labelled, self.labels("train")[labelled],
                temperature=e.distill_temperature, alpha=e.distill_alpha, epochs=e.distill_epochs,
                batch_size=e.finetune_batch_size, lr=e.finetune_lr,
                weight_decay=e.finetune_weight_decay, augment=light_augment(cfg.augment.crop_size),
                seed=cfg.train.seed)
        scores = self._score(student)
        rows = [{"split": s, "features": "network", **scores[s],
                 "teacher_top1": teacher_scores[s]["top1"], "teacher_top5": teacher_scores[s]["top5"]}
                for s in ("val", "test")]
        settings = {**self._finetune_settings(idx), "distill_epochs": e.distill_epochs,
                    "temperature": e.distill_temperature, "alpha": e.distill_alpha,
                    "student": e.distill_student, "unlabelled_images": len(self.images("train"))}
        return rows, settings

    def _transform(self, p: Protocol):
        e, seed = self.cfg.eval, self.cfg.train.seed
        method = self.model(p.random)
        depth = len(method.head)
        rng = np.random.default_rng(seed)
        splits = {}
        for s in ("train", "val", "test"):
            n = len(self.labels(s))
            cap = e.transform_images if s == "train" else max(1, e.transform_images // 2)
            keep = np.sort(rng.choice(n, min(n, cap), replace=False))
            splits[s] = self.images(s)[torch.from_numpy(keep)]

        def featurize(images):
            f = extract_local(method, images, sorted({0, depth}), self.cfg.augment.batch_size)
            return {"h": f[0], "z": f[depth]}

        rows = transformation_probe(featurize, splits, e.transform_tasks, e.linear_weight_decays,
                                    e.linear_steps, seed)
        rows = [{k: v for k, v in r.items() if k != "weight_decay"} for r in rows]
        return rows, {"tasks": list(e.transform_tasks), "images": {s: len(v) for s, v in splits.items()},
                      "z_layer": depth}


# ================================================================ public entry point
def evaluate(checkpoint: Any, protocols: Sequence[str] | str = ("knn", "linear"), *,
             path: str | None = None, verbose: bool = True, use_ray: bool | None = None,
             **overrides: Any) -> pd.DataFrame:
    """Run evaluation ``protocols`` on a raycl checkpoint; return and save the results table.

    ``checkpoint``: a checkpoint directory (holding ``state.pt``), a run directory (its latest
    checkpoint is used) or a :class:`~raycl.api.RunResult`. ``overrides`` change the stored config
    (dotted keys or unique names: ``linear_steps=100``, ``**{"data.num_test_images": 2000}``).
    Features are extracted with Ray Data when ``use_ray`` (default: when Ray is running).
    Rows (one per protocol and split, per task and representation for ``transform``) go to
    ``<path or run dir>/evaluation.parquet``, replacing earlier rows of the same protocols.

    Columns: ``protocol``, ``network`` (pretrained / random), ``split`` (val / test), ``features``
    (h, g<k>, network), ``task`` (class or a transformation), ``labels`` (fraction of training labels
    used), ``top1``, ``top5``, ``teacher_top1`` / ``teacher_top5`` (distill), ``chance``
    (transform), ``seconds`` (wall time of the protocol, feature extraction included) and
    ``settings`` (JSON).
    """
    parsed = parse_protocols(protocols)
    state, _, run_dir = load_checkpoint(checkpoint)
    cfg = Config.from_dict(state["config"]).override(overrides).validate()
    out_dir = path or run_dir
    session = _Session(cfg, state, out_dir, use_ray)
    rows = []
    for p in parsed:
        t0 = time.perf_counter()
        got, settings = session.run(p)
        seconds = time.perf_counter() - t0
        labels = 1.0 if p.base in ("knn", "linear", "linear_z") else p.fraction
        for r in map(dict, got):
            rows.append({"protocol": p.name, "network": "random" if p.random else "pretrained",
                         "split": r.pop("split"), "features": r.pop("features"),
                         "task": r.pop("task", "class"), "labels": labels, **r,
                         "seconds": seconds, "settings": json.dumps(settings, default=str)})
        if verbose:
            print(_progress(p.name, got, seconds), flush=True)
    df = _tidy(pd.DataFrame(rows))
    df = write_evaluation(out_dir, df, cfg)
    return df[df["protocol"].isin([p.name for p in parsed])].reset_index(drop=True)


_COLUMNS = ["run", "method", "protocol", "network", "split", "features", "task", "labels", "top1",
            "top5", "teacher_top1", "teacher_top5", "chance", "seconds", "settings"]


def _tidy(df: pd.DataFrame) -> pd.DataFrame:
    for col in ("top5", "teacher_top1", "teacher_top5", "chance"):
        if col not in df:
            df[col] = np.nan
    df["labels"] = df["labels"].astype(float)
    return df


def write_evaluation(run_dir: str, df: pd.DataFrame, cfg: Config) -> pd.DataFrame:
    """Merge ``df`` into ``run_dir/evaluation.parquet`` (rows of re-run protocols are replaced)."""
    from raycl.results import _fs

    fs, root = _fs(run_dir)
    fs.create_dir(root, recursive=True)
    df = df.copy()
    df["run"], df["method"] = cfg.name, cfg.method.name
    file = f"{root}/{EVALUATION}"
    if fs.get_file_info(file).type != pafs.FileType.NotFound:
        old = pq.read_table(file, filesystem=fs).to_pandas()
        old = old[~old["protocol"].isin(df["protocol"].unique())]
        df = pd.concat([old, df], ignore_index=True) if len(old) else df
    df = df[[c for c in _COLUMNS if c in df] + [c for c in df if c not in _COLUMNS]]
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), file, filesystem=fs)
    return df


def read_evaluation(run_dir: str) -> pd.DataFrame:
    """The ``evaluation.parquet`` table of a run directory."""
    from raycl.results import _fs

    fs, root = _fs(run_dir)
    return pq.read_table(f"{root}/{EVALUATION}", filesystem=fs).to_pandas()


def _progress(name: str, rows: list[dict], seconds: float) -> str:
    if rows and "task" in rows[0]:
        parts = [f"{r['task']}/{r['features']} {r['top1']:.3f}" for r in rows if r["split"] == "val"]
        return f"[raycl] eval {name}: val " + ", ".join(parts) + f" ({seconds:.1f} s)"
    parts = []
    for r in rows:
        text = f"{r['split']} top-1 {r['top1']:.3f}"
        if "teacher_top1" in r:
            text += f" (teacher {r['teacher_top1']:.3f})"
        parts.append(text)
    return f"[raycl] eval {name}: " + ", ".join(parts) + f" ({seconds:.1f} s)"
