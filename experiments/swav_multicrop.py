"""SwAV: two large crops against multi-crop, and the number of prototypes.

    python experiments/swav_multicrop.py [--preset tiny] [--seeds 1] [--data PATH] [--set key=value ...]
        [--storage-path raycl_sweeps] [--scheduler asha] [--resume] [--dry-run]
    ray job submit --working-dir . -- python experiments/swav_multicrop.py --preset cifar10 --data /data/cifar10

Runs the grids swav_multicrop, swav_prototypes (``raycl.sweeps.GRIDS``) as Ray Tune sweeps; the tables land in
``<storage-path>/<grid>-<preset>/`` (``raycl.load_sweep`` reads them). ``--dry-run`` prints the cells.
"""

import sys

from raycl.sweeps.command import script_main

if __name__ == "__main__":
    sys.exit(script_main(['swav_multicrop', 'swav_prototypes'], __doc__.split("\n")[0]))
