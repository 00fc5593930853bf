"""Configuration: presets validate, overrides resolve, and every bad value gets a clear error."""

import subprocess
import sys

import pytest

from raycl import config
from raycl.cli import main as cli_main
from raycl.config import Config, ConfigError, MethodConfig, from_overrides, preset, resolve_key
from raycl.methods import method_spec


@pytest.mark.parametrize("name", ["tiny", "cifar10", "imagenet"])
def test_presets_are_valid_and_carry_paper_defaults(name):
    cfg = preset(name).override({"data.path": "/data"} if name == "imagenet" else {}).validate()
    assert cfg.preset == name
    if name == "cifar10":  # SimCLR appendix B.9
        assert (cfg.model.backbone, cfg.augment.color_strength, cfg.augment.blur) == (
            "resnet18_cifar", 0.5, False)
        assert cfg.method.temperature == 0.5
    if name == "imagenet":
        assert (cfg.model.backbone, cfg.augment.crop_size, cfg.augment.blur) == ("resnet50", 224, True)


def test_round_trip_through_dict():
    cfg = preset("tiny").override({"optim.lr": 0.7})
    assert Config.from_dict(cfg.to_dict()) == cfg


def test_override_forms():
    cfg = preset("tiny").override({"epochs": 3, "optim.lr": "0.1", "model": {"proj_depth": 3}})
    assert (cfg.train.epochs, cfg.optim.lr, cfg.model.proj_depth) == (3, 0.1, 3)
    assert resolve_key("temperature") == "method.temperature"


def _error(**overrides) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        preset("tiny").override(overrides).validate()
    return info.value


def test_unknown_method():
    e = _error(**{"method.name": "simsam"})
    assert e.field == "method.name" and "'simsam'" in str(e) and "simclr" in str(e)


@pytest.mark.parametrize("tau", [0.0, -0.5])
def test_temperature_must_be_positive(tau):
    e = _error(**{"method.temperature": tau})
    assert e.field == "method.temperature" and repr(tau) in str(e) and "> 0" in str(e)


def test_batch_not_divisible_by_workers():
    e = _error(**{"train.batch_size": 129, "train.workers": 2})
    assert e.field == "train.batch_size" and "129" in str(e) and "multiple of train.workers = 2" in str(e)


def test_batch_below_two_per_worker():
    e = _error(**{"train.batch_size": 4, "train.workers": 4})
    assert e.field == "train.batch_size" and "at least 2 images per worker" in str(e)


@pytest.mark.parametrize("epochs", [0, -3])
def test_epochs_must_be_positive(epochs):
    e = _error(**{"train.epochs": epochs, "optim.warmup_epochs": 0})
    assert e.field == "train.epochs" and str(epochs) in str(e) and ">= 1" in str(e)


def test_unknown_optimizer():
    e = _error(**{"optim.optimizer": "adagrad"})
    assert e.field == "optim.optimizer" and "'adagrad'" in str(e) and "lars" in str(e)


def test_predictor_rate_only_for_methods_with_a_predictor():
    e = _error(**{"optim.predictor_lr_scale": 10.0})
    assert e.field == "optim.predictor_lr_scale" and "'simclr'" in str(e) and "byol" in str(e)
    e = _error(**{"optim.predictor_fixed_lr": True})
    assert e.field == "optim.predictor_fixed_lr" and "no predictor" in str(e)
    with pytest.raises(ConfigError, match=r"optim.predictor_lr_scale = 0.0 .*> 0"):
        preset("tiny", "byol").override({"optim.predictor_lr_scale": 0.0}).validate()


def test_negative_lr():
    e = _error(**{"optim.lr": -0.1})
    assert e.field == "optim.lr" and "-0.1" in str(e)


def test_workers_must_be_positive():
    e = _error(**{"train.workers": 0})
    assert e.field == "train.workers" and ">= 1" in str(e)


def test_unknown_source_and_missing_path():
    assert _error(**{"data.source": "mnist"}).field == "data.source"
    e = _error(**{"data.source": "parquet"})
    assert e.field == "data.path" and "required" in str(e)


def test_projection_depth_range():
    e = _error(**{"model.proj_depth": 7})
    assert e.field == "model.proj_depth" and "0 to 4" in str(e)


def test_warmup_longer_than_run():
    e = _error(**{"optim.warmup_epochs": 10, "train.epochs": 2})
    assert e.field == "optim.warmup_epochs" and "train.epochs = 2" in str(e)


def test_unknown_and_ambiguous_keys():
    with pytest.raises(ConfigError, match="known fields"):
        preset("tiny").override({"optim.learning_rate": 1.0})
    with pytest.raises(ConfigError, match="unambiguous"):
        preset("tiny").override({"batch_size": 64})  # train.batch_size or augment.batch_size


def test_type_errors_name_the_field():
    with pytest.raises(ConfigError, match="train.epochs"):
        preset("tiny").override({"train.epochs": "many"})
    with pytest.raises(ConfigError, match="model.sync_bn"):
        preset("tiny").override({"model.sync_bn": 3})


def test_unknown_preset():
    with pytest.raises(ConfigError, match="preset = 'huge'"):
        preset("huge")


def test_cli_reports_config_errors(capsys):
    assert cli_main(["config", "--set", "method.temperature=0"]) == 2
    assert "method.temperature = 0" in capsys.readouterr().err
    assert cli_main(["config", "--set", "optim.lr=0.05"]) == 0
    assert "optim.lr = 0.05" in capsys.readouterr().out


def test_cli_refuses_an_existing_run_name(tmp_path, capsys):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "config.json").write_text("{}")
    argv = ["run", "--set", f"storage_path={tmp_path}", "--set", "name=taken"]
    assert cli_main(argv) == 2  # refused before Ray starts: nothing of the old run is touched
    err = capsys.readouterr().err
    assert "'taken' already exists" in err and "--resume" in err
    assert [p.name for p in (tmp_path / "taken").iterdir()] == ["config.json"]


# --------------------------------------------------------------------------- method sections
def test_method_options_belong_to_their_method():
    assert "prototypes" not in preset("tiny", "simclr").method.to_dict()
    e = _error(**{"method.prototypes": 100})  # a SwAV option on a SimCLR run
    assert e.field == "method.prototypes" and "'simclr'" in str(e) and "swav" in str(e)
    swav = preset("tiny", "swav").override({"method.prototypes": 100, "prototypes": 50}).validate()
    assert swav.method.prototypes == 50
    assert resolve_key("prototypes", "swav") == "method.prototypes"
    with pytest.raises(ConfigError, match="an existing field"):
        resolve_key("prototypes", "simclr")


def test_a_new_method_starts_from_its_own_option_defaults():
    cfg = preset("tiny", "swav").override({"method.name": "moco", "method.queue_size": 128})
    assert cfg.method.to_dict() == {**MethodConfig("moco").to_dict(), "queue_size": 128}
    assert Config.from_dict(cfg.to_dict()) == cfg


def test_a_run_is_a_flat_dict_with_preset_and_method_first():
    cfg = from_overrides({"optim.lr": 1e-3, "method.momentum": 0.9, "method": "byol", "preset": "tiny"})
    assert (cfg.preset, cfg.method.name, cfg.method.momentum, cfg.optim.lr) == ("tiny", "byol", 0.9, 1e-3)
    assert cfg.method.momentum_schedule == "cosine"  # the rest of byol's tiny defaults
    assert cfg == preset("tiny", "byol").override({"optim.lr": 1e-3, "method.momentum": 0.9})
    with pytest.raises(ConfigError, match="method.momentum"):
        from_overrides({"method": "simclr", "method.momentum": 0.9})
    with pytest.raises(ConfigError, match="preset = 'tiny'.*not an override"):
        preset("tiny").override({"preset": "tiny"})


def test_cli_keys_lists_exactly_the_methods_fields(capsys):
    assert cli_main(["keys", "--method", "swav"]) == 0
    out = capsys.readouterr().out
    method_lines = [line for line in out.splitlines() if line.startswith("method.")]
    assert sorted(line.split(" = ")[0] for line in method_lines) == sorted(
        ["method.name"] + [f"method.{o}" for o in method_spec("swav").option_defaults()])
    assert "method.prototypes = 3000  # K: number of prototypes" in out
    assert "optim.lr = " in out and "method.momentum" not in out
    assert cli_main(["keys", "--method", "swav", "--preset", "tiny"]) == 0
    assert "method.prototypes = 30 " in capsys.readouterr().out


def test_config_module_does_not_import_torch():
    code = ("import sys, raycl, raycl.config as c; c.METHODS; c.all_keys; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_torch_side_tables_agree_with_the_config_names():
    from raycl import models, optim
    from raycl.data import augment
    from raycl.protocols import TRANSFORM_CLASSES

    assert tuple(models.BACKBONE_BUILDERS) == config.BACKBONES
    assert tuple(optim.OPTIMIZER_FACTORIES) == config.OPTIMIZERS
    assert (augment.RECIPES, augment.BACKENDS) == (config.RECIPES, config.AUGMENT_BACKENDS)
    assert tuple(augment.OPS) == config.PAIR_OPS
    assert tuple(TRANSFORM_CLASSES) == config.TRANSFORM_TASKS


def test_data_side_tables_agree_with_the_config_names():
    from raycl.config.sections import ON_BAD_IMAGE, SOURCES
    from raycl.data import decode, sources

    assert (sources.SOURCES, decode.ON_BAD_IMAGE) == (SOURCES, ON_BAD_IMAGE)


@pytest.mark.parametrize("argv,says", [
    (["run", "--method", "simclrr"], "method.name = 'simclrr' is not allowed: one of simclr, "),
    (["run", "--preset", "tinyy"], "(did you mean 'tiny'?)"),
    (["config", "--method", "Byol"], "(did you mean 'byol'?)"),
    (["keys", "--preset", "imagenett"], "(did you mean 'imagenet'?)"),
    (["config", "--set", "augment.recipe=simclrr"], "(did you mean 'simclr'?)"),
    (["config", "--set", "augment.remove=flipp"], "(did you mean 'flip'?)"),
    (["config", "--set", "augment.recipe=pair:crop,colour"], "'colour' is not one of them (did you mean 'color'?)"),
    (["config", "--set", "augment.recipe=pair:crop"], "'pair:a,b' with two ops a, b from: crop, flip, color,"),
    (["config", "--set", "train.storage_path=x"], "(did you mean 'storage_path'?)"),
    (["config", "--set", "epohcs=3"], "(did you mean 'train.epochs'?)"),
    (["sweep", "temprature", "--dry-run"], "(did you mean 'temperature'?)"),
])
def test_a_mistyped_name_is_one_line_naming_the_nearest_valid_one(argv, says, capsys):
    assert cli_main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1 and says in err, err


def test_a_storage_path_that_cannot_be_written_is_refused_before_ray_starts(tmp_path):
    import os

    import raycl

    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(ConfigError, match="storage_path = .* a folder raycl can create and write to"):
        raycl.run(method="simclr", storage_path=str(blocker / "runs"), epochs=1)
    if os.getuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        with pytest.raises(ConfigError, match="Permission denied"):
            raycl.run(method="simclr", storage_path=str(locked / "runs"), epochs=1)


def test_a_config_error_survives_pickling_as_ray_carries_it_out_of_a_worker():
    import pickle

    err = pickle.loads(pickle.dumps(ConfigError("train.max_failures", -2, "an integer >= 0")))
    assert type(err) is ConfigError and err.field == "train.max_failures" and err.value == -2
    assert str(err) == "train.max_failures = -2 is not allowed: an integer >= 0"


@pytest.mark.parametrize("key, value, message", [
    ("train.max_failures", -2, "train.max_failures = -2 is not allowed: an integer >= 0, or -1 for no limit"),
    ("train.cluster_wait_s", -1, "train.cluster_wait_s = -1.0 is not allowed: a finite number > 0"),
    ("train.checkpoint_every_steps", -5, "train.checkpoint_every_steps = -5 is not allowed: an integer >= 0"),
    ("data.path", "/data/imgs",
     "data.path = '/data/imgs' is not allowed: no path with data.source='embedded'"),
])
def test_recovery_and_data_fields_are_checked(key, value, message):
    with pytest.raises(ConfigError) as err:
        preset("tiny").override({key: value}).validate()
    assert str(err.value).startswith(message)
