"""SimCLR Table 1: colour distortion strength 1/8, 1/4, 1/2, 1 and 1 + blur.

    python experiments/color_strength.py [--preset tiny] [--seeds 1] [--data PATH] [--set key=value ...]
        [--storage-path raycl_sweeps] [--scheduler asha] [--resume] [--dry-run]
    ray job submit --working-dir . -- python experiments/color_strength.py --preset cifar10 --data /data/cifar10

Runs the grid color_strength (``raycl.sweeps.GRIDS``) as Ray Tune sweep; the tables land in
``<storage-path>/<grid>-<preset>/`` (``raycl.load_sweep`` reads them). ``--dry-run`` prints the cells.
"""

import sys

from raycl.sweeps.command import script_main

if __name__ == "__main__":
    sys.exit(script_main(['color_strength'], __doc__.split("\n")[0]))
