"""SimCLR Fig. 8 (no head, linear or non-linear head, by output dimension; a linear probe on h and on
g(h)) and SimCLRv2's head depth × fine-tuning layer (fine-tuned on 10% of the labels).

    python experiments/projection_head.py [--preset tiny] [--seeds 1] [--data PATH] [--set key=value ...]
        [--storage-path raycl_sweeps] [--scheduler asha] [--resume] [--dry-run]
    ray job submit --working-dir . -- python experiments/projection_head.py --preset cifar10 --data /data/cifar10

Runs the grids projection_head, simclrv2_head (``raycl.sweeps.GRIDS``) as Ray Tune sweeps; the tables land in
``<storage-path>/<grid>-<preset>/`` (``raycl.load_sweep`` reads them). ``--dry-run`` prints the cells.
"""

import sys

from raycl.sweeps.command import script_main

if __name__ == "__main__":
    sys.exit(script_main(['projection_head', 'simclrv2_head'], __doc__.split("\n")[0]))
