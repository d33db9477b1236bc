"""The study: the grid as one resumable command; reuse, workers, Ray, its own tracking server, bad input."""

import os
import re
import threading
from pathlib import Path

import mlflow
import pytest
from typer.testing import CliRunner

from lrnoise import names, paper
from lrnoise.cli import app
from lrnoise.config import Execution, Placement
from lrnoise.errors import LrnoiseError
from lrnoise.grid import StudySpec
from lrnoise.noise.noise_config import NoiseConfig
from lrnoise.settings import StudySettings
from lrnoise.store import leases, session
from lrnoise.store import server as tracking_server  # `server` is the fixture below
from lrnoise.study import dispatch, gpus, local, ray_executor, runner
from lrnoise.study.job import Job
from lrnoise.study.ray_executor import RayRequest, ray_request
from lrnoise.training.train import train

from support.commands import mlflow_run
from support.stores import new_store, run_statuses, runs_of

TINY = dict(
    preset="demo",
    models=("resnet8",),
    optimizers=("adam",),
    lrs=(0.001, 0.002),
    seeds=(0,),
    epochs=1,
    trials=2,
    batch_size=128,
    noise=("additive",),
)  # ResNet8s: the study is tested, not depth
QUICK = Execution(grad_noise_batches=0)  # nor the gradient-noise measurement


def test_plans():
    paper_jobs = runner.plan(StudySpec("paper"))
    assert len(paper_jobs) == 4 * 6 * 2 + 5  # Adam grid + five other optimizers (Adam's run is shared)
    assert {j.train.lr for j in paper_jobs} == set(paper.LRS) and 0.000725 not in paper.LRS
    assert len(runner.plan(StudySpec("optimizers"))) == 6
    demo = runner.plan(StudySpec("demo"))
    assert {j.train.dataset for j in demo} == {"digits"} and len(demo) == 6 * 3 + 5  # ResNet20: 6 lrs x 3 seeds
    assert {(j.train.model, j.train.seed) for j in demo} == {("resnet20", 0), ("resnet20", 1), ("resnet20", 2)}
    assert {j.train.batch_size for j in demo} == {32} and {j.train.train_noise for j in demo} == {0.0}
    assert all([c.name for c in j.noise] == ["additive-paper", "pcm-1s-1y"] for j in demo)
    assert all(j.noise[0].levels == paper.ETAS and j.noise[0].trials == 5 for j in demo)
    seeds = runner.plan(StudySpec("seeds"))
    assert len(seeds) == 6 * 5 and {j.train.seed for j in seeds} == {0, 1, 2, 3, 4}
    assert len(runner.plan(StudySpec("paper", seeds=(0, 1, 2)))) == 3 * (4 * 6 * 2 + 5)
    mechanism = runner.plan(StudySpec("mechanism"))
    grid = {(j.train.optimizer, j.train.lr, j.train.batch_size, j.train.train_noise) for j in mechanism}
    assert len(mechanism) == 3 * len(grid) == 3 * (2 * 3 * 2 + 4)  # 3 seeds of each
    assert {
        ("adam", 0.0005, 8, 0.0),
        ("adam", 0.001, 32, 0.0),
        ("momentum", 0.001, 8, 0.0),
        ("momentum", 0.002, 32, 0.0),
    } <= grid  # equal lr^2 / B along a diagonal, for both optimizers
    assert {tn for _, lr, b, tn in grid if (lr, b) == (0.00075, 32)} == {0.0, 0.02, 0.05, 0.1}
    # batch size compared at equal optimizer steps: 10 epochs' worth of updates at batch 32, for B = 8 too
    assert {(j.train.budget, j.train.reference_batch_size, j.train.epochs) for j in mechanism} == {("steps", 32, 10)}
    by_epochs = runner.plan(StudySpec("mechanism", budget="epochs"))
    assert {j.train.budget for j in by_epochs} == {"epochs"} and {j.train.budget for j in demo} == {"epochs"}
    swept = runner.plan(
        StudySpec(
            "demo",
            models=("resnet20",),
            optimizers=("adam",),
            lrs=(0.001,),
            seeds=(0,),
            batch_sizes=(16, 128),
            train_noises=(0.0, 0.05),
        )
    )
    assert [(j.train.batch_size, j.train.train_noise) for j in swept] == [
        (16, 0.0),
        (16, 0.05),
        (128, 0.0),
        (128, 0.05),
    ]
    assert len({names.config_key(j.train.params()) for j in swept}) == 4  # each its own configuration
    assert "train_noise" not in swept[0].train.params()  # a clean training keeps the key it always had
    with pytest.raises(LrnoiseError, match="--batch-size or --batch-sizes"):
        StudySpec("demo", batch_size=32, batch_sizes=(16, 64))
    job = swept[1]
    assert Job.from_json(job.to_json()) == job  # the process boundary loses nothing
    assert job.name == "digits/resnet20/adam/lr=0.001/B=16/train_noise=0.05/seed=0"
    fashion = runner.plan(StudySpec("fashion"))[0]  # the progress line says which subsets a configuration saw
    assert fashion.name.startswith("fashion_mnist-n4000-t1000/resnet20/adam/")


def test_study_params_name_the_grid():
    assert runner.study_params(StudySpec("demo")) == {
        "preset": "demo",
        "datasets": "preset",
        "models": "preset",
        "optimizers": "preset",
        "lrs": "preset",
        "batch_sizes": "preset",
        "train_noises": "preset",
        "seeds": "preset",
        "epochs": "10",
        "noise": "additive-paper,pcm-1s-1y",
        "etas": "preset",
        "times": "preset",
        "trials": "5",
        "patience": "4",
        "budget": "epochs",
        "reference_batch_size": "32",
        "train_examples": "all",
        "test_examples": "all",
    }
    fashion = runner.study_params(StudySpec("fashion"))
    assert (fashion["train_examples"], fashion["test_examples"]) == ("4000", "1000")
    spec = StudySpec("paper", lrs=(0.001, 0.002), seeds=(0, 1), noise=("pcm",), times=(1.0, 60.0), trials="auto")
    params = runner.study_params(spec)
    assert params["lrs"] == "0.001,0.002" and params["seeds"] == "0,1" and params["trials"] == "auto"
    assert params["noise"] == NoiseConfig("pcm", levels=(1.0, 60.0)).name
    assert names.config_key(params) != names.config_key(runner.study_params(StudySpec("paper")))


def test_workers_keep_to_their_trace_group():
    """Two workers on the demo: each takes the next configuration of the group it traced, a free worker the
    largest group nobody is on, so the five single-optimizer groups and three Adam groups (one per seed) are traced
    once each."""
    queue, working, taken = runner.plan(StudySpec("demo")), {}, {0: [], 1: []}
    groups = {dispatch.trace_group(j) for j in queue}
    slot = 0
    while queue:
        others = {g for s, g in working.items() if s != slot}
        job = dispatch.next_job(queue, working.get(slot), others)
        working[slot] = dispatch.trace_group(job)
        taken[slot].append(working[slot])
        slot = 1 - slot  # the two workers alternate finishing
    traced = [g for worker in taken.values() for i, g in enumerate(worker) if g not in worker[:i]]
    assert sorted(traced) == sorted(groups)  # each group traced by one worker only
    assert len(taken[0]) + len(taken[1]) == 23 and abs(len(taken[0]) - len(taken[1])) <= 1
    assert taken[0][0] != taken[1][0]  # two Adam groups (six lrs each) start in parallel
    # a lone group two workers must share: the second worker helps rather than idles
    lone = runner.plan(StudySpec("demo", models=("resnet20",), optimizers=("adam",)))
    first = dispatch.next_job(lone, None, set())
    assert dispatch.next_job(lone, None, {dispatch.trace_group(first)}) in runner.plan(
        StudySpec("demo", models=("resnet20",), optimizers=("adam",))
    )


def test_the_dispatcher_stakes_each_slots_next_configuration(store):
    """The claim of the configuration a slot takes next is staked while it works on the current one (its settle
    wait passes meanwhile); any slot that takes a staked configuration gets its claim; a staked configuration is
    held against other studies; nothing is left behind."""
    client = mlflow.tracking.MlflowClient()
    exp = session.ensure_experiment("lrnoise")
    jobs = runner.plan(StudySpec(**{**TINY, "lrs": (0.001, 0.002, 0.003)}))
    dispatcher = dispatch.Dispatcher(jobs, exp)
    first, claim = dispatcher.take(0)
    assert first == jobs[0] and claim is None and list(dispatcher.stakes) == [jobs[1]]  # its group's next
    key = names.config_key(jobs[1].train.params())
    with leases.claimed(exp, key) as mine:  # another study arriving now: the stake is older
        assert mine is False
    second, claim = dispatcher.take(1)  # another slot takes it, with its claim
    assert second == jobs[1] and claim.key == key and list(dispatcher.stakes) == [jobs[2]]
    line = dispatch.job_line(second, claim)  # what a worker process receives
    assert dispatch.from_job_line(line) == (second, claim)
    with leases.claimed(exp, key, staked=claim) as mine:
        assert mine is True
    dispatcher.finish(claim)
    assert client.get_run(claim.run_id).info.lifecycle_stage == "deleted"
    dispatcher.close()  # jobs[2] never ran: its stake goes too, and nothing more is handed out
    assert dispatcher.take(0) is None and dispatcher.queue == [jobs[2]]
    claims = client.search_runs([exp], f"tags.`{names.KIND}` = 'claim'", run_view_type=3)
    assert len(claims) == 3 and {r.info.lifecycle_stage for r in claims} == {"deleted"}


def test_default_workers_are_the_presets_measured_choice_or_one_per_gpu(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # no GPU
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert runner.default_workers(StudySpec("demo")) == 2 == runner.default_workers(StudySpec("seeds"))
    assert runner.default_workers(StudySpec("paper")) == 1
    monkeypatch.setattr(os, "cpu_count", lambda: 1)
    assert runner.default_workers(StudySpec("demo")) == 1  # never more workers than cores
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")  # the user's two GPUs: none left idle
    assert runner.default_workers(StudySpec("paper")) == 2
    assert runner.default_workers(StudySpec("paper"), Placement(gpus_per_training=0.5)) == 4
    assert runner.default_workers(StudySpec("paper"), Placement(gpus_per_training=2)) == 1
    assert runner.default_workers(StudySpec("demo"), Placement(gpus_per_training=0)) == 1  # CPU trainings


def test_local_workers_get_the_users_gpus_as_asked(monkeypatch):
    """CUDA_VISIBLE_DEVICES=2,3: workers see GPU 2 and GPU 3 (not 0 and 1); k GPUs per training give each its
    own k; a fraction 1/k lets k share one; more workers than that is refused in one line."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    devices = gpus.gpu_devices()
    assert devices == ["2", "3"]
    assert gpus.gpu_assignment(2, devices, None) == ["2", "3"]
    assert gpus.gpu_assignment(1, devices, 2) == ["2,3"]
    assert gpus.gpu_assignment(4, devices, 0.5) == ["2", "2", "3", "3"]
    assert gpus.gpu_assignment(3, devices, 0) == ["", "", ""]
    with pytest.raises(
        LrnoiseError, match="3 workers at 1 GPUs per training need 3 GPUs; CUDA_VISIBLE_DEVICES gives 2"
    ):
        gpus.gpu_assignment(3, devices, None)
    with pytest.raises(LrnoiseError, match="use --workers 1"):
        gpus.gpu_assignment(2, devices, 2)
    with pytest.raises(LrnoiseError, match="none is visible: 0 trains on the CPU"):
        gpus.gpu_assignment(1, [], 1)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "-1")  # TensorFlow's idiom for no GPU
    assert gpus.gpu_devices() == [] and gpus.gpu_assignment(2, [], None) == ["", ""]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-aa,GPU-bb,GPU-cc")  # UUIDs kept as written
    assert gpus.gpu_assignment(3, gpus.gpu_devices(), 1) == ["GPU-aa", "GPU-bb", "GPU-cc"]
    assert Placement(gpus_per_training=0.3333).validate().gpus_per_training == 0.3333  # 1/3, as typed
    for bad in (-1, 0.3, 1.5, float("inf")):
        with pytest.raises(LrnoiseError, match="gpus per training must be 0, a whole number, or a fraction 1/k"):
            Placement(gpus_per_training=bad).validate()


def test_cpu_workers_share_the_cores(monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert local.worker_threads(2) == {"TF_NUM_INTEROP_THREADS": "1"}  # never the intra-op pool: see its doc
    assert local.worker_threads(1) == {"TF_NUM_INTEROP_THREADS": "2"}
    assert local.worker_threads(8) == {"TF_NUM_INTEROP_THREADS": "1"}  # never zero


@pytest.mark.e2e
def test_mlflow_run_study_then_second_invocation_trains_nothing(store):
    proc = mlflow_run(
        "study",
        "models=resnet8",
        "grad_noise_batches=0",
        "optimizers=adam",
        "lrs=0.001,0.002",
        "workers=1",
        "seeds=0",
        "epochs=1",
        "trials=2",
        "noise=additive,pcm",
        f"report_dir={os.getcwd()}/reports/lrnoise",
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Table II" in proc.stdout and "open first: report.html, additive-paper/claims.md" in proc.stdout
    assert (Path.cwd() / "reports" / "lrnoise" / "additive-paper" / "fig1_noise_curves_digits.png").is_file()
    (study_run,) = runs_of("study")
    trains, evals = runs_of("train"), runs_of("noise_eval")
    assert len(trains) == 2 and all(r.data.tags["mlflow.parentRunId"] == study_run.info.run_id for r in trains)
    assert sorted(r.data.tags["mlflow.parentRunId"] for r in evals) == sorted(2 * [r.info.run_id for r in trains])
    assert {r.data.tags["lrnoise.noise_config_name"] for r in evals} == {"additive-paper", "pcm-1s-1y"}
    assert set(run_statuses().values()) == {"FINISHED"}
    for name in ("additive-paper", "pcm-1s-1y"):  # one set of outputs per configuration, and fig5 across them
        assert os.path.isfile(f"reports/lrnoise/{name}/table3_avg_normalized_accuracy.md")
    assert os.path.isfile("reports/lrnoise/fig5_noise_models_digits.png")
    assert "#/experiments/" not in proc.stdout or "/runs" in proc.stdout
    # a quiet console: one progress line per configuration, no MLflow "View run ... at" line per run
    assert "View run" not in proc.stdout and "View experiment" not in proc.stdout, proc.stdout[-2000:]
    assert len([line for line in proc.stdout.splitlines() if re.match(r"\[study\] \d+/2 done", line)]) == 2

    outcomes, _ = runner.run_study(
        StudySpec(**{**TINY, "batch_size": None, "noise": ("additive", "pcm")}),
        StudySettings(workers=1, report=False, execution=QUICK),
    )
    assert [o.trained for o in outcomes] == ["reused", "reused"] and [o.evaluated for o in outcomes] == ["reused"] * 2
    assert len(runs_of("train")) == 2 and len(runs_of("noise_eval")) == 4


@pytest.mark.e2e
def test_two_workers_through_a_tracking_server_lose_no_run(store):
    spec = StudySpec(**TINY)  # (the Ray executor is tested against a secured server: test_auth.py)
    outcomes, built = runner.run_study(spec, StudySettings(workers=2, execution=QUICK))
    assert [o.status for o in outcomes] == ["ok"] * 2, [o.error for o in outcomes]
    assert session.tracking_uri() == store  # back on the sqlite store, the server stopped
    assert not [t for t in threading.enumerate() if t.name == "lrnoise-server-stop"]  # and waited for
    assert len(runs_of("train")) == 2 and len(runs_of("noise_eval")) == 2
    assert len(built.runs) == 2 and built.runs["avg_normalized_accuracy"].notna().all()
    assert set(run_statuses().values()) == {"FINISHED"}


@pytest.mark.parametrize(
    "args, message",
    [
        (["--preset", "huge"], "unknown preset 'huge'"),
        (["--datasets", "mnist"], "unknown dataset 'mnist'"),
        (["--models", "resnet18"], "unknown model 'resnet18'"),
        (["--optimizers", "rmsprop"], "unknown optimizer 'rmsprop'"),
        (["--lrs", "0.1,fast"], "--lrs must be a comma-separated list"),
        (["--lrs", "-1"], "lr must be a finite number > 0"),
        (["--etas", "0.1,-0.2"], "level eta must be a fraction from 0 to 1"),
        (["--noise", "additive,thermal"], "unknown noise 'thermal'"),
        (["--times", "-1"], "level t must be a finite number"),
        (["--executor", "slurm"], "unknown executor"),
        (["--executor", "ray", "--ray-address", "auto"], "need a tracking server they can reach"),
        (["--workers", "two"], "--workers must be a whole number"),
        (["--workers", "0"], "workers must be >= 1"),
        (["--reuse", "older"], "unknown reuse 'older': choose one of same, any"),
        (["--cpus-per-training", "many"], "--cpus-per-training must be a number"),
        (["--cpus-per-training", "0"], "cpus per training must be > 0"),
        (["--gpus-per-training", "0.3"], "gpus per training must be 0, a whole number, or a fraction 1/k"),
        (["--ray-runtime-env", "pip=ray"], "ray runtime env must be a JSON object"),
    ],
)
def test_bad_input_before_anything_runs(store, args, message):
    result = CliRunner().invoke(app, ["study", *args])
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1 and message in lines[0], result.output
    assert run_statuses() == {}


@pytest.mark.e2e
def test_a_failed_configuration_does_not_stop_the_grid(store, monkeypatch):
    real = train

    def flaky(config, **kwargs):
        if config.lr == 0.002:
            raise RuntimeError("disk full")
        return real(config, **kwargs)

    monkeypatch.setattr("lrnoise.study.job.train", flaky)
    result = CliRunner().invoke(
        app,
        [
            "study",
            "--models",
            "resnet8",
            "--grad-noise-batches",
            "0",
            "--optimizers",
            "adam",
            "--lrs",
            "0.001,0.002",
            "--seeds",
            "0",
            "--epochs",
            "1",
            "--trials",
            "1",
            "--batch-size",
            "128",
            "--workers",
            "1",
        ],
    )  # in this process: the monkeypatch holds
    assert result.exit_code == 1
    assert "failed: digits/resnet8/adam/lr=0.002/B=128/seed=0: RuntimeError: disk full" in result.output
    assert len([r for r in runs_of("train") if r.info.status == "FINISHED"]) == 1
    assert {r.info.status for r in runs_of("study")} == {"FAILED"}
    assert "RUNNING" not in run_statuses().values()


# ---------------------------------------------------------------- the study's own tracking server
@pytest.mark.e2e
def test_the_study_server_is_gunicorn_without_the_job_runner(tmp_path, monkeypatch, migrated_store):
    """server.serve: gunicorn (MLflow's default uvicorn took ~48 ms a kept-alive request here, gunicorn ~3 ms:
    benchmarks/server_latency.py) and no GenAI job runner processes (huey consumers)."""
    import pathlib

    import requests

    def job_runners():
        """MLflow's job runner and huey consumers below this test process (other tests' servers run beside it)."""
        parents, commands = {}, {}
        for proc in pathlib.Path("/proc").glob("[0-9]*"):
            try:
                parents[int(proc.name)] = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
                commands[int(proc.name)] = (proc / "cmdline").read_bytes()
            except (OSError, ValueError, IndexError):
                pass

        def descends_from_us(pid):
            while pid > 1:
                if pid == os.getpid():
                    return True
                pid = parents.get(pid, 0)
            return False

        return [pid for pid, command in commands.items() if b"mlflow.server.jobs" in command and descends_from_us(pid)]

    monkeypatch.delenv("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", raising=False)  # "true" there brings the runner back
    stopping = []  # as a study passes it: the block's end does not wait for the server to exit
    with tracking_server.serve(new_store(migrated_store, tmp_path / "s.db"), stopping=stopping) as uri:
        assert requests.get(f"{uri}/health", timeout=10).headers.get("Server", "").startswith("gunicorn")
        if pathlib.Path("/proc").is_dir():
            assert job_runners() == []
    assert len(stopping) == 1
    stopping[0].join(timeout=60)
    assert not stopping[0].is_alive()
    with pytest.raises(requests.ConnectionError):  # stopped once joined
        requests.get(f"{uri}/health", timeout=10)


@pytest.mark.e2e
def test_a_tracking_server_that_cannot_start_is_one_line(tmp_path):
    import socket

    with socket.socket() as taken:  # port taken
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(LrnoiseError) as caught:
            with tracking_server.serve(f"sqlite:///{tmp_path / 'a.db'}", port=port, wait_seconds=60):
                pass
    assert "could not start" in str(caught.value) and "\n" not in str(caught.value)
    with pytest.raises(LrnoiseError, match="could not start"):  # a store URI it cannot open
        with tracking_server.serve("nosuchscheme://x/y", wait_seconds=60):
            pass


def node(cpus, gpus=0, alive=True):
    return {"Alive": alive, "Resources": {"CPU": cpus, **({"GPU": gpus} if gpus else {})}}


def test_a_ray_trainings_request_neither_oversubscribes_a_cpu_node_nor_leaves_a_gpu_idle():
    """On CPU nodes a training asks for the smallest node's CPUs / the preset's workers per node; beside a GPU
    for 1 CPU and 1 GPU; dead nodes hold nothing; a request no node can hold is refused in one line."""
    cpu_cluster = [node(2), node(8), node(16, alive=False)]
    assert ray_request(cpu_cluster, 2, None, None) == RayRequest(1.0, 0.0, 10)  # demo: 2/node
    assert ray_request(cpu_cluster, 1, None, None) == RayRequest(2.0, 0.0, 5)  # CIFAR: 1/node
    gpu_cluster = [node(16, 2), node(16, 4)]
    assert ray_request(gpu_cluster, 1, None, None) == RayRequest(1.0, 1.0, 6)  # every GPU busy
    assert ray_request(gpu_cluster, 1, 4, 0.5).slots == 8  # 4 CPUs each: 4 per node
    assert ray_executor.ray_slots([node(2, 1)], 0.1, 0.2) == 5  # 1 / 0.2 is 5 trainings per GPU, not 4
    assert ray_request(gpu_cluster, 1, None, 0).slots == 2  # CPU trainings: a whole 16-core node each
    with pytest.raises(
        LrnoiseError, match="no Ray node can hold one training .32 CPUs, 0 GPUs.: the largest live node"
    ):
        ray_request(cpu_cluster, 1, 32, None)


def test_ray_workers_get_the_users_runtime_env_and_the_tracking_environment(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "secret")
    user = Placement(ray_runtime_env='{"py_modules": ["src/lrnoise"], "env_vars": {"KERAS_BACKEND": "jax"}}')
    env = ray_executor.ray_runtime_env(user.validate().runtime_env(), 2.0)
    assert env["py_modules"] == ["src/lrnoise"]
    assert env["env_vars"]["MLFLOW_TRACKING_URI"] == "http://127.0.0.1:5000"
    assert env["env_vars"]["MLFLOW_TRACKING_PASSWORD"] == "secret"  # environment only, never a param or tag
    assert env["env_vars"]["KERAS_BACKEND"] == "jax" and env["env_vars"]["TF_NUM_INTEROP_THREADS"] == "2"
    for bad, message in (("[1]", "got list"), ("{oops", "must be a JSON object")):
        with pytest.raises(LrnoiseError, match=message):
            Placement(ray_runtime_env=bad).validate()


def test_a_lost_configuration_goes_back_first_and_what_was_never_handed_out_drains(store):
    jobs = runner.plan(StudySpec(**{**TINY, "lrs": (0.001, 0.002, 0.003)}))
    dispatcher = dispatch.Dispatcher(jobs, session.ensure_experiment("lrnoise"))
    first, claim = dispatcher.take(0)
    dispatcher.finish(claim)
    dispatcher.put_back(first)  # its worker was lost
    assert dispatcher.take(1)[0] == first
    assert sorted(j.name for j in dispatcher.drain()) == sorted(j.name for j in jobs if j != first)
    assert dispatcher.queue == [] and dispatcher.take(0) is None
    dispatcher.close()
