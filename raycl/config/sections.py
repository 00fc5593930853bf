"""The sections of a run's configuration: one small dataclass per concern, and the method's section.

The allowed names of the torch-side tables (backbones, optimizers, recipes, backends, probe tasks)
are kept here, torch-free; ``tests/test_config.py`` checks that each table agrees with its name list.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from raycl import plugins
from raycl.checks import ConfigError, coerce
from raycl.methods import check_method_name, method_names, method_spec

SOURCES = ("embedded", "parquet", "folder", "cifar10", "cifar100", "stl10")  # raycl.data.sources
ON_BAD_IMAGE = ("skip", "fail")  # raycl.data.decode
BACKBONES = ("tiny_cnn", "resnet18_cifar", "resnet18", "resnet50")  # raycl.models
OPTIMIZERS = ("sgd", "lars", "adamw")  # raycl.optim
LR_SCALINGS = ("linear", "sqrt", "none")
SCHEDULES = ("cosine", "step", "constant")
RECIPES = ("simclr", "moco_v1", "moco_v2", "byol", "swav")  # raycl.data.augment
plugins.RESERVED["recipe"] = (*RECIPES, "pair")
COMPUTES = ("actors", "tasks")
AUGMENT_BACKENDS = ("auto", "fused", "torch")  # raycl.data.augment
# ops augment.remove can take out of a recipe (BYOL Table 17); "color" is jitter and grayscale
REMOVABLE_OPS = ("flip", "jitter", "grayscale", "color", "blur", "solarize")  # raycl.data.augment
# ops a "pair:a,b" recipe composes (SimCLR Fig. 5): the names of raycl.data.augment.OPS
PAIR_OPS = ("crop", "flip", "color", "grayscale", "blur", "solarize", "cutout", "sobel", "noise", "rotate")
plugins.RESERVED["op"] = PAIR_OPS
TRANSFORM_TASKS = ("color", "rotation", "sobel", "noise")  # raycl.protocols
TRACKERS = ("tensorboard", "mlflow", "wandb")  # raycl.tracking
PRECISIONS = ("fp32", "bf16")  # raycl.train.accel
AUTO_FIELDS = ("augment.actors",)  # numeric fields that also take "auto"


class MethodConfig:
    """Which self-supervised method (``name``), and that method's own options.

    The options are those its :class:`~raycl.methods.spec.MethodSpec` declares, read as attributes
    (``cfg.method.temperature``) and set by dotted keys (``method.temperature``); a key the chosen
    method does not have is a :class:`ConfigError` naming the methods that do have it.
    """

    def __init__(self, name: str = "simclr", **options: Any):
        check_method_name(name)
        defaults = method_spec(name).option_defaults()
        for key in options:
            if key not in defaults:
                raise ConfigError(f"method.{key}", options[key], unknown_option(name, key))
        self.name = name
        self.options = {k: coerce(f"method.{k}", options.get(k, d), d) for k, d in defaults.items()}

    def __getattr__(self, key: str) -> Any:
        options = self.__dict__.get("options", {})
        if key in options:
            return options[key]
        raise AttributeError(f"method {self.__dict__.get('name')!r} has no option {key!r}")

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, **self.options}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "MethodConfig":
        d = dict(d)
        return cls(d.pop("name", "simclr"), **d)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, MethodConfig) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return "MethodConfig(" + ", ".join(f"{k}={v!r}" for k, v in self.to_dict().items()) + ")"


def unknown_option(method: str, key: str) -> str:
    """What to say about ``method.<key>`` on a method without that option."""
    having = [m for m in method_names() if key in method_spec(m).option_defaults()]
    fields = ", ".join(["name", *method_spec(method).option_defaults()])
    where = f"; {key} belongs to {', '.join(having)}" if having else ""
    return f"a field of method {method!r}: {fields}{where}"


@dataclass
class DataConfig:
    """Where images come from and how the labelled set is split."""

    source: str = "embedded"
    path: str | None = None  # file/folder/root for non-embedded sources
    image_size: int = 32  # decoded (stored) image side, before augmentation
    num_images: int | None = None  # a seeded, class-balanced subset of N training images (None: all)
    num_test_images: int | None = None
    val_fraction: float = 0.1  # stratified validation split of the training set (kNN queries)
    download: bool = False  # torchvision sets only
    on_bad_image: str = "skip"  # an undecodable file: "skip" (counted, named in the run's log) or "fail"
    # pre-train on images without labels (a Parquet file needs no label column, a folder no class
    # folders); the kNN monitor and the protocols then read eval.data_source, or do not run
    unlabelled: bool = False
    shuffle_rows: int = 4096  # Parquet: rows of whole row groups shuffled together each epoch


@dataclass
class AugmentConfig:
    """Two-view augmentation and the Ray Data actors that run it."""

    recipe: str = "simclr"
    crop_size: int = 32  # output side of every view (of the large views with multi-crop)
    crop_scale: tuple | None = None  # area range of the large views' random resized crop (None: the recipe's)
    small_crops: int = 0  # multi-crop: V extra small views
    small_crop_size: int = 16
    small_crop_scale: tuple = (0.05, 0.14)
    color_strength: float = 0.5
    blur: bool = False
    remove: tuple = ()  # ops taken out of every view, e.g. ("flip", "blur"): see REMOVABLE_OPS
    compute: str = "actors"  # "actors": an actor pool; "tasks": stateless tasks (no per-epoch start-up)
    # "auto": the compiled CPU kernel where it applies, else torch ops; "fused": the kernel or an
    # error; "torch": torch ops only. Same views either way.
    backend: str = "auto"
    # augmentation actor pool size (scales apart from training workers), or "auto": sized to feed the
    # training workers (raycl.data.sizing) from the two rates below
    actors: int | str = 1
    cpus_per_actor: float = 1.0
    images_per_s_per_worker: float | None = None  # what one training worker takes (None: stated GPU figure)
    images_per_s_per_core: float | None = None  # what one augmentation CPU gives (None: raycl's measured rate)
    batch_size: int = 256  # images per map_batches call
    node_resource: str | None = None  # custom Ray resource that pins augmentation to CPU-only nodes


@dataclass
class ModelConfig:
    """Backbone f, projection head g and (for methods with one) the predictor q."""

    backbone: str = "tiny_cnn"
    proj_depth: int = 2  # number of Linear layers in g (0: no head)
    proj_hidden_dim: int = 512
    proj_out_dim: int = 128
    pred_depth: int = 2  # predictor q: number of Linear layers
    pred_hidden_dim: int = 512
    finetune_from: int = 0  # head layers kept when fine-tuning (SimCLRv2: 1, the head's first layer)
    sync_bn: bool = True  # global BN across workers (SimCLR's "global BN")
    # start from these weights: a raycl.export file, a torchvision ResNet state dict or a raycl
    # checkpoint / run directory (raycl.train.init_from); None: a random initialisation
    init_from: str | None = None


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
    # A predictor's own rate (methods with one). SimSiam (Chen & He 2021, §4.2) keeps the
    # predictor's lr fixed; Tian et al. 2021 (DirectPred) show a faster predictor helps.
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
    precision: str = "fp32"  # "bf16": the forward pass under bf16 autocast (raycl.train.accel)
    channels_last: bool = False  # model and inputs in channels-last memory format (faster convs on GPUs)
    compile: bool = False  # torch.compile the data-parallel model
    seed: int = 0
    checkpoint_every: int = 1  # epochs between checkpoints (the last epoch always checkpoints)
    # also keep the latest position every N optimizer steps (0: only at epoch ends), for long epochs:
    # a restarted worker group then resumes mid-epoch (raycl.train.state.save_step_state)
    checkpoint_every_steps: int = 0
    num_to_keep: int = 2  # checkpoints kept on disk
    # restarts of the worker group after a lost worker or node (-1: no limit); a non-finite loss or
    # an undecodable image under data.on_bad_image="fail" is never retried
    max_failures: int = 3
    cluster_wait_s: float = 600.0  # how long a run waits for an autoscaling cluster (RAY_ADDRESS) to grow
    trackers: tuple = ()  # per-epoch metrics also to these, of TRACKERS (raycl.tracking)
    node_resource: str | None = None  # custom Ray resource that pins the training workers to their nodes


@dataclass
class EvalConfig:
    """The per-epoch kNN monitor (weighted kNN on L2-normalised backbone features) and the settings
    of the evaluation protocols run after pre-training (:mod:`raycl.protocols`)."""

    knn_k: int = 200
    knn_temperature: float = 0.1
    knn_every: int = 1  # epochs between kNN evaluations (0: never)
    knn_bank_size: int | None = None  # cap on training images in the feature bank
    knn_at_init: bool = True  # also measure kNN before the first epoch
    # a separate labelled source for the kNN monitor and the protocols (its train split becomes
    # the kNN bank and validation queries, its test split the protocols' test set); None: data.*
    data_source: str | None = None
    data_path: str | None = None
    data_num_images: int | None = None  # a class-balanced subset of its training split
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


# the sections with fixed fields, by their name in a Config (``method`` is the chosen method's own)
SECTION_CLASSES = {"data": DataConfig, "augment": AugmentConfig, "model": ModelConfig,
                   "optim": OptimConfig, "train": TrainConfig, "eval": EvalConfig}
SECTIONS = ("method", *SECTION_CLASSES)
TOP_LEVEL = ("storage_path", "name", "preset", "plugins")
