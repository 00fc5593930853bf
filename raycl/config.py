"""Typed run configuration, its validation and the presets.

A :class:`Config` is a tree of small dataclasses, one per concern. It is validated once, at the
boundary (:meth:`Config.validate`), and every bad value raises a :class:`ConfigError` that names the
field, the value and what is allowed.

Overrides use dotted paths (``"optim.lr"``) or, when unambiguous, a bare field name (``"epochs"``)::

    cfg = preset("tiny").override({"optim.lr": 0.3, "epochs": 3})
"""

from __future__ import annotations

import ast
import dataclasses
import math
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any, Mapping

METHODS = ("simclr", "simclrv2", "moco", "mocov2", "byol", "swav")
PREDICTOR_METHODS = ("byol",)  # methods with a predictor network (optim.predictor_* apply)
SOURCES = ("embedded", "parquet", "folder", "cifar10", "cifar100", "stl10")
BACKBONES = ("tiny_cnn", "resnet18_cifar", "resnet18", "resnet50")
OPTIMIZERS = ("sgd", "lars", "adamw")
LR_SCALINGS = ("linear", "sqrt", "none")
SCHEDULES = ("cosine", "step", "constant")
MOMENTUM_SCHEDULES = ("constant", "cosine")
RECIPES = ("simclr", "moco_v1", "moco_v2", "byol", "swav")
PRESETS = ("tiny", "cifar10", "imagenet")
COMPUTES = ("actors", "tasks")
AUGMENT_BACKENDS = ("auto", "fused", "torch")  # raycl.data.augment.BACKENDS
TRANSFORM_TASKS = ("color", "rotation", "sobel", "noise")  # raycl.protocols.TRANSFORM_CLASSES


class ConfigError(ValueError):
    """A configuration value is not allowed. The message names the field, the value and the rule."""

    def __init__(self, field_name: str, value: Any, allowed: str):
        self.field = field_name
        self.value = value
        self.allowed = allowed
        super().__init__(f"{field_name} = {value!r} is not allowed: {allowed}")


@dataclass
class MethodConfig:
    """Which self-supervised method, and its own hyper-parameters.

    Fields a method does not use are ignored by it; :func:`preset` fills in each method's paper
    defaults (``preset("cifar10", method="byol")``).
    """

    name: str = "simclr"
    temperature: float = 0.5  # softmax τ: NT-Xent (SimCLR), InfoNCE (MoCo), swapped prediction (SwAV)
    queue_size: int = 0  # MoCo: K keys; SwAV: embeddings kept from past batches; SimCLRv2: memory (0: off)
    momentum: float = 0.999  # EMA of the key / target network (MoCo m, BYOL τ_base)
    momentum_schedule: str = "constant"  # "cosine": BYOL's τ_base → 1 over all steps
    shuffle_bn: bool = True  # MoCo: shuffled BN for the key encoder
    key_bn_groups: int = 0  # MoCo: BN groups of the shuffled keys (0: one per worker, at least 2)
    prototypes: int = 3000  # SwAV: number of prototypes K
    epsilon: float = 0.05  # SwAV: Sinkhorn entropy regularisation ε
    sinkhorn_iters: int = 3  # SwAV: Sinkhorn-Knopp iterations
    queue_start_epoch: int = 15  # SwAV: epoch from which the queue is used
    freeze_prototypes_epochs: int = 1  # SwAV: prototypes get no update for this many epochs


@dataclass
class DataConfig:
    """Where images come from and how the labelled set is split."""

    source: str = "embedded"
    path: str | None = None  # file/folder/root for non-embedded sources
    image_size: int = 32  # decoded (stored) image side, before augmentation
    num_images: int | None = None  # keep the first N training images (None: all)
    num_test_images: int | None = None
    val_fraction: float = 0.1  # stratified validation split of the training set (kNN queries)
    download: bool = False  # torchvision sets only


@dataclass
class AugmentConfig:
    """Two-view augmentation and the Ray Data actors that run it."""

    recipe: str = "simclr"
    crop_size: int = 32  # output side of every view (of the large views with multi-crop)
    # area range of the random resized crop of the large views; None: the recipe's own
    # (SimCLR/BYOL (0.08, 1), MoCo (0.2, 1), SwAV (0.14, 1))
    crop_scale: tuple | None = None
    small_crops: int = 0  # multi-crop (SwAV): V extra small views
    small_crop_size: int = 16
    small_crop_scale: tuple = (0.05, 0.14)
    color_strength: float = 0.5
    blur: bool = False
    compute: str = "actors"  # "actors": an actor pool; "tasks": stateless tasks (no per-epoch start-up)
    # "auto": the compiled CPU kernel (raycl.data.fused) where it applies, else torch ops; "fused":
    # the kernel or an error; "torch": torch ops only. Same views either way.
    backend: str = "auto"
    actors: int = 1  # augmentation actor pool size (scales apart from training workers)
    cpus_per_actor: float = 1.0
    batch_size: int = 256  # images per map_batches call
    node_resource: str | None = None  # custom Ray resource that pins augmentation to CPU-only nodes


@dataclass
class ModelConfig:
    """Backbone f and projection head g."""

    backbone: str = "tiny_cnn"
    proj_depth: int = 2  # number of Linear layers in g (0: no head)
    proj_hidden_dim: int = 512
    proj_out_dim: int = 128
    pred_depth: int = 2  # BYOL predictor q: number of Linear layers
    pred_hidden_dim: int = 512
    finetune_from: int = 0  # head layers kept when fine-tuning (SimCLRv2: 1, the head's first layer)
    sync_bn: bool = True  # global BN across workers (SimCLR's "global BN")


@dataclass
class OptimConfig:
    """Optimizer and learning-rate schedule. ``lr`` is the base rate for a batch of 256."""

    optimizer: str = "sgd"
    lr: float = 0.3
    lr_scaling: str = "linear"  # lr × B/256 ("linear"), lr × sqrt(B) / 16 ... see effective_lr
    weight_decay: float = 1e-6
    momentum: float = 0.9
    warmup_epochs: float = 10.0
    schedule: str = "cosine"
    min_lr_ratio: float = 0.0  # final lr as a fraction of the peak
    # A predictor's own rate (methods with one: PREDICTOR_METHODS). SimSiam (Chen & He 2021, §4.2)
    # keeps the predictor's lr fixed; Tian et al. 2021 (DirectPred) show a faster predictor helps.
    predictor_lr_scale: float = 1.0  # predictor lr = scale × the shared lr
    predictor_fixed_lr: bool = False  # predictor stays at scale × peak lr: no warm-up, no decay


@dataclass
class TrainConfig:
    """Ray Train scaling and the length of the run."""

    epochs: int = 100
    batch_size: int = 256  # global batch (all workers together)
    workers: int = 2
    cpus_per_worker: float = 1.0
    use_gpu: bool = False
    seed: int = 0
    checkpoint_every: int = 1  # epochs between checkpoints (the last epoch always checkpoints)
    num_to_keep: int = 2  # checkpoints kept on disk


@dataclass
class EvalConfig:
    """The per-epoch kNN monitor (weighted kNN on L2-normalised backbone features) and the settings
    of the evaluation protocols run after pre-training (:mod:`raycl.protocols`)."""

    knn_k: int = 200
    knn_temperature: float = 0.1
    knn_every: int = 1  # epochs between kNN evaluations (0: never)
    knn_bank_size: int | None = None  # cap on training images in the feature bank
    knn_at_init: bool = True  # also measure kNN before the first epoch
    # evaluation protocols after pre-training (raycl.evaluate, raycl.protocols)
    linear_layer: int = 0  # features the linear probe reads: 0 = backbone h, k = head layer k's output
    linear_weight_decays: tuple = (0.0, 1e-4, 1e-3, 1e-2, 1e-1)  # L2 grid, chosen on validation
    linear_steps: int = 200  # L-BFGS iterations per linear fit
    finetune_epochs: int = 30  # fine-tuning epochs over the labelled subset
    finetune_batch_size: int = 64
    finetune_lr: float = 0.1  # SGD (Nesterov, momentum 0.9) lr per 256 images, cosine decay
    finetune_weight_decay: float = 0.0
    subset_seed: int = 0  # seed of the class-balanced label subsets (1%, 10%, ...)
    distill_epochs: int = 10  # epochs over all training images (unlabelled part included)
    distill_temperature: float = 1.0  # softmax temperature of teacher and student
    distill_alpha: float = 0.0  # weight of the labelled cross-entropy (1 - alpha: distillation)
    distill_student: str = "random"  # student initialisation: "random" or "pretrained"
    transform_tasks: tuple = TRANSFORM_TASKS  # transformation probe tasks
    transform_images: int = 2000  # training images per transformation-probe task
    extract_actors: int = 1  # Ray Data actors extracting features when Ray is running


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
    preset: str | None = None

    # ----------------------------------------------------------------- conversions
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Config":
        return _from_dict(cls, d, prefix="")

    def flat(self) -> dict[str, Any]:
        """``{"optim.lr": 0.3, ...}``: one entry per leaf field (handy for result tables)."""
        out: dict[str, Any] = {}
        for section, value in self.to_dict().items():
            if isinstance(value, dict):
                for k, v in value.items():
                    out[f"{section}.{k}"] = v
            else:
                out[section] = value
        return out

    def override(self, overrides: Mapping[str, Any]) -> "Config":
        """Return a copy with ``overrides`` applied (dotted paths, section dicts or unique leaf names)."""
        d = self.to_dict()
        for key, value in overrides.items():
            if key in _SECTIONS and isinstance(value, Mapping):
                for k, v in value.items():
                    _set_path(d, f"{key}.{k}", v)
            else:
                _set_path(d, resolve_key(key), value)
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

    # ----------------------------------------------------------------- validation
    def validate(self) -> "Config":
        """Raise :class:`ConfigError` on the first bad value; return self when all is well."""
        m, d, a, mo, o, t, e = (self.method, self.data, self.augment, self.model, self.optim,
                                self.train, self.eval)
        _one_of("method.name", m.name, METHODS)
        _positive("method.temperature", m.temperature)
        self._validate_method()

        _one_of("data.source", d.source, SOURCES)
        if d.source in ("parquet", "folder") and not d.path:
            raise ConfigError("data.path", d.path, f"a path is required for data.source={d.source!r}")
        _int_at_least("data.image_size", d.image_size, 8)
        if d.num_images is not None:
            _int_at_least("data.num_images", d.num_images, 2)
        if d.num_test_images is not None:
            _int_at_least("data.num_test_images", d.num_test_images, 1)
        if not (0.0 < d.val_fraction < 1.0):
            raise ConfigError("data.val_fraction", d.val_fraction, "a fraction in (0, 1)")

        _one_of("augment.recipe", a.recipe, RECIPES, prefixes=("pair:",))
        _int_at_least("augment.crop_size", a.crop_size, 8)
        if a.crop_scale is not None:
            _scale_range("augment.crop_scale", a.crop_scale)
        _int_at_least("augment.small_crops", a.small_crops, 0)
        if a.small_crops:
            _int_at_least("augment.small_crop_size", a.small_crop_size, 4)
            if a.small_crop_size >= a.crop_size:
                raise ConfigError("augment.small_crop_size", a.small_crop_size,
                                  f"smaller than the large crops, augment.crop_size = {a.crop_size}")
            _scale_range("augment.small_crop_scale", a.small_crop_scale)
            if m.name != "swav":
                raise ConfigError("augment.small_crops", a.small_crops,
                                  f"0 for method {m.name!r} (multi-crop is used by swav)")
        if not (0.0 <= a.color_strength <= 2.0):
            raise ConfigError("augment.color_strength", a.color_strength, "a number in [0, 2]")
        _one_of("augment.compute", a.compute, COMPUTES)
        _one_of("augment.backend", a.backend, AUGMENT_BACKENDS)
        _int_at_least("augment.actors", a.actors, 1)
        _positive("augment.cpus_per_actor", a.cpus_per_actor)
        _int_at_least("augment.batch_size", a.batch_size, 1)

        _one_of("model.backbone", mo.backbone, BACKBONES)
        _int_at_least("model.proj_depth", mo.proj_depth, 0)
        if mo.proj_depth > 4:
            raise ConfigError("model.proj_depth", mo.proj_depth, "an integer from 0 to 4")
        _int_at_least("model.proj_hidden_dim", mo.proj_hidden_dim, 1)
        _int_at_least("model.proj_out_dim", mo.proj_out_dim, 1)
        _int_at_least("model.pred_depth", mo.pred_depth, 1)
        if mo.pred_depth > 4:
            raise ConfigError("model.pred_depth", mo.pred_depth, "an integer from 1 to 4")
        _int_at_least("model.pred_hidden_dim", mo.pred_hidden_dim, 1)
        _int_at_least("model.finetune_from", mo.finetune_from, 0)
        if mo.finetune_from > mo.proj_depth:
            raise ConfigError("model.finetune_from", mo.finetune_from,
                              f"at most model.proj_depth = {mo.proj_depth}")
        if m.name in ("moco", "mocov2", "byol", "swav") and mo.proj_depth == 0:
            raise ConfigError("model.proj_depth", 0, f"at least 1 for method {m.name!r}")

        _one_of("optim.optimizer", o.optimizer, OPTIMIZERS)
        _positive("optim.lr", o.lr)
        _one_of("optim.lr_scaling", o.lr_scaling, LR_SCALINGS)
        if o.weight_decay < 0:
            raise ConfigError("optim.weight_decay", o.weight_decay, "a number >= 0")
        if not (0.0 <= o.momentum < 1.0):
            raise ConfigError("optim.momentum", o.momentum, "a number in [0, 1)")
        if o.warmup_epochs < 0:
            raise ConfigError("optim.warmup_epochs", o.warmup_epochs, "a number >= 0")
        _one_of("optim.schedule", o.schedule, SCHEDULES)
        if not (0.0 <= o.min_lr_ratio <= 1.0):
            raise ConfigError("optim.min_lr_ratio", o.min_lr_ratio, "a number in [0, 1]")
        _positive("optim.predictor_lr_scale", o.predictor_lr_scale)
        if m.name not in PREDICTOR_METHODS:
            why = f"for method {m.name!r}, which has no predictor ({', '.join(PREDICTOR_METHODS)} has)"
            if o.predictor_lr_scale != 1.0:
                raise ConfigError("optim.predictor_lr_scale", o.predictor_lr_scale, "1.0 " + why)
            if o.predictor_fixed_lr:
                raise ConfigError("optim.predictor_fixed_lr", o.predictor_fixed_lr, "false " + why)

        _int_at_least("train.epochs", t.epochs, 1)
        _int_at_least("train.workers", t.workers, 1)
        _int_at_least("train.batch_size", t.batch_size, 2)
        if t.batch_size % t.workers:
            raise ConfigError("train.batch_size", t.batch_size,
                              f"a multiple of train.workers = {t.workers}")
        if t.batch_size // t.workers < 2:
            raise ConfigError("train.batch_size", t.batch_size,
                              f"at least 2 images per worker ({2 * t.workers} for {t.workers} workers)")
        _positive("train.cpus_per_worker", t.cpus_per_worker)
        _int_at_least("train.checkpoint_every", t.checkpoint_every, 1)
        _int_at_least("train.num_to_keep", t.num_to_keep, 1)
        if o.warmup_epochs > t.epochs:
            raise ConfigError("optim.warmup_epochs", o.warmup_epochs,
                              f"at most train.epochs = {t.epochs}")

        _int_at_least("eval.knn_k", e.knn_k, 1)
        _positive("eval.knn_temperature", e.knn_temperature)
        _int_at_least("eval.knn_every", e.knn_every, 0)
        if e.knn_bank_size is not None:
            _int_at_least("eval.knn_bank_size", e.knn_bank_size, 1)
        _int_at_least("eval.linear_layer", e.linear_layer, 0)
        if e.linear_layer > mo.proj_depth:
            raise ConfigError("eval.linear_layer", e.linear_layer,
                              f"0 (backbone h) to model.proj_depth = {mo.proj_depth}")
        wds = e.linear_weight_decays
        if not (isinstance(wds, (tuple, list)) and wds and all(
                isinstance(w, (int, float)) and not isinstance(w, bool) and 0 <= w < math.inf
                for w in wds)):
            raise ConfigError("eval.linear_weight_decays", wds, "a non-empty list of numbers >= 0")
        _int_at_least("eval.linear_steps", e.linear_steps, 1)
        _int_at_least("eval.finetune_epochs", e.finetune_epochs, 1)
        _int_at_least("eval.finetune_batch_size", e.finetune_batch_size, 2)
        _positive("eval.finetune_lr", e.finetune_lr)
        if not isinstance(e.finetune_weight_decay, (int, float)) or e.finetune_weight_decay < 0:
            raise ConfigError("eval.finetune_weight_decay", e.finetune_weight_decay, "a number >= 0")
        _int_at_least("eval.subset_seed", e.subset_seed, 0)
        _int_at_least("eval.distill_epochs", e.distill_epochs, 1)
        _positive("eval.distill_temperature", e.distill_temperature)
        if not (isinstance(e.distill_alpha, (int, float)) and 0.0 <= e.distill_alpha <= 1.0):
            raise ConfigError("eval.distill_alpha", e.distill_alpha, "a number in [0, 1]")
        _one_of("eval.distill_student", e.distill_student, ("random", "pretrained"))
        if not (isinstance(e.transform_tasks, (tuple, list)) and e.transform_tasks
                and all(t in TRANSFORM_TASKS for t in e.transform_tasks)):
            raise ConfigError("eval.transform_tasks", e.transform_tasks,
                              "a non-empty list of " + ", ".join(TRANSFORM_TASKS))
        _int_at_least("eval.transform_images", e.transform_images, 8)
        _int_at_least("eval.extract_actors", e.extract_actors, 1)

        if not self.storage_path:
            raise ConfigError("storage_path", self.storage_path, "a non-empty path or URI")
        return self

    def _validate_method(self) -> None:
        m, t = self.method, self.train
        _int_at_least("method.queue_size", m.queue_size, 0)
        if m.name in ("moco", "mocov2") and m.queue_size == 0:
            raise ConfigError("method.queue_size", 0, f"at least one batch of keys for {m.name!r} "
                              f"(a multiple of train.batch_size = {t.batch_size})")
        if m.queue_size and isinstance(t.batch_size, int) and t.batch_size > 0 \
                and m.queue_size % t.batch_size:
            raise ConfigError("method.queue_size", m.queue_size,
                              f"a multiple of the global batch train.batch_size = {t.batch_size}")
        if not isinstance(m.momentum, (int, float)) or not (0.0 <= m.momentum <= 1.0):
            raise ConfigError("method.momentum", m.momentum, "a number in [0, 1]")
        _one_of("method.momentum_schedule", m.momentum_schedule, MOMENTUM_SCHEDULES)
        _int_at_least("method.key_bn_groups", m.key_bn_groups, 0)
        if m.key_bn_groups and isinstance(t.workers, int) and t.workers > 0:
            if m.key_bn_groups % t.workers:
                raise ConfigError("method.key_bn_groups", m.key_bn_groups,
                                  f"a multiple of train.workers = {t.workers}")
            if t.batch_size % m.key_bn_groups or t.batch_size // m.key_bn_groups < 2:
                raise ConfigError("method.key_bn_groups", m.key_bn_groups,
                                  f"a divisor of train.batch_size = {t.batch_size} leaving at least "
                                  "2 keys per group")
        _int_at_least("method.prototypes", m.prototypes, 2)
        _positive("method.epsilon", m.epsilon)
        _int_at_least("method.sinkhorn_iters", m.sinkhorn_iters, 1)
        _int_at_least("method.queue_start_epoch", m.queue_start_epoch, 0)
        _int_at_least("method.freeze_prototypes_epochs", m.freeze_prototypes_epochs, 0)


_SECTIONS = {f.name: f.type for f in fields(Config) if f.name in
             ("method", "data", "augment", "model", "optim", "train", "eval")}
_SECTION_CLASSES = {"method": MethodConfig, "data": DataConfig, "augment": AugmentConfig,
                    "model": ModelConfig, "optim": OptimConfig, "train": TrainConfig,
                    "eval": EvalConfig}
_TOP_LEVEL = ("storage_path", "name", "preset")


def _leaf_index() -> dict[str, list[str]]:
    index: dict[str, list[str]] = {}
    for section, cls in _SECTION_CLASSES.items():
        for f in fields(cls):
            index.setdefault(f.name, []).append(f"{section}.{f.name}")
    return index


_LEAVES = _leaf_index()


def all_keys() -> list[str]:
    """Every dotted key a Config accepts."""
    return sorted([p for paths in _LEAVES.values() for p in paths] + list(_TOP_LEVEL))


def resolve_key(key: str) -> str:
    """Map ``"epochs"`` to ``"train.epochs"``; dotted keys are checked and returned unchanged."""
    if key in _TOP_LEVEL:
        return key
    if "." in key:
        section, _, leaf = key.partition(".")
        cls = _SECTION_CLASSES.get(section)
        if cls is None or leaf not in {f.name for f in fields(cls)}:
            raise ConfigError(key, "(override)", "an existing field; known fields: " + ", ".join(all_keys()))
        return key
    paths = _LEAVES.get(key)
    if not paths:
        raise ConfigError(key, "(override)", "an existing field; known fields: " + ", ".join(all_keys()))
    if len(paths) > 1:
        raise ConfigError(key, "(override)", "an unambiguous name; use one of " + ", ".join(paths))
    return paths[0]


def _set_path(d: dict, dotted: str, value: Any) -> None:
    if "." not in dotted:
        d[dotted] = value
        return
    section, _, leaf = dotted.partition(".")
    d[section][leaf] = value


def _from_dict(cls, d: Mapping[str, Any], prefix: str):
    known = {f.name: f for f in fields(cls)}
    unknown = set(d) - set(known)
    if unknown:
        name = prefix + sorted(unknown)[0]
        raise ConfigError(name, d[sorted(unknown)[0]], "an existing field of " + cls.__name__ +
                          ": " + ", ".join(known))
    kwargs = {}
    for name, value in d.items():
        sub = _SECTION_CLASSES.get(name) if cls is Config else None
        if sub is not None and isinstance(value, Mapping):
            kwargs[name] = _from_dict(sub, value, prefix=f"{name}.")
        elif sub is not None and is_dataclass(value):
            kwargs[name] = value
        else:
            kwargs[name] = _coerce(prefix + name, value, known[name].default)
    return cls(**kwargs)


def _coerce(name: str, value: Any, default: Any) -> Any:
    """Light type coercion: ints given for floats, strings from the CLI for numbers and booleans."""
    if isinstance(value, str) and not isinstance(default, str) and default is not None:
        value = parse_value(value)
    if isinstance(value, list) and (default is None or isinstance(default, tuple)):
        return tuple(value)
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(name, value, "true or false")
        return value
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(default, int) and isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(default, (int, float)) and not isinstance(value, (int, float)):
        raise ConfigError(name, value, f"a number (like {default!r})")
    if isinstance(default, int) and not isinstance(default, bool) and isinstance(value, float):
        raise ConfigError(name, value, "an integer")
    return value


def parse_value(text: str) -> Any:
    """Parse a CLI value: numbers, true/false/none, Python literals; anything else stays a string."""
    lowered = text.strip().lower()
    if lowered in ("true", "yes", "on"):
        return True
    if lowered in ("false", "no", "off"):
        return False
    if lowered in ("none", "null"):
        return None
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _one_of(name: str, value: Any, allowed: tuple, prefixes: tuple = ()) -> None:
    if value in allowed or (isinstance(value, str) and value.startswith(prefixes) and prefixes):
        return
    extra = [p + "..." for p in prefixes]
    raise ConfigError(name, value, "one of " + ", ".join(list(map(str, allowed)) + extra))


def _positive(name: str, value: Any) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0 \
            or not math.isfinite(value):
        raise ConfigError(name, value, "a finite number > 0")


def _scale_range(name: str, value: Any) -> None:
    ok = (isinstance(value, (tuple, list)) and len(value) == 2
          and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
          and 0.0 < value[0] <= value[1] <= 1.0)
    if not ok:
        raise ConfigError(name, value, "a pair (low, high) with 0 < low <= high <= 1")


def _int_at_least(name: str, value: Any, low: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ConfigError(name, value, f"an integer >= {low}")


# --------------------------------------------------------------------------- presets
def preset(name: str, method: str = "simclr") -> Config:
    """The papers' defaults for ``method`` at one of three scales.

    The scale (``tiny``, ``cifar10``, ``imagenet``) sets data, backbone, batch and SimCLR's recipe;
    :func:`method_defaults` then puts in each method's own values from its paper (MoCo's queue,
    temperature and SGD; BYOL's predictor, target decay and LARS; SwAV's prototypes, Sinkhorn and
    multi-crop; SimCLRv2's 3-layer head). ``tiny`` keeps its AdamW for every method.
    """
    cfg = _scale_preset(name)
    if method not in METHODS:
        raise ConfigError("method.name", method, "one of " + ", ".join(METHODS))
    return cfg.override({"method.name": method, **method_defaults(method, name)})


def method_defaults(method: str, scale: str) -> dict[str, Any]:
    """Overrides that turn a scale preset (SimCLR's) into ``method``'s paper defaults."""
    tiny, imagenet = scale == "tiny", scale == "imagenet"
    paper_optim = not tiny  # tiny keeps AdamW so that a few CPU epochs learn
    if method == "simclr":
        return {}
    if method == "simclrv2":  # Chen et al. 2020b: 3-layer head, fine-tune from its first layer
        return {"model.proj_depth": 3, "model.finetune_from": 1}
    if method in ("moco", "mocov2"):
        v2 = method == "mocov2"
        out = {
            "method.temperature": 0.2 if v2 else 0.07,
            "method.momentum": 0.99 if tiny else 0.999,
            "method.momentum_schedule": "constant",
            "method.queue_size": 1024 if tiny else 65536 if imagenet else 4096,
            "method.shuffle_bn": True,
            "model.sync_bn": False,  # MoCo: per-worker BN for queries, shuffled BN for keys
            "model.proj_depth": 2 if v2 else 1,  # v2: MLP head; v1: linear (fc) head
            "model.proj_hidden_dim": 256 if tiny else 2048,
            "augment.recipe": "moco_v2" if v2 else "moco_v1",
            "augment.blur": v2 and not tiny,
        }
        if paper_optim:  # SGD lr 0.03 per 256, wd 1e-4, momentum 0.9; v1 step decay, v2 cosine
            out.update({"optim.optimizer": "sgd", "optim.lr": 0.03, "optim.weight_decay": 1e-4,
                        "optim.momentum": 0.9, "optim.warmup_epochs": 0.0,
                        "optim.schedule": "cosine" if v2 else "step"})
        return out
    if method == "byol":
        hidden = 256 if tiny else 4096
        out = {
            "method.momentum": 0.996,  # BYOL: 0.99 for short runs; tiny below
            "method.momentum_schedule": "cosine",
            "model.proj_depth": 2, "model.proj_hidden_dim": hidden,
            "model.proj_out_dim": 64 if tiny else 256,
            "model.pred_depth": 2, "model.pred_hidden_dim": hidden,
            "augment.recipe": "byol",
            "augment.blur": not tiny,
        }
        if paper_optim:  # LARS lr 0.2 per 256, wd 1.5e-6
            out.update({"optim.optimizer": "lars", "optim.lr": 0.2, "optim.weight_decay": 1.5e-6})
        else:
            # tiny: BYOL's paper colour strength (1.0, not SimCLR's CIFAR 0.5), crops of (0.5, 1),
            # τ_base 0.98, 8 000 images (250 steps in 2 epochs) and a predictor at 5× the peak lr,
            # fixed (SimSiam's fixed predictor lr, DirectPred's faster predictor). Otherwise the
            # online network first learns the target's shared mean direction and kNN falls below
            # the random-init network's for ~4 epochs (0.29 → 0.19 after 2, 0.29 at 8). Final kNN
            # minus kNN at init after 2 epochs, 5 seeds in one process: min +0.068, mean +0.090
            # (predictor 10×: +0.063/+0.081; 10× on the decaying schedule +0.043/+0.066; 1×
            # −0.026/−0.006). Leaving out one other change (with 10×): crop (0.08, 1) −0.027/+0.010,
            # 4 000 images +0.007/+0.014, colour 0.5 +0.027/+0.054, τ_base 0.99 +0.031/+0.070.
            # Under Ray (2 workers, seeds 0–3): 0.31 → 0.41, 0.31 → 0.37, 0.32 → 0.41, 0.36 → 0.46.
            out.update({"method.momentum": 0.98, "augment.color_strength": 1.0,
                        "augment.crop_scale": (0.5, 1.0), "data.num_images": 8000,
                        "optim.predictor_lr_scale": 5.0, "optim.predictor_fixed_lr": True})
        return out
    if method == "swav":
        out = {
            # tiny: τ 0.2, AdamW lr 1e-2 and 8 000 images. With the paper's τ 0.1 the swapped-
            # prediction loss stays near ln K over 2 epochs (3.32 → 3.18) and kNN falls below the
            # random-init network's (0.29 → 0.21); with 0.2 the loss falls (3.0 → 2.7) and kNN
            # rises (0.29 → 0.52 after 6 epochs), but 112 steps leave it mid-way (+0.055 mean,
            # +0.04 min on 5 seeds in one process; 0.28 → 0.27 under Ray with seed 1). 8 000
            # images (250 steps in 2 epochs): +0.16 mean, +0.11 min on 5 seeds; under Ray
            # (2 workers) 0.31 → 0.53 (seed 0) and 0.31 → 0.46 (seed 1).
            "method.temperature": 0.2 if tiny else 0.1,
            "method.epsilon": 0.05, "method.sinkhorn_iters": 3,
            "method.prototypes": 30 if tiny else 3000,
            "method.queue_size": 3840 if imagenet else 0,  # SwAV: 3840 for batch 256
            "method.queue_start_epoch": 15, "method.freeze_prototypes_epochs": 1,
            "model.proj_depth": 2, "model.proj_out_dim": 64 if tiny else 128,
            "augment.recipe": "swav", "augment.crop_scale": (0.14, 1.0),
            "augment.small_crops": 6 if imagenet else 2,
            "augment.small_crop_size": 96 if imagenet else 16,
            "augment.small_crop_scale": (0.05, 0.14),
        }
        if imagenet:  # batch 256 with a queue
            out["train.batch_size"] = 256
        if paper_optim:  # LARS, lr 4.8 at batch 4096 = 0.3 per 256, final lr 0.001 × peak
            out.update({"optim.optimizer": "lars", "optim.lr": 0.3, "optim.weight_decay": 1e-6,
                        "optim.min_lr_ratio": 0.001})
        else:  # tiny: AdamW lr 1e-2 over 8 000 images (250 steps in 2 epochs), see above
            out.update({"optim.lr": 1e-2, "data.num_images": 8000})
        return out
    raise ConfigError("method.name", method, "one of " + ", ".join(METHODS))


def _scale_preset(name: str) -> Config:
    """SimCLR's defaults at three scales (see :func:`preset`).

    - ``tiny``: CPU, about a minute: small CNN on the embedded 32 px set, AdamW (not a paper recipe:
      chosen so a few CPU epochs clearly learn).
    - ``cifar10``: ResNet-18 with the CIFAR stem, SimCLR's CIFAR recipe (appendix B.9: colour strength
      0.5, no blur, τ = 0.5, LARS, lr 1.0 × B/256, wd 1e-6, 10 warm-up epochs, cosine).
    - ``imagenet``: ResNet-50 at 224 px, SimCLR's ImageNet recipe (colour strength 1, blur, batch 4096,
      LARS lr 0.3 × B/256, wd 1e-6, τ = 0.1, 3-layer-deep heads are SimCLRv2's).
    """
    if name == "tiny":
        return Config(
            method=MethodConfig(temperature=0.2),
            data=DataConfig(source="embedded", image_size=32, num_images=4000,
                            num_test_images=500),
            augment=AugmentConfig(crop_size=32, color_strength=0.5, blur=False, compute="tasks",
                                  actors=1, cpus_per_actor=1.0, batch_size=128),
            model=ModelConfig(backbone="tiny_cnn", proj_depth=2, proj_hidden_dim=256,
                              proj_out_dim=64),
            # AdamW trains the small CNN in a few CPU epochs (kNN 0.25 → 0.40 in 4 epochs, one
            # process); SGD at the same budget barely moved (0.25 → 0.14). Batch 64 and 4 000
            # images (56 steps an epoch, 400 validation images): after 2 epochs (2 workers, seed 0)
            # kNN 0.29 at init → SimCLR 0.39, SimCLRv2 0.39, MoCo 0.46, MoCo v2 0.37. With 2 000
            # images SimCLRv2 was marginal (0.245 → 0.26) and the 200-image split noisy (±0.03).
            optim=OptimConfig(optimizer="adamw", lr=6e-3, weight_decay=1e-4, warmup_epochs=0.5),
            train=TrainConfig(epochs=4, batch_size=64, workers=2, cpus_per_worker=1.0),
            eval=EvalConfig(knn_k=20, knn_temperature=0.1),
            preset="tiny",
        )
    if name == "cifar10":
        return Config(
            method=MethodConfig(temperature=0.5),
            data=DataConfig(source="cifar10", image_size=32),
            augment=AugmentConfig(crop_size=32, color_strength=0.5, blur=False, actors=4,
                                  cpus_per_actor=1.0, batch_size=256),
            model=ModelConfig(backbone="resnet18_cifar", proj_depth=2, proj_hidden_dim=2048,
                              proj_out_dim=128),
            optim=OptimConfig(optimizer="lars", lr=1.0, weight_decay=1e-6, warmup_epochs=10),
            train=TrainConfig(epochs=500, batch_size=512, workers=1, cpus_per_worker=4.0),
            eval=EvalConfig(knn_k=200, knn_temperature=0.1),
            preset="cifar10",
        )
    if name == "imagenet":
        return Config(
            method=MethodConfig(temperature=0.1),
            data=DataConfig(source="folder", path=None, image_size=256),
            augment=AugmentConfig(crop_size=224, color_strength=1.0, blur=True, actors=32,
                                  cpus_per_actor=1.0, batch_size=128),
            model=ModelConfig(backbone="resnet50", proj_depth=2, proj_hidden_dim=2048,
                              proj_out_dim=128),
            optim=OptimConfig(optimizer="lars", lr=0.3, weight_decay=1e-6, warmup_epochs=10),
            train=TrainConfig(epochs=100, batch_size=4096, workers=8, cpus_per_worker=8.0,
                              use_gpu=True),
            eval=EvalConfig(knn_k=200, knn_temperature=0.1, knn_bank_size=100_000),
            preset="imagenet",
        )
    raise ConfigError("preset", name, "one of " + ", ".join(PRESETS))
