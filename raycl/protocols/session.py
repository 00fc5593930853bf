"""One evaluation of a checkpoint: its data, networks and features, loaded once and shared by the
protocols that run on them."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from raycl.config import Config
from raycl.knn import knn_accuracy
from raycl.protocols.features import extract_local, extract_ray
from raycl.protocols.finetuning import Classifier, distill, finetune, light_augment, predict
from raycl.protocols.linear import linear_probe, topk_scores
from raycl.protocols.names import Protocol
from raycl.protocols.subsets import label_subset, save_subset
from raycl.protocols.transform import transformation_probe
from raycl.seeding import derive_seed, numpy_rng


SPLITS = ("train", "val", "test")


@dataclass
class Session:
    """Runs protocols (:meth:`run`) on one checkpoint's ``state``; label subsets go to ``run_dir``.

    The splits are listings: with Ray, feature extraction streams them through Ray Data (the
    images never reach this process); the protocols that train on pixels (fine-tuning, distillation,
    the transformation probe) and local extraction decode a split here, once. Undecodable images are
    left out of every protocol, the same ones either way."""

    cfg: Config
    state: dict
    run_dir: str
    use_ray: bool | None = None
    listings: dict = field(default_factory=dict)
    num_classes: int = 0
    _images: dict = field(default_factory=dict)
    _labels: dict = field(default_factory=dict)
    _models: dict = field(default_factory=dict)
    _features: dict = field(default_factory=dict)
    _finetuned: dict = field(default_factory=dict)

    def __post_init__(self):
        from raycl.data.pipeline import load_split_listings

        split = load_split_listings(self.cfg, with_test=True)
        self.num_classes = split.num_classes
        self.listings = {"train": split.train, "val": split.val, "test": split.test}

    # ------------------------------------------------------------------ data
    def labels(self, split: str) -> torch.Tensor:
        """Labels of a split's decodable images, in listing order."""
        if split not in self._labels:
            self.images(split)
        return self._labels[split]

    def images(self, split: str) -> torch.Tensor:
        """Decoded, centre-cropped uint8 NCHW images of a split (read and decoded here, once)."""
        from raycl.data.workers import decode_listing

        if split not in self._images:
            d = self.cfg.data
            images, labels = decode_listing(self.listings[split], d.image_size, self.cfg.augment.crop_size,
                                            d.on_bad_image)
            self._images[split] = torch.from_numpy(images)
            self._labels[split] = torch.from_numpy(labels)
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
                feats, labels = extract_ray(self.cfg, state, self.listings, layers)
                for s in SPLITS:
                    self._labels.setdefault(s, labels[s])
            else:
                feats = {s: extract_local(self.model(random), self.images(s), layers,
                                          self.cfg.augment.batch_size) for s in SPLITS}
            for k in layers:
                self._features[(random, k)] = {s: feats[s][k] for s in SPLITS}
        return self._features[key]

    def subset(self, percent: int) -> np.ndarray:
        seed = self.cfg.eval.subset_seed
        idx = label_subset(self.labels("train").numpy(), percent / 100, seed)
        save_subset(self.run_dir, idx, percent, seed)
        return idx

    # ------------------------------------------------------------------ protocols
    def run(self, p: Protocol) -> tuple[list[dict], dict]:
        """``(rows, settings)`` of protocol ``p``: one row per split (and task, representation)."""
        return getattr(self, f"_{p.base}")(p)

    def _knn(self, p: Protocol):
        from raycl.data.pipeline import knn_bank_rows

        e = self.cfg.eval
        f = self.features(p.random, 0)
        bank, bank_y = f["train"], self.labels("train")
        if e.knn_bank_size is not None and e.knn_bank_size < len(bank):
            # the rows of the training-time kNN monitor's bank
            keep = torch.from_numpy(knn_bank_rows(len(bank), self.cfg))
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
            e, keep, seed = self.cfg.eval, self.cfg.model.finetune_from, self.cfg.train.seed
            idx = self.subset(p.percent)
            torch.manual_seed(derive_seed(seed, "finetune_head"))
            model = Classifier(self.model(p.random), keep, self.num_classes)
            finetune(model, self.images("train")[idx], self.labels("train")[idx],
                     epochs=e.finetune_epochs, batch_size=e.finetune_batch_size, lr=e.finetune_lr,
                     weight_decay=e.finetune_weight_decay,
                     augment=light_augment(self.cfg.augment.crop_size), seed=seed)
            self._finetuned[key] = (model, idx)
        return self._finetuned[key]

    def _score(self, model: nn.Module) -> dict[str, dict[str, float]]:
        return {s: topk_scores(predict(model, self.images(s)), self.labels(s)) for s in ("val", "test")}

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
        seed = cfg.train.seed
        teacher, idx = self._finetuned_model(p)
        teacher_scores = self._score(teacher)
        if e.distill_student == "pretrained":
            base = self.model(p.random)
        else:
            from raycl.train import build_model

            student_seed = derive_seed(seed, "distill_student")
            base = build_model(cfg.override({"train.seed": student_seed}), global_bn=False)
        torch.manual_seed(derive_seed(seed, "distill_head"))
        student = Classifier(base, cfg.model.finetune_from, self.num_classes)
        labelled = torch.from_numpy(idx)
        distill(teacher, student, self.images("train"), labelled, self.labels("train")[labelled],
                temperature=e.distill_temperature, alpha=e.distill_alpha, epochs=e.distill_epochs,
                batch_size=e.finetune_batch_size, lr=e.finetune_lr,
                weight_decay=e.finetune_weight_decay, augment=light_augment(cfg.augment.crop_size),
                seed=seed)
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
        rng = numpy_rng(seed, "transform_images")
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
