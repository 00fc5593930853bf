"""The GPU-oriented switches, on CPU tensors: bf16 autocast gives every method's loss and gradients
within bf16 tolerance of fp32, channels-last gives the same step, and the switches resolve."""

import copy

import pytest
import torch

from support import EXERCISE, make_views

from raycl.config import ConfigError, preset
from raycl.methods import METHODS, Progress
from raycl.train import accel, build_model, train_step


def _step(cfg, views, autocast=None):
    """Loss and the backbone's gradient after one step from the seeded initialisation."""
    method = accel.prepare_method(build_model(cfg, global_bn=False), cfg)
    opt = torch.optim.SGD(method.parameters(), lr=0.0)  # lr 0: the step only makes gradients
    progress = Progress(step=0, epoch=1, steps_per_epoch=10, total_steps=100)
    out = train_step(method, opt, accel.views_to([v.clone() for v in views], cfg), method, progress, autocast)
    grad = torch.cat([p.grad.flatten() for p in method.backbone.parameters() if p.grad is not None])
    return out["loss"].float(), grad


@pytest.mark.parametrize("method", METHODS)
def test_bf16_autocast_keeps_the_loss_and_gradients_of_fp32(method):
    cfg = preset("tiny", method).override({"train.batch_size": 16, **EXERCISE.get(method, {})}).validate()
    views = make_views(cfg, 8)
    loss32, grad32 = _step(cfg, views)
    bf16 = cfg.override({"train.precision": "bf16"}).validate()
    loss16, grad16 = _step(bf16, views, lambda: accel.autocast(bf16, torch.device("cpu")))
    assert loss16 == pytest.approx(loss32.item(), rel=3e-2, abs=3e-2)  # bf16 keeps 8 bits of mantissa
    cos = torch.nn.functional.cosine_similarity(grad16, grad32, dim=0)
    assert cos > 0.95, f"{method}: bf16 gradient direction differs (cos {cos:.3f})"


def test_channels_last_gives_the_same_step():
    cfg = preset("tiny", "simclr").override({"train.batch_size": 16, "model.backbone": "resnet18_cifar"})
    views = make_views(cfg.validate(), 8)
    loss, grad = _step(cfg.validate(), views)
    cl = cfg.override({"train.channels_last": True}).validate()
    method = accel.prepare_method(build_model(cl, global_bn=False), cl)
    assert method.backbone.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    loss_cl, grad_cl = _step(cl, views)
    torch.testing.assert_close(loss_cl, loss, rtol=1e-4, atol=1e-5)
    # other conv kernels sum in another order, and 18 layers of batch norm amplify it a little
    assert torch.nn.functional.cosine_similarity(grad_cl, grad, dim=0) > 0.9999
    assert (grad_cl - grad).norm() < 1e-2 * grad.norm()


def test_the_switches_resolve_and_validate():
    cpu, gpu = preset("tiny"), preset("tiny").override({"train.use_gpu": True})
    assert (accel.backend(cpu), accel.pin_memory(cpu)) == ("gloo", False)
    assert (accel.backend(gpu), accel.pin_memory(gpu)) == ("nccl", True)
    with pytest.raises(ConfigError, match="train.precision = 'fp16' is not allowed: one of fp32, bf16"):
        cpu.override({"train.precision": "fp16"}).validate()
    model = torch.nn.Linear(2, 2)
    assert accel.compiled(model, cpu) is model
    compiled = accel.compiled(copy.deepcopy(model), cpu.override({"train.compile": True}))
    assert type(compiled).__name__ == "OptimizedModule"  # compiled lazily, on its first call
