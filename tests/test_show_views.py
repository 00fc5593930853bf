"""raycl.data.show_views and the ``views`` CLI verb: a PNG grid of a recipe's views."""

import numpy as np
from PIL import Image

from raycl.cli import main
from raycl.data import show_views
from raycl.data.show import grid_pixels


def _pixels(path):
    with Image.open(path) as img:
        return img.size, np.asarray(img.convert("RGB"))


def test_png_has_one_row_per_image_and_differs_between_recipes(tmp_path):
    simclr = show_views("simclr", n=3, out=tmp_path / "simclr.png")
    swav = show_views("swav", n=3, out=tmp_path / "swav.png", small_crops=2, small_size=16)
    pair = show_views("pair:crop,color", n=2, out=tmp_path / "pair.png")
    assert simclr == tmp_path / "simclr.png" and simclr.exists()
    (size_a, a), (size_b, _), (size_p, _) = _pixels(simclr), _pixels(swav), _pixels(pair)
    assert size_a == grid_pixels(3, 3)  # original + 2 views
    assert size_b == grid_pixels(3, 5)  # original + 2 large + 2 small
    assert size_p == grid_pixels(2, 3)
    assert size_a == (300, 365)  # 1 inch per cell at 100 dpi, 0.65 inch of titles
    other = _pixels(show_views("byol", n=3, out=tmp_path / "byol.png"))[1]
    assert a.shape == other.shape and not np.array_equal(a, other)
    assert not np.array_equal(a, _pixels(show_views("simclr", n=3, seed=1, out=tmp_path / "s1.png"))[1])


def test_given_images_and_cli_verb(tmp_path, capsys):
    images = np.random.default_rng(0).integers(0, 256, (2, 40, 40, 3), dtype=np.uint8)
    path = show_views("moco_v2", images=images, size=24, out=tmp_path / "given.png")
    assert _pixels(path)[0] == grid_pixels(2, 3)
    out = tmp_path / "cli" / "views.png"
    assert main(["views", "--recipe", "simclr", "--n", "2", "--out", str(out),
                 "--color-strength", "0.5", "--small-crops", "2"]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    assert _pixels(out)[0] == grid_pixels(2, 5)
    assert main(["views", "--recipe", "swav", "--out", str(tmp_path / "bad.png"),
                 "--small-crops", "1", "--small-size", "64"]) == 2
    assert "small_size" in capsys.readouterr().err
