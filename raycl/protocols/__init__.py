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

Modules (this package re-exports their public names): :mod:`~raycl.protocols.names` (protocol
names), :mod:`~raycl.protocols.subsets` (label subsets), :mod:`~raycl.protocols.linear` (linear
probe), :mod:`~raycl.protocols.finetuning` (fine-tuning, distillation),
:mod:`~raycl.protocols.transform` (transformation probe), :mod:`~raycl.protocols.features` (feature
extraction), :mod:`~raycl.protocols.session` (one checkpoint's data, networks and protocol runs),
:mod:`~raycl.protocols.table` (``evaluation.parquet``) and :mod:`~raycl.protocols.evaluation`
(:func:`evaluate`; checkpoints are found and read by :func:`raycl.train.state.load_checkpoint`).
"""

from raycl.protocols.evaluation import evaluate
from raycl.protocols.features import FeatureActor, extract_local, extract_ray, layer_outputs
from raycl.protocols.finetuning import Classifier, distill, finetune, light_augment, predict
from raycl.protocols.linear import LinearModel, fit_linear, linear_probe
from raycl.protocols.names import BASE_PROTOCOLS, Protocol, parse_protocols
from raycl.protocols.subsets import SUBSET_DIR, label_subset, save_subset, subset_file
from raycl.protocols.table import EVALUATION, read_evaluation, write_evaluation
from raycl.protocols.transform import (
    TRANSFORM_CLASSES,
    apply_transform,
    balanced_targets,
    transformation_probe,
)

__all__ = [
    "BASE_PROTOCOLS",
    "EVALUATION",
    "SUBSET_DIR",
    "TRANSFORM_CLASSES",
    "Classifier",
    "FeatureActor",
    "LinearModel",
    "Protocol",
    "apply_transform",
    "balanced_targets",
    "distill",
    "evaluate",
    "extract_local",
    "extract_ray",
    "fit_linear",
    "finetune",
    "label_subset",
    "layer_outputs",
    "light_augment",
    "linear_probe",
    "parse_protocols",
    "predict",
    "read_evaluation",
    "save_subset",
    "subset_file",
    "transformation_probe",
    "write_evaluation",
]
