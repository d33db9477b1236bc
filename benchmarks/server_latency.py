"""Round trip of one tracking request to the server a study starts (`server.serve`: gunicorn, no job runner)
against the same `mlflow server` command with MLflow's default (uvicorn), side by side in one run.

Each server serves its own sqlite store on 127.0.0.1; one run is created in each, then the same requests are
timed in alternating rounds through MLflow's own client (kept-alive HTTP connections, as a study worker's):
get_run, set_tag, log_batch (an epoch's metrics + heartbeat, as `leases.beat` writes it).
Figures: server_request_ms (lrnoise's server, mean of the per-request minima), server_request_ms_uvicorn,
server_uvicorn_vs_lrnoise (the ratio). `python server_latency.py`; LRNOISE_BENCH_QUICK=1: 3 rounds.
"""

import contextlib
import statistics
import subprocess
import tempfile
import time

import _common

ROUNDS = 3 if _common.quick() else 30


@contextlib.contextmanager
def uvicorn_server(store_uri: str):
    """`mlflow server` as MLflow 3.17 starts it by default (uvicorn), job runner off like lrnoise's."""
    import os
    import signal

    from lrnoise.store import server as tracking_server

    port = tracking_server.free_port()
    server = tracking_server.launch(
        store_uri,
        port,
        workers=2,
        gunicorn=False,
        env={"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # with its uvicorn children: one process group
    uri = f"http://127.0.0.1:{port}"
    try:
        tracking_server._wait_for(uri, server, os.devnull, 120)
        yield uri
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # `mlflow server` alone would leave uvicorn running
        server.wait(timeout=30)


def requests_of(uri: str) -> dict:
    """{name: callable} sending one request each to the server at `uri`."""
    import mlflow
    from mlflow.entities import Metric, RunTag

    from lrnoise import names

    client = mlflow.MlflowClient(uri)
    run_id = client.create_run(client.create_experiment(f"latency-{time.time_ns()}")).info.run_id

    def beat():
        now = int(time.time() * 1000)
        client.log_batch(run_id, metrics=[Metric("loss", 0.5, now, 1)], tags=[RunTag(names.HEARTBEAT, str(now))])

    return {
        "get_run": lambda: client.get_run(run_id),
        "set_tag": lambda: client.set_tag(run_id, "k", "v"),
        "log_batch": beat,
    }


def main():
    from lrnoise.store import server as tracking_server

    with (
        tempfile.TemporaryDirectory(prefix="lrnoise-latency-") as tmp,
        tracking_server.serve(f"sqlite:///{tmp}/a.db") as ours,
        uvicorn_server(f"sqlite:///{tmp}/b.db") as theirs,
    ):
        calls = {
            **{f"ours {k}": f for k, f in requests_of(ours).items()},
            **{f"uvicorn {k}": f for k, f in requests_of(theirs).items()},
        }
        best = _common.best_of_each(calls, ROUNDS)
    ours_ms = 1000 * statistics.mean(v for k, v in best.items() if k.startswith("ours"))
    uvicorn_ms = 1000 * statistics.mean(v for k, v in best.items() if k.startswith("uvicorn"))
    return _common.record(
        {
            "server_request_ms": round(ours_ms, 1),
            "server_request_ms_uvicorn": round(uvicorn_ms, 1),
            "server_uvicorn_vs_lrnoise": round(uvicorn_ms / ours_ms, 1),
        }
    )


if __name__ == "__main__":
    main()
