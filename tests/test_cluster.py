"""A heterogeneous cluster on one machine (``ray.cluster_utils.Cluster``: a head, a trainer node and a
CPU-only augmentation node): training workers run only where ``train.node_resource`` is, the data
work only where ``augment.node_resource`` is, and the run completes; a run whose trainer node is
removed mid-way resumes on the node that replaces it. In a subprocess, because it is a cluster of
its own beside the tests' shared one."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.ray

SCRIPT = textwrap.dedent("""
    import json, os, socket, sys, threading, time
    import pandas as pd
    import ray
    from ray.cluster_utils import Cluster
    from ray.util.state import list_actors, list_tasks

    with socket.socket() as free:  # the state API needs the dashboard; other clusters may hold 8265
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": True,
                                                            "dashboard_port": port})
    trainer = cluster.add_node(num_cpus=2, resources={"trainer_node": 1000})
    augment = cluster.add_node(num_cpus=2, resources={"augment_node": 1000})
    ray.init(address=cluster.address)
    import raycl

    result = raycl.run(method="simclr", workers=2, preset="tiny", epochs=1, storage_path=sys.argv[1],
                       name="placed", **{"train.node_resource": "trainer_node",
                                         "augment.node_resource": "augment_node",
                                         "data.num_images": 1200})
    workers = list_actors(filters=[("class_name", "=", "RayTrainWorker")], limit=1000)
    data = [t for t in list_tasks(limit=10000, detail=True)
            if "augment_task" in t.name or "decode" in t.name]
    kept = [a for a in list_actors(limit=1000) if a.class_name in ("Failures", "EpochClock", "_QueueActor")]
    print("PLACED " + json.dumps({
        "trainer": trainer.node_id, "augment": augment.node_id, "head": cluster.head_node.node_id,
        "workers": sorted({a.node_id for a in workers}), "data": sorted({t.node_id for t in data}),
        "data_tasks": sorted({t.name for t in data}), "epochs": int(result.metrics["epoch"]),
        "kept": sorted({a.node_id for a in kept}), "kept_classes": sorted({a.class_name for a in kept}),
        "knn": float(result.metrics["knn_top1"])}))

    # the trainer node lost once the first epoch's checkpoint is registered, a replacement joining:
    # Ray Train restarts the group there from that checkpoint and the run finishes every epoch
    out = {}
    def train():
        try:
            out["result"] = raycl.run(method="simclr", workers=2, preset="tiny", epochs=3,
                                      storage_path=sys.argv[1], name="node_lost",
                                      **{"train.node_resource": "trainer_node",
                                         "augment.node_resource": "augment_node",
                                         "data.num_images": 1200, "eval.knn_at_init": False})
        except BaseException as exc:
            out["error"] = repr(exc)
    thread = threading.Thread(target=train)
    thread.start()
    snapshot = os.path.join(sys.argv[1], "node_lost", "checkpoint_manager_snapshot.json")
    deadline = time.monotonic() + 300
    while not os.path.exists(snapshot) and time.monotonic() < deadline and thread.is_alive():
        time.sleep(0.2)
    cluster.remove_node(trainer)
    lost_at = time.time()
    replacement = cluster.add_node(num_cpus=2, resources={"trainer_node": 1000})
    thread.join(timeout=600)
    lost = {"error": out.get("error"), "lost_at": lost_at, "replacement": replacement.node_id}
    if "result" in out:
        r = out["result"]
        lost.update(epochs=[int(e) for e in r.history["epoch"]],
                    restarts=pd.read_parquet(os.path.join(r.path, "restarts.parquet")).to_dict("records"),
                    workers=sorted({a.node_id for a in list_actors(
                        filters=[("class_name", "=", "RayTrainWorker")], limit=1000)}))
    print("LOST " + json.dumps(lost, default=str))
    ray.shutdown()
    cluster.shutdown()
""")


def test_trainers_and_augmentation_stay_on_their_nodes_and_a_lost_trainer_node_is_replaced(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], capture_output=True, text=True,
                          timeout=600, env=env)
    line = [x for x in done.stdout.splitlines() if x.startswith("PLACED ")]
    assert done.returncode == 0 and line, done.stdout[-3000:] + done.stderr[-3000:]
    placed = json.loads(line[0][len("PLACED "):])
    assert placed["workers"] == [placed["trainer"]]  # both training workers, on the trainer node
    assert placed["data"] == [placed["augment"]]  # every augmentation and decode task on the CPU node
    assert any("augment_task" in name for name in placed["data_tasks"])
    assert placed["epochs"] == 1 and 0 < placed["knn"] <= 1
    # the run's own state (restart record, epoch clock, progress queue) beside the driver, on the head
    assert placed["kept_classes"] == ["EpochClock", "Failures", "_QueueActor"]
    assert placed["kept"] == [placed["head"]]

    line = [x for x in done.stdout.splitlines() if x.startswith("LOST ")]
    assert line, done.stdout[-3000:] + done.stderr[-3000:]
    lost = json.loads(line[0][len("LOST "):])
    assert lost["error"] is None, lost["error"] + done.stdout[-3000:] + done.stderr[-3000:]
    assert lost["epochs"] == [1, 2, 3]  # every epoch once: the one in progress redone
    (restart,) = lost["restarts"]
    assert restart["resumed_from_epoch"] >= 1 and restart["failed_at"] >= lost["lost_at"] - 1
    assert lost["replacement"] in lost["workers"]  # the restarted group ran on the new node


def test_cluster_yaml_is_a_valid_launcher_config_with_the_node_types_raycl_pins_to():
    """``ray up cluster.yaml`` would accept it (Ray's own schema and defaults), its GPU nodes carry the
    trainer resource and its CPU nodes the augmentation one that the README's commands name, and
    every node installs raycl as the README does."""
    import re

    import yaml
    from ray.autoscaler._private.util import prepare_config, validate_config

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(os.path.join(root, "cluster.yaml")) as f:
        raw = yaml.safe_load(f)
    validate_config(prepare_config(raw))
    types = raw["available_node_types"]
    with open(os.path.join(root, "cluster.yaml")) as f:
        command = f.read()
    trainer = re.search(r"train\.node_resource=(\w+)", command).group(1)
    augment = re.search(r"augment\.node_resource=(\w+)", command).group(1)
    gpu_nodes = [t for t in types.values() if t["resources"].get("GPU")]
    assert gpu_nodes and all(trainer in t["resources"] and augment not in t["resources"] for t in gpu_nodes)
    cpu_nodes = [t for t in types.values() if augment in t["resources"]]
    assert cpu_nodes and not any(t["resources"].get("GPU") or trainer in t["resources"] for t in cpu_nodes)
    head = types[raw["head_node_type"]]["resources"]
    assert trainer not in head and augment not in head  # the head only drives
    assert sum(t["max_workers"] * t["resources"]["GPU"] for t in gpu_nodes) >= 16
    assert any("pip install -e" in c for c in raw["setup_commands"])
