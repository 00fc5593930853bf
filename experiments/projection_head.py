"""SimCLR Fig. 8: no head, linear or non-linear head, by output dimension.

    python experiments/projection_head.py [--preset tiny] [--seeds 1] [--data PATH] [--set key=value ...]
        [--storage-path raycl_sweeps] [--scheduler asha] [--resume] [--dry-run]
    ray job submit --working-dir . -- python experiments/projection_head.py --preset cifar10 --data /data/cifar10

Runs the grid projection_head (``raycl.sweeps.GRIDS``) as Ray Tune sweep; the tables land in
``<storage-path>/<grid>-<preset>/`` (``raycl.load_sweep`` reads them). ``--dry-run`` prints the cells.
"""

import sys

from raycl.sweeps.command import script_main

if __name__ == "__main__":
    sys.exit(script_main(['projection_head'], __doc__.split("\n")[0]))
