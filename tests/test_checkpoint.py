"""Checkpoint round trip: a saved state restores the same model, optimizer and history."""

import pytest
import torch
from ray.train import Checkpoint

from raycl.config import preset
from raycl.methods import METHODS
from raycl.methods.base import Progress
from raycl.optim import build_optimizer
from raycl.train import build_model, load_state, save_state, train_step
from support import EXERCISE, make_views


@pytest.mark.parametrize("method", list(METHODS))
def test_checkpoint_round_trip(tmp_path, method):
    """Through state.pt, with the method's step hooks: momentum targets (BYOL, MoCo, SimCLRv2's
    memory encoder), queues and their pointers, SwAV's prototypes come back as they were."""
    cfg = preset("tiny", method).override({"train.batch_size": 8, **EXERCISE.get(method, {})}).validate()
    model = build_model(cfg)
    opt = build_optimizer(model, cfg)
    views = make_views(cfg, 8)
    train_step(model, opt, views, model, Progress(0, 0, 5, 10))
    history = [{"epoch": 1, "loss": 4.2}]
    save_state(str(tmp_path), model, opt, epoch=1, step=7, history=history, cfg=cfg)

    state = load_state(Checkpoint.from_directory(str(tmp_path)))
    restored = build_model(cfg)  # the run's own config (MoCo seeds its key shuffle from it) ...
    with torch.no_grad():  # ... but other weights and buffers than the saved ones
        for value in restored.state_dict().values():
            value.copy_(torch.randint_like(value, 0, 7) if not value.is_floating_point()
                        else torch.randn_like(value))
    restored.load_state_dict(state["model"])
    opt2 = build_optimizer(restored, cfg)
    opt2.load_state_dict(state["optimizer"])
    assert (state["epoch"], state["step"], state["history"]) == (1, 7, history)
    assert state["config"] == cfg.to_dict()
    for name, value in model.state_dict().items():  # targets, queues and pointers too
        torch.testing.assert_close(restored.state_dict()[name], value, msg=name)

    model.eval(), restored.eval()
    x = views[0]
    torch.testing.assert_close(restored.features(x), model.features(x))
    # the next step is identical too: its loss (weights restored) and, after the update and the
    # hooks (EMA targets, queues), the state and the optimizer's moments (AdamW's exp_avg,
    # exp_avg_sq and step count restored)
    model.train(), restored.train()
    a = train_step(model, opt, views, model, Progress(1, 0, 5, 10))
    b = train_step(restored, opt2, views, restored, Progress(1, 0, 5, 10))
    torch.testing.assert_close(a["loss"], b["loss"])
    for name, value in model.state_dict().items():
        torch.testing.assert_close(restored.state_dict()[name], value, msg=name)
    moments, restored_moments = opt.state_dict()["state"], opt2.state_dict()["state"]
    assert moments.keys() == restored_moments.keys() and moments
    for i, slots in moments.items():
        for slot, value in slots.items():
            torch.testing.assert_close(restored_moments[i][slot], value, msg=f"param {i}: {slot}")


def test_progress_line_shows_what_a_person_reads():
    from raycl.train.progress import progress_line

    row = {"epoch": 3, "loss": 3.09204, "lr": 2.9e-4, "images_per_s": 543.2, "data_wait_frac": 0.064,
           "pretext_top1": 0.2896, "pretext_top5": 0.58, "knn_top1": 0.505}
    assert progress_line(row, 4) == ("[raycl] epoch 3/4 | loss 3.0920 | lr 0.00029 | 543 img/s | "
                                     "data wait 6% | pretext top-1 0.290 | kNN top-1 0.505")
    assert progress_line({"epoch": 0, "knn_top1": 0.29, "knn_top5": 0.8}, 4) == \
        "[raycl] epoch 0/4 (before training) | kNN top-1 0.290"


class _Payload:
    """Stands for an object a malicious file would unpickle (it would run code on load)."""

    def __reduce__(self):
        return (print, ("this ran at load time",))


def test_checkpoints_load_weights_only_and_a_pickled_object_is_refused(tmp_path, capsys):
    import numpy as np
    import pytest

    from raycl.train.state import load_checkpoint
    from raycl.results import history_from_checkpoint

    cfg = preset("tiny")
    model = build_model(cfg)
    opt = build_optimizer(model, cfg)
    history = [{"epoch": 1, "loss": np.float32(4.2), "knn_top1": np.float64(0.3), "bad_images": np.int64(0)}]
    save_state(str(tmp_path), model, opt, epoch=1, step=7, history=history, cfg=cfg)  # numpy made plain
    state, _, _ = load_checkpoint(str(tmp_path))
    assert state["history"] == [{"epoch": 1, "loss": pytest.approx(4.2), "knn_top1": 0.3, "bad_images": 0}]
    assert type(history_from_checkpoint(str(tmp_path))[0]["loss"]) is float

    bad = tmp_path / "bad"
    bad.mkdir()
    torch.save({"model": {}, "history": [_Payload()]}, bad / "state.pt")
    with pytest.raises(ValueError, match="not a raycl checkpoint.*does not unpickle"):
        load_checkpoint(str(bad))
    with pytest.raises(ValueError, match="not a raycl checkpoint"):
        load_state(Checkpoint.from_directory(str(bad)))
    assert "this ran at load time" not in capsys.readouterr().out
