"""A Ray cluster of two nodes on this machine, for tests/test_ray_cluster.py: a head and a second node (separate
raylets, one CPU each, on 127.0.0.1), started by `ray.cluster_utils.Cluster`. Prints the head's address, then
reads commands from stdin: `kill` removes the second node at once (its raylet and workers killed), `stop` (or
the end of stdin) shuts the cluster down.

Run with RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 (and so must be the drivers that join it): Ray otherwise rewrites
127.0.0.1 in an address to the machine's outward IP, and every address here must stay on loopback."""

import sys

from ray.cluster_utils import Cluster

NODE = {"num_cpus": 1, "node_ip_address": "127.0.0.1", "include_dashboard": False, "object_store_memory": 78 << 20}

if __name__ == "__main__":
    cluster = Cluster(initialize_head=True, head_node_args=NODE)
    second = cluster.add_node(**NODE)
    print(cluster.address, flush=True)
    try:
        for line in sys.stdin:
            if line.strip() == "kill":
                cluster.remove_node(second, allow_graceful=False)
                print("killed", flush=True)
            elif line.strip() == "stop":
                break
    finally:
        cluster.shutdown()
