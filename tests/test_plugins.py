"""A user's own method, recipe and op, registered from a file outside the package (examples/simsiam.py,
the README's example), named in a config, on the command line and in a sweep grid."""

import math
import re
from pathlib import Path

import pandas as pd
import pytest
import torch

import raycl
from raycl import plugins
from raycl.cli import main as cli_main
from raycl.config import Config, ConfigError, from_overrides, preset
from raycl.data.augment import make_views
from raycl.methods import Method, method_class
from raycl.methods.spec import MethodSpec
from raycl.sweeps.grids import Cell, Grid
from raycl.sweeps.plan import plan
from raycl.train import build_model, save_state, train_step
from support import read_scalars

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = str(ROOT / "examples" / "simsiam.py")


def test_the_readme_shows_the_example_file_as_it_is():
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n# examples/simsiam.py\n(.*?)```", readme, re.S)
    assert blocks == [Path(EXAMPLE).read_text()]
    assert len(Path(EXAMPLE).read_text().splitlines()) <= 45


def test_a_plugin_method_and_recipe_are_names_of_a_config_and_train_a_step():
    cfg = from_overrides({"plugins": [EXAMPLE], "method": "simsiam", "augment.recipe": "mild"})
    assert cfg.plugins == (EXAMPLE,) and cfg.optim.predictor_fixed_lr  # the spec's own defaults apply
    model = build_model(cfg)
    assert type(model).__name__ == "SimSiam" and method_class("simsiam") is type(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    views = make_views("mild", size=32, color_strength=cfg.augment.color_strength)
    images = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8)
    g = torch.Generator().manual_seed(0)
    out = train_step(model, opt, [v(images, g) for v in views])
    assert -1 <= out["loss"].item() <= 1  # a negative cosine
    assert make_views("mild", size=32)[0].ops[0].scale == (0.3, 1.0)  # the recipe's own crop range

    again = Config.from_dict(cfg.to_dict())  # as a worker reads it, plugins first
    assert again.method.name == "simsiam" and again.plugins == (EXAMPLE,)


def test_a_plugin_op_is_a_name_of_pair_recipes():
    cfg = from_overrides({"plugins": [EXAMPLE], "augment.recipe": "pair:invert,invert"})  # the op once
    first, crop_only = make_views(cfg.augment.recipe, size=32)  # on view 0 after the crop, as in Fig. 5
    assert len(first.ops) == 2 and len(crop_only.ops) == 1
    images = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8)
    inverted = first(images, torch.Generator().manual_seed(3)).int()
    # the same crops (one level of rounding apart: the crop alone runs on the fused kernel)
    cropped = type(first)(first.ops[:1])(images, torch.Generator().manual_seed(3)).int()
    flipped = [bool(((inverted[i] + cropped[i] - 255).abs() <= 1).all()) for i in range(16)]
    kept = [bool(((inverted[i] - cropped[i]).abs() <= 1).all()) for i in range(16)]
    assert all(a != b for a, b in zip(flipped, kept)) and 0 < sum(flipped) < 16
    with pytest.raises(ConfigError, match=r"'inverse' is not one of them \(did you mean 'invert'\?\)"):
        from_overrides({"plugins": [EXAMPLE], "augment.recipe": "pair:crop,inverse"})


def test_what_a_plugin_cannot_do_is_said_in_one_line(tmp_path):
    plugins.load([EXAMPLE])
    with pytest.raises(ConfigError, match="registered by .*simsiam.py, which they import only if the run "
                                          "names it in plugins"):
        preset("tiny", "simsiam").validate()  # the workers would not know the name
    with pytest.raises(ValueError, match="method 'byol' is one of raycl's own"):
        class Mine(Method):
            spec = MethodSpec("byol", paper="-")
        raycl.register_method(Mine)
    with pytest.raises(TypeError, match="a subclass of raycl.methods.Method"):
        raycl.register_method(dict)
    with pytest.raises(ValueError, match="recipe 'simclr' is one of raycl's own"):
        raycl.register_recipe("simclr")(lambda *a: [])
    with pytest.raises(ValueError, match="op 'color' is one of raycl's own"):
        raycl.register_op("color")(lambda size, strength: None)
    with pytest.raises(ValueError, match="an op name is a non-empty string without"):
        raycl.register_op("a,b")
    with pytest.raises(ConfigError, match="registered by .*simsiam.py, which they import only if the run "
                                          "names it in plugins"):
        preset("tiny").override({"augment.recipe": "pair:invert,color"}).validate()
    broken = tmp_path / "broken.py"
    broken.write_text("raise RuntimeError('half-written plugin')\n")
    with pytest.raises(ConfigError, match=r"plugins = '.*broken.py' is not allowed: .*RuntimeError: half"):
        preset("tiny").override({"plugins": [str(broken)]})
    with pytest.raises(ConfigError, match="an existing .py file"):
        preset("tiny").override({"plugins": [str(tmp_path / "nowhere.py")]})
    with pytest.raises(ConfigError, match="No module named 'no_such_raycl_plugin'"):
        preset("tiny").override({"plugins": ["no_such_raycl_plugin"]})
    odd = tmp_path / "odd.py"
    odd.write_text("import raycl\n@raycl.register_recipe('odd')\ndef odd(size, s, blur, crop):\n"
                   "    return [crop()]\n")
    plugins.load([str(odd)])
    with pytest.raises(TypeError, match="must return a list of at least 2 ViewPipeline"):
        make_views("odd", size=32)


def test_an_installed_package_registers_through_its_entry_point(tmp_path, monkeypatch):
    """A package that declares group raycl.plugins is imported at the first name looked up, and its
    names need no plugins= (every process of a run finds the same installed package)."""
    (tmp_path / "raycl_ext_pkg.py").write_text(
        "import raycl\nfrom raycl.data.augment import ViewPipeline\n"
        "@raycl.register_recipe('ext_crops', crop_scale=(0.5, 1.0))\n"
        "def ext_crops(size, strength, blur, crop):\n    return [ViewPipeline([crop()]), ViewPipeline([crop()])]\n")
    info = tmp_path / "raycl_ext_pkg-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: raycl-ext-pkg\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[raycl.plugins]\next = raycl_ext_pkg\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(plugins, "_entry_points_loaded", False)  # as in a new process
    cfg = preset("tiny").override({"augment.recipe": "ext_crops"}).validate()
    assert cfg.plugins == () and "ext_crops" in plugins.RECIPES
    assert make_views("ext_crops", size=32)[0].ops[0].scale == (0.5, 1.0)


def test_a_sweep_grid_names_the_plugin_method():
    grid = Grid(name="simsiam_tau", source="-", question="-", method="simsiam",
                cells=lambda p: [Cell({"augment.recipe": r}) for r in ("simclr", "mild", "pair:crop,invert")])
    runs = plan(grid, "tiny", seeds=2, overrides={"plugins": [EXAMPLE]})
    assert len(runs) == 6 and all(r.skip is None for r in runs)
    built = [from_overrides(r.overrides) for r in runs]  # what each trial builds, in its own process
    assert {(c.method.name, c.augment.recipe) for c in built} == {
        ("simsiam", "simclr"), ("simsiam", "mild"), ("simsiam", "pair:crop,invert")}


@pytest.mark.ray
def test_the_plugin_trains_from_the_command_line_and_logs_to_tensorboard(ray_local, tmp_path, capsys):
    code = cli_main(["run", "--plugin", EXAMPLE, "--method", "simsiam", "--workers", "2",
                     "--log", "tensorboard",
                     "--set", "augment.recipe=mild", "--set", "epochs=1", "--set", f"storage_path={tmp_path}",
                     "--set", "name=simsiam", "--set", "eval.knn_at_init=false"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert f"best:       {tmp_path / 'simsiam' / 'best'} (kNN top-1" in out
    history = pd.read_parquet(tmp_path / "simsiam" / "history.parquet")
    assert list(history["epoch"]) == [1] and math.isfinite(history["loss"].iloc[0])
    assert -1 <= history["loss"].iloc[0] < 0 and 0 <= history["knn_top1"].iloc[0] <= 1
    logged = read_scalars(tmp_path / "simsiam" / "tensorboard")
    assert logged["loss"] == {1: pytest.approx(history["loss"].iloc[0])}
    assert logged["knn_top1"] == {1: pytest.approx(history["knn_top1"].iloc[0])}


def test_a_checkpoint_naming_plugins_does_not_import_them_when_opened(tmp_path):
    marker = tmp_path / "ran"
    evil = tmp_path / "evil.py"
    evil.write_text(f"open({str(marker)!r}, 'w').write('imported')\n")
    cfg = preset("tiny").validate()
    model = build_model(cfg)
    folder = tmp_path / "run" / "checkpoint_000000"
    folder.mkdir(parents=True)
    stored = cfg.override({"name": "handed-over"})
    save_state(str(folder), model, torch.optim.SGD(model.parameters(), lr=0.1), epoch=1, step=1,
               history=[], cfg=stored)
    state = torch.load(folder / "state.pt", weights_only=True)
    state["config"]["plugins"] = [str(evil)]  # as a file someone hands over could say
    torch.save(state, folder / "state.pt")
    raycl.export(str(folder), str(tmp_path / "b.pt"))
    assert not marker.exists()  # opened, exported, and the named file never ran
    assert Config.from_stored(state["config"]).plugins == plugins.loaded()
