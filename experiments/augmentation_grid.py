"""SimCLR Fig. 5: pairs of {crop, cutout, color, sobel, noise, blur, rotate} on one branch (diagonal: one transformation), 49 cells.

    python experiments/augmentation_grid.py [--preset tiny] [--seeds 1] [--data PATH] [--set key=value ...]
        [--storage-path raycl_sweeps] [--scheduler asha] [--resume] [--dry-run]
    ray job submit --working-dir . -- python experiments/augmentation_grid.py --preset cifar10 --data /data/cifar10

Runs the grid augmentation (``raycl.sweeps.GRIDS``) as Ray Tune sweep; the tables land in
``<storage-path>/<grid>-<preset>/`` (``raycl.load_sweep`` reads them). ``--dry-run`` prints the cells.
"""

import sys

from raycl.sweeps.command import script_main

if __name__ == "__main__":
    sys.exit(script_main(['augmentation'], __doc__.split("\n")[0]))
