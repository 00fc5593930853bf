"""SimCLR Table 5: τ with ℓ2-normalised projections (0.05 … 1) and without (10, 100); contrastive accuracy beside kNN.

    python experiments/temperature.py [--preset tiny] [--seeds 1] [--data PATH] [--set key=value ...]
        [--storage-path raycl_sweeps] [--scheduler asha] [--resume] [--dry-run]
    ray job submit --working-dir . -- python experiments/temperature.py --preset cifar10 --data /data/cifar10

Runs the grid temperature (``raycl.sweeps.GRIDS``) as Ray Tune sweep; the tables land in
``<storage-path>/<grid>-<preset>/`` (``raycl.load_sweep`` reads them). ``--dry-run`` prints the cells.
"""

import sys

from raycl.sweeps.command import script_main

if __name__ == "__main__":
    sys.exit(script_main(['temperature'], __doc__.split("\n")[0]))
