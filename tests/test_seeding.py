"""Derived seeds: deterministic, distinct per purpose and key, valid for torch and NumPy."""

import subprocess
import sys

import pytest
import torch

from raycl.seeding import derive_seed, numpy_rng


def test_derived_seeds_are_stable_distinct_and_fit_torch():
    a = derive_seed(0, "views", 3, 128)
    assert a == derive_seed(0, "views", 3, 128)
    others = {derive_seed(0, "views", 3, 129), derive_seed(0, "views", 4, 128),
              derive_seed(1, "views", 3, 128), derive_seed(0, "local_shuffle", 3, 128)}
    assert a not in others and len(others) == 4
    assert 0 <= a < 2 ** 63
    torch.Generator().manual_seed(a)
    assert numpy_rng(0, "knn_bank").integers(1 << 30) == numpy_rng(0, "knn_bank").integers(1 << 30)


def test_derived_seeds_do_not_depend_on_the_process():
    code = "from raycl.seeding import derive_seed; print(derive_seed(7, 'moco_key_shuffle', 11))"
    out = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={"PYTHONHASHSEED": str(h)}, check=True).stdout for h in (1, 2)}
    assert out == {f"{derive_seed(7, 'moco_key_shuffle', 11)}\n"}


def test_negative_seeds_are_refused():
    with pytest.raises(ValueError, match="seed"):
        derive_seed(-1, "views")
