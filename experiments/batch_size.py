"""SimCLR Fig. 9 / Table B.1: batch size × epochs with linear learning-rate scaling.

    python experiments/batch_size.py [--preset tiny] [--seeds 1] [--data PATH] [--set key=value ...]
        [--storage-path raycl_sweeps] [--scheduler asha] [--resume] [--dry-run]
    ray job submit --working-dir . -- python experiments/batch_size.py --preset cifar10 --data /data/cifar10

Runs the grid batch_size (``raycl.sweeps.GRIDS``) as Ray Tune sweep; the tables land in
``<storage-path>/<grid>-<preset>/`` (``raycl.load_sweep`` reads them). ``--dry-run`` prints the cells.
"""

import sys

from raycl.sweeps.command import script_main

if __name__ == "__main__":
    sys.exit(script_main(['batch_size'], __doc__.split("\n")[0]))
