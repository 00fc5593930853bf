"""Backbones, projection heads and global batch norm."""

import pytest
import torch
from torch import nn

from raycl.models import GlobalBatchNorm, Normalize, build_backbone, convert_batchnorm, projection_head


@pytest.mark.parametrize("name,dim", [("tiny_cnn", 128), ("resnet18_cifar", 512)])
def test_backbone_feature_dims(name, dim):
    net = build_backbone(name).eval()
    assert net.out_dim == dim
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, dim)


def test_cifar_stem_keeps_resolution():
    net = build_backbone("resnet18_cifar")
    assert net.conv1.stride == (1, 1) and net.conv1.kernel_size == (3, 3)
    assert isinstance(net.maxpool, nn.Identity)


@pytest.mark.parametrize("depth,n_linear", [(0, 0), (1, 1), (2, 2), (3, 3)])
def test_projection_head_depth(depth, n_linear):
    head = projection_head(16, depth, 32, 8)
    assert sum(isinstance(m, nn.Linear) for m in head.modules()) == n_linear
    out = head.eval()(torch.randn(4, 16))
    assert out.shape == (4, 8 if depth else 16)


def test_global_bn_equals_bn_in_one_process():
    torch.manual_seed(0)
    bn = nn.BatchNorm2d(3)
    net = convert_batchnorm(nn.Sequential(nn.Conv2d(3, 3, 1), bn), use_gpu=False)
    assert isinstance(net[1], GlobalBatchNorm)
    x = torch.randn(8, 3, 5, 5)
    ref = nn.Sequential(nn.Conv2d(3, 3, 1), nn.BatchNorm2d(3))
    ref.load_state_dict(net.state_dict())
    torch.testing.assert_close(net(x), ref(x))
    torch.testing.assert_close(net[1].running_var, ref[1].running_var)


def test_evaluation_models_have_local_bn_and_the_training_state_dict():
    from raycl.config import preset
    from raycl.train import build_model

    cfg = preset("tiny", "byol")
    trained, local = build_model(cfg), build_model(cfg, global_bn=False)
    assert any(isinstance(m, GlobalBatchNorm) for m in trained.modules())
    assert not any(isinstance(m, GlobalBatchNorm) for m in local.modules())
    local.load_state_dict(trained.state_dict())  # strict: the same keys
    for (name, a), b in zip(trained.state_dict().items(), local.state_dict().values()):
        torch.testing.assert_close(a, b, msg=name)


def test_normalize_uint8_input():
    x = torch.full((1, 3, 2, 2), 255, dtype=torch.uint8)
    out = Normalize()(x)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out[0, :, 0, 0], (1 - torch.tensor([0.485, 0.456, 0.406]))
                               / torch.tensor([0.229, 0.224, 0.225]))


def test_global_bn_conversion_keeps_frozen_parameters_frozen():
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    for p in net.parameters():
        p.requires_grad_(False)
    converted = convert_batchnorm(net, use_gpu=False)
    assert not any(p.requires_grad for p in converted.parameters())


def test_global_bn_conversion_keeps_dtype_device_and_mode():
    import copy

    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4)).double()
    with torch.no_grad():
        net[1].running_mean.uniform_(-1, 1)
        net[1].running_var.uniform_(0.5, 2)
    net.eval()
    reference = copy.deepcopy(net)
    converted = convert_batchnorm(net, use_gpu=False)
    assert isinstance(converted[1], GlobalBatchNorm) and converted[1].training is False
    for name, t in [*converted.named_parameters(), *converted.named_buffers()]:
        original = dict([*reference.named_parameters(), *reference.named_buffers()])[name]
        assert t.dtype == original.dtype and t.device == original.device, name
    x = torch.randn(5, 3, dtype=torch.float64)
    torch.testing.assert_close(converted(x), reference(x), rtol=0, atol=0)
