"""BYOL Table 16 (batch size, BYOL against SimCLR), Table 17 (transformations removed, BYOL against
SimCLR) and Table 5a (target decay τ_base).

    python experiments/byol_ablation.py [--preset tiny] [--seeds 1] [--data PATH] [--set key=value ...]
        [--storage-path raycl_sweeps] [--scheduler asha] [--resume] [--dry-run]
    ray job submit --working-dir . -- python experiments/byol_ablation.py --preset cifar10 --data /data/cifar10

Runs the grids byol_batch, byol_augmentations, byol_tau (``raycl.sweeps.GRIDS``) as Ray Tune sweeps; the tables land in
``<storage-path>/<grid>-<preset>/`` (``raycl.load_sweep`` reads them). ``--dry-run`` prints the cells.
"""

import sys

from raycl.sweeps.command import script_main

if __name__ == "__main__":
    sys.exit(script_main(['byol_batch', 'byol_augmentations', 'byol_tau'], __doc__.split("\n")[0]))
