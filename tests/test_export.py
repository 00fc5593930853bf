"""raycl.export: a checkpoint's backbone as a plain state dict that torchvision's ResNets load."""

import json

import pytest
import torch
import torchvision

from raycl.cli import main as cli_main
from raycl.config import ConfigError, preset
from raycl.weights import export
from raycl.models import Normalize
from raycl.optim import build_optimizer
from raycl.train import build_model, save_state, train_step
from raycl.train.init_from import check_init_from, init_from


def _checkpoint(tmp_path, backbone: str):
    """A checkpoint after one training step (BN statistics and weights moved from their init)."""
    cfg = preset("tiny").override({"model.backbone": backbone}).validate()
    model = build_model(cfg)
    opt = build_optimizer(model, cfg)
    train_step(model, opt, [torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8) for _ in range(2)])
    folder = tmp_path / "run" / "checkpoint_000000"
    folder.mkdir(parents=True)
    save_state(str(folder), model, opt, epoch=1, step=1, history=[{"epoch": 1, "knn_top1": 0.25}], cfg=cfg)
    return model.eval(), folder


def test_a_resnet18_backbone_loads_into_torchvision_and_gives_the_same_features(tmp_path):
    model, folder = _checkpoint(tmp_path, "resnet18")
    about = export(str(tmp_path / "run"), str(tmp_path / "out" / "r18.pt"))  # the run: its latest checkpoint
    state = torch.load(tmp_path / "out" / "r18.pt", weights_only=True)
    net = torchvision.models.resnet18()
    missing, unexpected = net.load_state_dict(state, strict=False)
    assert set(missing) == {"fc.weight", "fc.bias"} and not unexpected
    net.fc = torch.nn.Identity()
    x = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    torch.testing.assert_close(net.eval()(Normalize()(x)), model.features(x), rtol=1e-5, atol=1e-5)
    assert json.loads((tmp_path / "out" / "r18.json").read_text()) == about
    assert about["feature_dim"] == 512 and about["stem"] == "imagenet" and about["epoch"] == 1
    assert about["mean"] == pytest.approx([0.485, 0.456, 0.406]) and about["knn_top1"] == 0.25


def test_backbone_and_head_and_the_cli(tmp_path, capsys):
    model, folder = _checkpoint(tmp_path, "tiny_cnn")
    assert cli_main(["export", str(folder), str(tmp_path / "b.pt"), "--part", "backbone+head"]) == 0
    assert "backbone+head of simclr (tiny_cnn, epoch 1, 128-d features)" in capsys.readouterr().out
    state = torch.load(tmp_path / "b.pt", weights_only=True)
    assert {k.split(".")[0] for k in state} == {"backbone", "head"}
    torch.testing.assert_close(state["head.0.0.weight"], model.head.state_dict()["0.0.weight"])
    with pytest.raises(ConfigError, match="part = 'head' is not allowed"):
        export(str(folder), str(tmp_path / "c.pt"), part="head")
    assert cli_main(["export", str(tmp_path / "nowhere"), str(tmp_path / "d.pt")]) == 2


def test_init_from_an_export_or_a_checkpoint_gives_the_same_network(tmp_path):
    model, folder = _checkpoint(tmp_path, "tiny_cnn")
    x = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    export(str(folder), str(tmp_path / "b.pt"))
    export(str(folder), str(tmp_path / "bh.pt"), part="backbone+head")
    for source, head in [(tmp_path / "b.pt", False), (tmp_path / "bh.pt", True), (folder, True),
                         (folder / "state.pt", True)]:
        cfg = preset("tiny").override({"method.name": "byol", "model.init_from": str(source)}).validate()
        byol = build_model(cfg).eval()  # another method: the backbone and head fit, the predictor is new
        said = init_from(byol, cfg.model.init_from, cfg.model.backbone)
        assert said.startswith("model.init_from: backbone and " + ("head" if head else "a fresh head"))
        torch.testing.assert_close(byol.features(x), model.features(x))
        same_head = torch.equal(byol.head.state_dict()["0.0.weight"], model.head.state_dict()["0.0.weight"])
        assert same_head == head
        for target, online in byol.momentum_pairs():  # the EMA target starts from the same weights
            for a, b in zip(target.state_dict().values(), online.state_dict().values()):
                assert torch.equal(a, b)


def test_init_from_takes_torchvisions_resnet_and_refuses_what_does_not_fit(tmp_path):
    net = torchvision.models.resnet18()
    torch.save(net.state_dict(), tmp_path / "tv.pt")
    cfg = preset("tiny").override({"model.backbone": "resnet18", "model.init_from": str(tmp_path / "tv.pt")})
    assert "backbone and a fresh head from weights" in check_init_from(cfg.validate())
    method = build_model(cfg)
    init_from(method, str(tmp_path / "tv.pt"), "resnet18")
    torch.testing.assert_close(method.backbone.state_dict()["conv1.weight"], net.state_dict()["conv1.weight"])

    tiny = preset("tiny").override({"model.init_from": str(tmp_path / "tv.pt")}).validate()
    with pytest.raises(ConfigError, match=r"model.init_from = .*model.backbone = 'tiny_cnn'.*unexpected bn1"):
        check_init_from(tiny)
    with pytest.raises(ConfigError, match="an existing file from raycl.export"):
        check_init_from(tiny.override({"model.init_from": str(tmp_path / "nowhere.pt")}))
    torch.save({"weights": [1, 2]}, tmp_path / "odd.pt")
    with pytest.raises(ConfigError, match="a state dict of tensors"):
        check_init_from(tiny.override({"model.init_from": str(tmp_path / "odd.pt")}))
    with pytest.raises(ConfigError, match="model.init_from = 3 is not allowed"):
        tiny.override({"model.init_from": 3}).validate()


def test_raycl_export_stays_the_function_once_its_module_is_imported():
    import raycl

    assert raycl.export is export  # a module named raycl.export would shadow it as an attribute


def test_protocols_run_on_an_export_or_torchvision_weights_as_on_the_checkpoint(tmp_path, capsys):
    """raycl.evaluate (and python -m raycl evaluate) take a weights file: the same features as the
    checkpoint it came from give the same kNN and linear-probe rows."""
    import pandas as pd

    import raycl

    _, folder = _checkpoint(tmp_path, "tiny_cnn")
    export(str(folder), str(tmp_path / "w" / "b.pt"))
    small = {"data.num_images": 300, "data.num_test_images": 100, "linear_steps": 30}
    cols = ["protocol", "split", "top1", "top5"]
    from_checkpoint = raycl.evaluate(str(folder), ["knn", "linear"], use_ray=False, **small)
    capsys.readouterr()
    from_weights = raycl.evaluate(str(tmp_path / "w" / "b.pt"), ["knn", "linear"], use_ray=False, **small)
    assert "[raycl] model.init_from: backbone and a fresh head from weights" in capsys.readouterr().out
    pd.testing.assert_frame_equal(from_weights[cols], from_checkpoint[cols])
    assert len(pd.read_parquet(tmp_path / "w" / "evaluation.parquet")) == 4  # beside the weights

    assert cli_main(["evaluate", str(tmp_path / "w" / "b.pt"), "--protocols", "knn", "--out",
                     str(tmp_path / "cli"), "--set", "data.num_images=300",
                     "--set", "data.num_test_images=100"]) == 0
    printed = capsys.readouterr().out
    knn = from_checkpoint.set_index(["protocol", "split"]).loc[("knn", "val"), "top1"]
    assert f"{knn:.4g}" in printed and (tmp_path / "cli" / "evaluation.parquet").is_file()

    torch.save(torchvision.models.resnet18().state_dict(), tmp_path / "tv.pt")  # torchvision's keys
    with pytest.raises(ConfigError, match="model.init_from = .* do not fit it"):
        raycl.evaluate(str(tmp_path / "tv.pt"), ["knn"], use_ray=False, **small)  # the tiny CNN
    tv = raycl.evaluate(str(tmp_path / "tv.pt"), ["knn"], use_ray=False,
                        **{**small, "model.backbone": "resnet18"})
    assert tv["top1"].between(0, 1).all() and set(tv["split"]) == {"val", "test"}
