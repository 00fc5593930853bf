"""Sizing the augmentation to feed the trainers (raycl.data.sizing) and the plan `raycl config` prints."""

import json
import math
from pathlib import Path

import pytest

from raycl.api import make_config
from raycl.checks import ConfigError
from raycl.cli import main
from raycl.data.sizing import AUGMENT_IMAGES_PER_CORE, feed, per_core_rate, pool_size
from raycl.train.plan import plan_lines
from raycl.train.trainer import augment_cpus

BENCH = Path(__file__).resolve().parents[1] / "bench" / "results" / "data_throughput.json"


def test_measured_rates_are_the_benchmarks_own():
    rows = json.loads(BENCH.read_text())["results"]
    measured = {r["size"]: round(r["per_core"]) for r in rows if r["method"] == "raycl"}
    assert AUGMENT_IMAGES_PER_CORE == measured


def test_per_core_rate_interpolates_by_pixels_and_charges_small_crops():
    for size, rate in AUGMENT_IMAGES_PER_CORE.items():
        assert per_core_rate(size) == pytest.approx(rate)
    # halfway in log-pixels between 96 and 224 px: the geometric mean of their rates
    middle = math.sqrt(96 * 224)
    assert per_core_rate(middle) == pytest.approx(math.sqrt(AUGMENT_IMAGES_PER_CORE[96] * AUGMENT_IMAGES_PER_CORE[224]),
                                                  rel=1e-9)
    assert per_core_rate(32) > per_core_rate(64) > per_core_rate(96) > per_core_rate(160) > per_core_rate(224)
    # SwAV's 2 × 224 + 6 × 96: the small views add 6·96² to 2·224² pixels
    assert per_core_rate(224, 6, 96) == pytest.approx(per_core_rate(224) * 2 * 224**2 / (2 * 224**2 + 6 * 96**2))


def test_sixteen_gpus_at_imagenet_scale_get_a_pool_sized_from_the_stated_figure():
    cfg = make_config("byol", workers=16, preset="imagenet", **{"data.path": "/data"}).validate()
    assert cfg.augment.actors == "auto" and cfg.train.use_gpu
    f = feed(cfg)
    assert f.demand == 16 * 1000 and f.per_core == pytest.approx(AUGMENT_IMAGES_PER_CORE[224])
    assert f.actors == pool_size(cfg) == math.ceil(16 * 1000 / AUGMENT_IMAGES_PER_CORE[224])
    assert augment_cpus(cfg) == f.actors and f.supply >= f.demand
    lines = plan_lines(cfg)
    assert lines[0].startswith("training: 16 worker(s) × (8 CPU + 1 GPU), resnet50 on 224 px views")
    assert f"{f.actors} actor(s) × 1 CPU (augment.actors = 'auto')" in lines[2]
    assert lines[3].startswith(f"cluster: {16 * 8 + f.actors + 1} CPUs and 16 GPU(s)")


def test_the_default_preset_on_sixteen_gpus_resolves_to_a_valid_plan(capsys):
    # raycl.run(method="byol", workers=16, use_gpu=True) builds this config before it starts Ray
    cfg = make_config("byol", workers=16, use_gpu=True).validate()
    lines = plan_lines(cfg)
    assert "16 × 20,000 images/s (per GPU, stated" in lines[1]
    cpus = math.ceil(16 * 20000 / AUGMENT_IMAGES_PER_CORE[32])  # the tiny CNN's stated rate at 32 px
    assert "Ray Data tasks" in lines[2] and f"{cpus} free CPUs keep the trainers fed" in lines[2]
    assert main(["config", "--method", "byol", "--set", "workers=16", "--set", "use_gpu=true"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[:4] == [f"# {line}" for line in lines] and "train.workers = 16" in out


def test_a_pool_short_of_the_demand_says_so():
    short = (16 * 1000 - 1) // AUGMENT_IMAGES_PER_CORE[224]  # the most actors that fall short
    cfg = make_config("byol", workers=16, preset="imagenet", **{"data.path": "/data", "augment.actors": short})
    line = plan_lines(cfg.validate())[2]
    supply = short * AUGMENT_IMAGES_PER_CORE[224]
    assert line.startswith(f"augmentation: {short} actor(s) × 1 CPU = {supply:,} images/s: "
                           f"{supply / 16000:.0%} of what the trainers take")


def test_auto_on_cpu_workers_needs_their_rate():
    cfg = make_config("simclr", **{"augment.compute": "actors", "augment.actors": "auto"}).validate()
    with pytest.raises(ConfigError, match=r"augment.actors = 'auto'.*augment.images_per_s_per_worker.*CPU"):
        pool_size(cfg)
    given = cfg.override({"augment.images_per_s_per_worker": 30000, "augment.images_per_s_per_core": 2500})
    assert pool_size(given) == 24  # ceil(2 × 30 000 / 2 500)
    assert pool_size(given.override({"augment.cpus_per_actor": 4})) == 6


@pytest.mark.parametrize("value,match", [
    ("two", "an integer >= 1, or 'auto'"), (0, "an integer >= 1, or 'auto'"), (-1.0, "an integer"),
])
def test_bad_pool_sizes_are_refused(value, match):
    with pytest.raises(ConfigError, match=match):
        make_config("simclr", **{"augment.actors": value}).validate()


def test_bad_rates_are_refused():
    with pytest.raises(ConfigError, match="augment.images_per_s_per_core = 0"):
        make_config("simclr", **{"augment.images_per_s_per_core": 0}).validate()
