"""Tracking servers for tests: `mlflow server` started the one way lrnoise starts it (store/server.py), on a
free port, and killed with its children."""

import os
import signal
import subprocess
import time


def start_server(store: str, port: int, cwd, *extra: str) -> subprocess.Popen:
    """`mlflow server` as MLflow starts it by default (uvicorn, one worker) over `store` on 127.0.0.1:`port`, in a
    process group of its own (see kill_server); returns once /health answers. Without MLflow's GenAI job runner
    (a runner and seven huey consumer processes, ~16 s of CPU a start): tracking never uses it."""
    import urllib.request

    from lrnoise.store import server

    proc = server.launch(
        store,
        port,
        extra,
        workers=1,
        gunicorn=False,
        env={"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    for _ in range(240):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)
            return proc
        except OSError:
            time.sleep(0.5)
    kill_server(proc)
    raise AssertionError("mlflow server did not start")


def point_at_new_server(store: str, tmp_path, monkeypatch, *extra: str) -> tuple[int, subprocess.Popen]:
    """start_server over `store` on a free port of 127.0.0.1, this process and its children pointed at it (the
    working folder tmp_path); returns (port, server). The caller kills the server and unsets the URI."""
    import mlflow

    from lrnoise.store import server as tracking_server

    port = tracking_server.free_port()
    uri = f"http://127.0.0.1:{port}"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    return port, start_server(store, port, tmp_path, *extra)


def kill_server(proc: subprocess.Popen) -> None:
    """`mlflow server` with its uvicorn and job-runner children: killing `mlflow server` alone leaves them running."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:  # the group is gone already
        pass
    proc.wait()
