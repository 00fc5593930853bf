"""MoCo v1 momentum m; MoCo v2 Table 1 (MLP, aug+, cos); MoCo v2's τ sweep with and without the MLP head.

    python experiments/moco_ablation.py [--preset tiny] [--seeds 1] [--data PATH] [--set key=value ...]
        [--storage-path raycl_sweeps] [--scheduler asha] [--resume] [--dry-run]
    ray job submit --working-dir . -- python experiments/moco_ablation.py --preset cifar10 --data /data/cifar10

Runs the grids moco_momentum, mocov2_ablation, mocov2_temperature (``raycl.sweeps.GRIDS``) as Ray Tune sweeps; the tables land in
``<storage-path>/<grid>-<preset>/`` (``raycl.load_sweep`` reads them). ``--dry-run`` prints the cells.
"""

import sys

from raycl.sweeps.command import script_main

if __name__ == "__main__":
    sys.exit(script_main(['moco_momentum', 'mocov2_ablation', 'mocov2_temperature'], __doc__.split("\n")[0]))
