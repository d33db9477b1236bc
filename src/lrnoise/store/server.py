"""The tracking server a study starts (`mlflow server` on 127.0.0.1) and the environment its workers need."""

from __future__ import annotations

import contextlib
import os
import socket
import tempfile
import threading
import time
from typing import TYPE_CHECKING

import mlflow

from lrnoise.errors import LrnoiseError

if TYPE_CHECKING:
    import subprocess

WORKER_ENV = (
    "MLFLOW_TRACKING_URI",
    "MLFLOW_DISABLE_TELEMETRY",
    "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD",
    "MLFLOW_TRACKING_TOKEN",
    "MLFLOW_TRACKING_INSECURE_TLS",
    "MLFLOW_TRACKING_SERVER_CERT_PATH",
    "KERAS_BACKEND",
)  # what a worker needs to reach the server


def worker_env() -> dict:
    """The environment a remote worker (Ray actor) needs to log to the same server, credentials included:
    passed as environment, never written into params, tags or logs."""
    env = {k: os.environ[k] for k in WORKER_ENV if k in os.environ}
    env.setdefault("MLFLOW_TRACKING_URI", mlflow.get_tracking_uri())
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


SERVER_WORKERS = 2  # request handlers of a server serve() starts (a study's workers send short requests)
# Gunicorn's sync workers, not MLflow 3.17's default uvicorn: a request on a kept-alive uvicorn connection waits for
# TCP's delayed ACK (benchmarks/server_latency.py: server_request_ms against server_request_ms_uvicorn in
# benchmarks/results.json). The timeout only has to outlast the longest request (a model upload).
GUNICORN_OPTS = "--timeout 600 --log-level warning"


def launch(
    store_uri: str,
    port: int,
    extra_args: tuple = (),
    workers: int = SERVER_WORKERS,
    gunicorn: bool = True,
    env: dict | None = None,
    **popen,
) -> subprocess.Popen:
    """Starts `mlflow server` over `store_uri` on 127.0.0.1:`port` and returns its process at once (the caller
    waits for it to answer, and stops it): `workers` request handlers, served by gunicorn (GUNICORN_OPTS) unless
    `gunicorn` is False or on Windows (then by MLflow's default, uvicorn), without MLflow's job runner (GenAI jobs:
    a runner and seven huey consumer processes) unless MLFLOW_SERVER_ENABLE_JOB_EXECUTION says otherwise;
    `extra_args` added to its command line, `env` to its environment; `popen`: subprocess.Popen's keyword
    arguments (stdout, stderr, cwd, start_new_session)."""
    import subprocess
    import sys

    command = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--backend-store-uri",
        store_uri,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        *extra_args,
    ]
    if gunicorn and sys.platform != "win32":  # gunicorn (an MLflow dependency there); Windows keeps MLflow's uvicorn
        command.append(f"--gunicorn-opts={GUNICORN_OPTS}")
    job_execution = os.environ.get("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    environment = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": job_execution, **(env or {})}
    return subprocess.Popen(command, env=environment, **popen)


@contextlib.contextmanager
def serve(
    store_uri: str,
    port: int | None = None,
    extra_args: tuple = (),
    wait_seconds: float = 120,
    stopping: list | None = None,
):
    """`mlflow server` over `store_uri` on 127.0.0.1 while the block runs; yields its http URI. A server that
    cannot start is one LrnoiseError naming why (its own last error line); the server is always stopped
    (killed if it does not stop within 30 s). Started by launch: gunicorn, no job runner. `stopping`: the block's
    end does not wait the ~2 s the server takes to exit; the thread that stops it is appended to this list, for
    the caller to join (a study writes its report from the store meanwhile)."""
    import subprocess

    port = port or free_port()
    _check_free(port)  # a taken port: one line at once, not after the server's own bind retries
    log = tempfile.NamedTemporaryFile(prefix="lrnoise-server-", suffix=".log", delete=False)
    server = launch(store_uri, port, extra_args, stdout=log, stderr=subprocess.STDOUT)
    served = f"http://127.0.0.1:{port}"
    try:
        _wait_for(served, server, log.name, wait_seconds)
        yield served
    finally:
        server.terminate()
        if stopping is None:
            _reap(server, log)
        else:
            stopping.append(threading.Thread(target=_reap, args=(server, log), name="lrnoise-server-stop"))
            stopping[-1].start()


def _check_free(port: int) -> None:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as exc:
            raise LrnoiseError(
                f"mlflow server for http://127.0.0.1:{port} could not start: port {port} is in use ({exc.strerror})"
            ) from None


def _reap(server, log) -> None:
    """Waits for a terminated server to exit (kills it after 30 s) and removes its log."""
    import subprocess

    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()
    log.close()
    os.unlink(log.name)


def _last_error_line(path: str) -> str:
    with open(path, errors="replace") as f:
        lines = [row.strip() for row in f.read().splitlines() if row.strip()]
    errors = [row for row in lines if "Error" in row or "error" in row]
    return (errors or lines or ["no output"])[-1][:300]


def _wait_for(uri: str, server, log_path: str, seconds: float) -> None:
    import urllib.request

    deadline = time.time() + seconds
    while time.time() < deadline:
        if server.poll() is not None:
            raise LrnoiseError(
                f"mlflow server for {uri} could not start (exit {server.returncode}): {_last_error_line(log_path)}"
            )
        try:
            urllib.request.urlopen(f"{uri}/health", timeout=2)
            return
        except OSError:
            time.sleep(0.1)  # the study waits on this: a tenth of a second, not half
    raise LrnoiseError(f"mlflow server at {uri} did not answer within {seconds:.0f}s: {_last_error_line(log_path)}")


@contextlib.contextmanager
def served_if_needed(parallel: bool, stopping: list | None = None):
    """With parallel writers and a sqlite store, serve the store over HTTP on 127.0.0.1 while the study runs
    (sqlite takes one writer at a time); otherwise use the store as it is. `stopping`: as for serve."""
    uri = mlflow.get_tracking_uri()
    if not parallel or not uri.startswith("sqlite:"):
        yield uri
        return
    previous = os.environ.get("MLFLOW_TRACKING_URI")
    with serve(uri, stopping=stopping) as served:
        os.environ["MLFLOW_TRACKING_URI"] = served
        mlflow.set_tracking_uri(served)
        print(f"[study] serving {uri} at {served} for parallel workers", flush=True)
        try:
            yield served
        finally:
            if previous is None:
                os.environ.pop("MLFLOW_TRACKING_URI", None)
            else:
                os.environ["MLFLOW_TRACKING_URI"] = previous
            mlflow.set_tracking_uri(uri)
