"""The report from a real tracking store filled with runs whose numbers the test chooses."""

import itertools
import os
import re
import subprocess
import sys
import time
from types import SimpleNamespace

import mlflow
import nbformat
import numpy as np
import pandas as pd
import pytest
from mlflow.entities import Metric, Param
from nbclient import NotebookClient
from PIL import Image
from scipy import stats
from typer.testing import CliRunner

from lrnoise import names, paper
from lrnoise.analysis import lr_claims, verdicts
from lrnoise.analysis.run_table import columns
from lrnoise.cli import app
from lrnoise.errors import LrnoiseError
from lrnoise.noise import noise_config
from lrnoise.noise.noise_config import PAPER, NoiseConfig
from lrnoise.report import aliases, assembly, claims_text, console, layout_check, results, tables
from lrnoise.report.rows import CellRow, ComparisonRow, OptimizerRow, SweetSpotRow
from lrnoise.settings import ReportSettings
from lrnoise.store import server as tracking_server
from lrnoise.store import session

from support import ROOT
from support.servers import kill_server, start_server
from support.stores import new_store

DROP = ReportSettings.max_accuracy_drop  # the report's default accuracy margin (1 point)

ETAS = (0.01, 0.05, 0.1, 0.2, 0.3, 0.4)
# (dataset, model, optimizer, lr, seed, baseline, A^eta at each eta or None for "not evaluated")
RUNS = [
    ("cifar10", "resnet20", "adam", 0.0005, 0, 0.90, (0.99, 0.95, 0.90, 0.80, 0.60, 0.40)),
    ("cifar10", "resnet20", "adam", 0.00075, 0, 0.90, (0.99, 0.96, 0.92, 0.85, 0.70, 0.50)),
    ("cifar10", "resnet20", "adam", 0.00075, 1, 0.92, (0.98, 0.94, 0.90, 0.81, 0.66, 0.46)),  # a second seed
    ("cifar10", "resnet20", "adam", 0.001, 0, 0.915, (0.97, 0.90, 0.80, 0.60, 0.40, 0.20)),
    ("cifar10", "resnet32", "adam", 0.0005, 0, 0.93, (0.99, 0.97, 0.94, 0.88, 0.75, 0.55)),
    ("cifar10", "resnet32", "adam", 0.00075, 0, 0.925, None),  # trained, not yet noise-evaluated
    # resnet32 @ 0.001: no run at all (a hole)
    ("cifar10", "resnet20", "sgd", 0.00075, 0, 0.70, (0.9, 0.8, 0.6, 0.4, 0.2, 0.1)),
    ("cifar10", "resnet20", "momentum", 0.00075, 0, 0.85, (0.95, 0.85, 0.7, 0.5, 0.3, 0.2)),
    ("cifar100", "resnet20", "adam", 0.001, 0, 0.66, (0.95, 0.85, 0.70, 0.45, 0.25, 0.12)),
]


def add_run(
    client,
    exp_id,
    dataset,
    model,
    optimizer,
    lr,
    seed,
    baseline,
    normalized,
    status="FINISHED",
    config=PAPER,
    learned=True,
    batch_size=128,
    train_noise=0.0,
    metrics=None,
    subset=None,
):
    """A finished training run and, when `normalized` is given, a finished noise evaluation of it under
    `config` whose A^x are `normalized` (one per level of the configuration). `metrics`: more of the run's own;
    `subset`: its params train_examples and test_examples."""
    run = client.create_run(exp_id, tags={names.KIND: "train", names.LEARNED: str(learned).lower()})
    params = {
        "dataset": dataset,
        "model": model,
        "optimizer": optimizer,
        "lr": names.canonical(lr),
        "batch_size": str(batch_size),
        "epochs": "100",
        "seed": str(seed),
        "init": "glorot_uniform",
        "shortcut": "A",
        "patience": "10",
        **({"train_noise": names.canonical(train_noise)} if train_noise else {}),
        **({"train_examples": str(subset[0]), "test_examples": str(subset[1])} if subset else {}),
    }
    now = int(time.time() * 1000)
    logged = {names.BASELINE_ACCURACY: baseline, **(metrics or {})}
    client.log_batch(
        run.info.run_id,
        metrics=[Metric(k, v, now, 0) for k, v in logged.items()],
        params=[Param(k, v) for k, v in params.items()],
    )
    client.set_terminated(run.info.run_id, status)
    if normalized:
        add_eval(client, exp_id, run.info.run_id, config, normalized)
    return run.info.run_id


def add_eval(client, exp_id, run_id, config, normalized):
    tags = {
        names.KIND: "noise_eval",
        names.SOURCE_RUN_ID: run_id,
        names.NOISE_CONFIG: config.key,
        names.NOISE_CONFIG_NAME: config.name,
        "mlflow.parentRunId": run_id,
    }
    evaluation = client.create_run(exp_id, tags=tags)
    metrics = {names.AVG_NORMALIZED_ACCURACY: float(np.mean(normalized))}
    for level, value in zip(config.levels, normalized):
        label = noise_config.level_label(config.level_name, level)
        metrics[names.level_metric("normalized_accuracy", config.level_name, label)] = value
        metrics[names.level_metric("normalized_accuracy_ci95", config.level_name, label)] = 0.01
    params = names.noise_params({**config.measured(), **config.precision()})
    now = int(time.time() * 1000)
    client.log_batch(
        evaluation.info.run_id,
        metrics=[Metric(k, v, now, 0) for k, v in metrics.items()],
        params=[Param(k, names.canonical(v)) for k, v in params.items()],
    )
    client.set_terminated(evaluation.info.run_id)
    return evaluation.info.run_id


def fill(experiment="lrnoise"):
    client = mlflow.tracking.MlflowClient()
    exp_id = session.ensure_experiment(experiment)
    ids = [add_run(client, exp_id, *r) for r in RUNS]
    add_run(client, exp_id, "cifar10", "resnet32", "adam", 0.001, 0, 0.5, None, status="RUNNING")  # not counted
    other = client.create_run(exp_id, tags={names.KIND: "noise_eval"})  # no source run: not counted
    client.log_batch(other.info.run_id, metrics=[Metric(names.BASELINE_ACCURACY, 0.1, 0, 0)])
    client.set_terminated(other.info.run_id)
    # another configuration on the first run: must never enter the paper configuration's tables
    add_eval(client, exp_id, ids[0], NoiseConfig(levels=(0.1, 0.3), trials=30), (0.11, 0.12))
    return ids


def expected_pivot(dataset, value_index):
    frame = pd.DataFrame(
        [r for r in RUNS if r[0] == dataset and r[2] == "adam"],
        columns=["dataset", "model", "optimizer", "lr", "seed", "baseline", "normalized"],
    )
    if value_index == "baseline":
        frame["value"] = frame["baseline"]
    else:
        frame["value"] = [np.mean(n) if n else np.nan for n in frame["normalized"]]
    return frame.groupby(["model", "lr"])["value"].mean().unstack()


@pytest.mark.slow
def test_tables_equal_expected_pivots(store, tmp_path):
    ids = fill()
    for run_id, spec in zip(ids, RUNS):  # register a model version per run, for the sweet-spot alias
        name = f"lrnoise-{spec[0]}-{spec[1]}"
        client = mlflow.tracking.MlflowClient()
        if not client.search_registered_models(f"name = '{name}'"):
            client.create_registered_model(name)
        client.create_model_version(name, f"runs:/{run_id}/model", run_id=run_id)
    built = assembly.build_and_write(ReportSettings(out=str(tmp_path / "out"), pdf=False))
    assert len(built.runs) == len(RUNS)
    assert list((tmp_path / "out").glob("*.png")) and not list((tmp_path / "out").rglob("*.pdf"))  # --no-pdf
    for dataset in ("cifar10", "cifar100"):
        for value, metric in (("baseline", names.BASELINE_ACCURACY), ("avr", names.AVG_NORMALIZED_ACCURACY)):
            got = tables.pivot(built.runs, metric, dataset)
            want = expected_pivot(dataset, value)
            want = want.reindex(index=got.index, columns=got.columns)
            pd.testing.assert_frame_equal(got, want, check_names=False, check_exact=False, rtol=1e-12)

    def text(name):
        return re.sub(r" +", " ", (tmp_path / "out" / name).read_text())

    md = text("table2_baseline_accuracy.md")  # two seeds: mean ±95 % t-CI half-width (n)
    half = stats.t.ppf(0.975, 1) * np.std([0.90, 0.92], ddof=1) / np.sqrt(2) * 100
    assert f"| resnet20 | 90.00% | 91.00% ±{half:.2f} (n=2) | 91.50% |" in md
    assert "| resnet32 | 93.00% | 92.50% | — |" in md
    md3 = text("table3_avg_normalized_accuracy.md")
    assert "| resnet32 | 84.67% | — | — |" in md3
    assert "additive-paper" in md3.splitlines()[0]  # every table states its configuration
    avr = tables.cells(built.runs, names.AVG_NORMALIZED_ACCURACY).set_index(["dataset", "optimizer", "model", "lr"])
    avr = avr.loc[("cifar10", "adam")]
    # one run: A_avr's CI over its draws (six levels, each +-0.01); several seeds: the t-interval over them
    assert avr.loc[("resnet20", 0.0005), "ci95"] == pytest.approx(np.sqrt(6 * 0.01**2) / 6)
    two = [np.mean(RUNS[1][6]), np.mean(RUNS[2][6])]
    assert avr.loc[("resnet20", 0.00075), "ci95"] == pytest.approx(
        stats.t.ppf(0.975, 1) * np.std(two, ddof=1) / np.sqrt(2)
    )
    assert r"\begin{tabular}" in (tmp_path / "out" / "table2_baseline_accuracy.tex").read_text()
    # every result table's csv has its row class's columns
    for name, row in (
        ("table2_baseline_accuracy.csv", CellRow),
        ("table3_avg_normalized_accuracy.csv", CellRow),
        ("table_optimizers.csv", OptimizerRow),
        ("paper_comparison.csv", ComparisonRow),
        ("sweet_spot.csv", SweetSpotRow),
    ):
        assert list(pd.read_csv(tmp_path / "out" / name).columns) == columns(row), name
    assert columns(CellRow)[: len(results.CONFIG)] == results.CONFIG  # a cell's key: the configuration's fields
    every = pd.read_csv(tmp_path / "out" / "runs.csv")
    assert len(every) == len(RUNS) and set(every["run_id"]) == set(ids)
    assert "cifar10 resnet32 adam lr=0.001: no finished training run" in built.missing
    assert "cifar10 resnet32 adam lr=0.00075: no noise evaluation" in built.missing

    optimizers = pd.read_csv(tmp_path / "out" / "table_optimizers.csv")
    assert list(optimizers["optimizer"]) == ["sgd", "momentum", "adam"]
    assert optimizers.set_index("optimizer").loc["adam", names.BASELINE_ACCURACY] == pytest.approx(0.91)

    comparison = pd.read_csv(tmp_path / "out" / "paper_comparison.csv")
    cell = comparison[
        (comparison["table"] == "II") & (comparison["model"] == "resnet20") & (comparison["lr"] == 0.00075)
    ].iloc[0]
    assert cell["paper"] == paper.BASELINE_ACCURACY[("cifar10", "resnet20", 0.00075)] == 0.9187
    assert cell["ours"] == pytest.approx(0.91) and cell["difference"] == pytest.approx(0.91 - 0.9187)
    sgd = comparison[(comparison["optimizer"] == "sgd") & (comparison["metric"] == names.BASELINE_ACCURACY)].iloc[0]
    assert sgd["paper"] == 0.6851

    # sweet spot: resnet20 lrs within 1 pp of the best mean baseline (0.915): 0.00075 (0.91) and 0.001;
    # 0.00075 has the higher A_avr; its seed-0 run has the higher A_avr of the two seeds
    spots = pd.read_csv(tmp_path / "out" / "sweet_spot.csv").set_index(["dataset", "model"])
    assert spots.loc[("cifar10", "resnet20"), "lr"] == 0.00075
    assert spots.loc[("cifar10", "resnet20"), "run_id"] == ids[1]
    version = mlflow.tracking.MlflowClient().get_model_version_by_alias("lrnoise-cifar10-resnet20", "noise-robust")
    assert version.run_id == ids[1]

    for name in (
        "fig1_noise_curves_cifar10.png",
        "fig4_tradeoff_cifar10.png",
        "fig3_optimizers.png",
        "fig1_noise_curves_cifar100.png",
    ):
        with Image.open(tmp_path / "out" / name) as image:
            assert image.format == "PNG" and image.width >= 500 and image.height >= 300
            assert len(set(image.convert("L").getdata())) > 20  # something was drawn
    reports = mlflow.search_runs(
        experiment_names=["lrnoise"], filter_string=f"tags.`{names.KIND}` = 'report'", output_format="list"
    )
    assert len(reports) == 1
    assert "table3_avg_normalized_accuracy.md" in [
        a.path for a in mlflow.tracking.MlflowClient().list_artifacts(reports[0].info.run_id)
    ]


def test_runs_beyond_one_search_page_are_all_counted(store, monkeypatch):
    """The store returns at most SEARCH_PAGE runs a request (1000); with pages of 10, 23 runs take three."""
    monkeypatch.setattr(session, "SEARCH_PAGE", 10)
    client = mlflow.tracking.MlflowClient()
    exp_id = session.ensure_experiment("big")
    for i in range(23):
        add_run(
            client, exp_id, "digits", "resnet20", "adam", [0.001, 0.002][i % 2], i, 0.5 + (i % 7) / 100, None
        )  # training runs only: the paging of that search is what is tested
    pages = []
    search = client.search_runs
    monkeypatch.setattr(
        mlflow.tracking.MlflowClient,
        "search_runs",
        lambda self, *a, **k: pages.append(k["max_results"]) or search(*a, **k),
    )
    runs, _, _ = results.fetch("big")
    assert len(runs) == 23 and runs["run_id"].is_unique and pages[:3] == [10, 10, 10]
    table = tables.cells(runs, names.BASELINE_ACCURACY)
    assert table["n"].sum() == 23


@pytest.mark.slow
def test_errors_one_line(store, tmp_path):
    def cli(*args, env=None):
        return CliRunner().invoke(app, ["report", "--out", str(tmp_path / "o"), *args], env=env)

    result = cli("--experiment", "nope")
    assert result.exit_code == 2 and "no experiment named 'nope'" in result.output
    session.ensure_experiment("empty")
    result = cli("--experiment", "empty")
    assert result.exit_code == 2 and "no finished training runs" in result.output
    assert len(result.output.strip().splitlines()) == 1
    proc = subprocess.run(
        [sys.executable, "-m", "lrnoise.cli", "report"],
        capture_output=True,
        text=True,
        env={**os.environ, "MLFLOW_TRACKING_URI": "http://127.0.0.1:9"},
        timeout=300,
    )
    assert proc.returncode == 2 and "unreachable" in proc.stderr.strip().splitlines()[-1]
    # its fail-fast HTTP settings ended with the command: a study started next from this process (a notebook) rides
    # out a server outage with MLflow's own retries (environment_unchanged checks the rest of the environment)
    assert not {"MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT"} & set(os.environ)


@pytest.mark.e2e
def test_report_over_http_tracking_server(tmp_path, monkeypatch, migrated_store):
    port = tracking_server.free_port()
    server = start_server(
        new_store(migrated_store, tmp_path / "server.db"),
        port,
        tmp_path,
        "--artifacts-destination",
        str(tmp_path / "artifacts"),
    )
    uri = f"http://127.0.0.1:{port}"
    try:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
        mlflow.set_tracking_uri(uri)
        fill()
        proc = subprocess.run(
            [sys.executable, "-m", "lrnoise.cli", "report", "--out", str(tmp_path / "http")],
            capture_output=True,
            text=True,
            timeout=300,
            cwd=tmp_path,
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert "91.00% ±12.71 (n=2)" in (tmp_path / "http" / "table2_baseline_accuracy.md").read_text()
        claims = pd.read_csv(tmp_path / "http" / "claims.csv")  # the claims, from the server's runs
        row = claims[(claims["dataset"] == "cifar10") & (claims["model"] == "resnet20")].iloc[0]
        assert row["n_lrs"] == 3 and row["n_runs"] == 4 and row["avr_verdict"] == "too few seeds"
        assert row["paper_avr_rho"] == pytest.approx(-1.0)  # the paper's row falls over these lrs
        assert "cifar10" in (tmp_path / "http" / "claims.md").read_text()
        assert "files in" in proc.stdout
    finally:
        mlflow.set_tracking_uri(None)
        kill_server(server)


@pytest.mark.e2e
def test_notebook_runs_on_a_small_store(store, tmp_path):
    fill()
    notebook = nbformat.read(ROOT / "notebooks" / "analysis.ipynb", as_version=4)
    os.environ["LRNOISE_EXPERIMENT"] = "lrnoise"
    try:
        NotebookClient(
            notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
        ).execute()
    finally:
        del os.environ["LRNOISE_EXPERIMENT"]
    outputs = str([o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs])
    assert "91.00%" in outputs and "0.9187" in outputs and "image/png" in outputs
    assert not any(o.get("output_type") == "error" for cell in notebook.cells for o in cell.get("outputs", []))


@pytest.mark.slow
def test_report_folder_is_replaced_whole_and_configurations_never_mix(store, tmp_path):
    """Also: report.html is one self-contained page per report (every configuration's claims, tables, figures
    inline and holes), logged on the report run and named first on the console."""
    fill()
    out = tmp_path / "out"
    out.mkdir()
    (out / "fig9_stale.png").write_bytes(b"old")  # an earlier report's file
    built = assembly.build_and_write(ReportSettings(out=str(out), pdf=False), log_run=False, set_alias=False)
    assert not (out / "fig9_stale.png").exists() and "fig9_stale.png" not in built.files
    runs = built.runs.set_index("run_id")
    first = runs.iloc[0]
    # the other configuration's evaluation of the first run (A = 0.11, 0.12) never enters the paper's numbers
    assert first["avg_normalized_accuracy"] == pytest.approx(np.mean(RUNS[0][6]))
    every = assembly.build_and_write(
        ReportSettings(out=str(tmp_path / "all"), noise_config="all", pdf=False), set_alias=False
    )
    page = (tmp_path / "all" / "report.html").read_text()
    assert page.count('src="data:image/png;base64,') == len(list((tmp_path / "all").rglob("*.png"))) > 3
    assert "src=" not in page.replace('src="data:image/png;base64,', "") and "<script" not in page
    assert all(f'<h2 id="{c.info.name}">' in page for c in every.configs)
    assert "Table III: average normalised accuracy A_avr" in page
    assert "The paper&#x27;s claims, answered over seeds (additive-paper)" in page
    assert "<li>cifar10 resnet32 adam lr=0.001: no finished training run</li>" in page
    client = mlflow.tracking.MlflowClient()
    (report_run,) = client.search_runs([every.experiment_id], f"tags.`{names.KIND}` = 'report'")
    assert "report.html" in [a.path for a in client.list_artifacts(report_run.info.run_id)]
    assert console.files_line(every).split("open first: ")[1].startswith("report.html, additive-paper/claims.md")
    config_names = sorted(c.info.name for c in every.configs)
    assert config_names[0] == "additive-eta10-30-e19068" or config_names[0].startswith("additive-eta10-30-")
    other = next(c for c in every.configs if not c.info.is_paper)
    assert other.runs["avg_normalized_accuracy"].dropna().tolist() == [pytest.approx(0.115)]
    assert (
        (tmp_path / "all" / other.info.name / "table3_avg_normalized_accuracy.md")
        .read_text()
        .startswith(f"# Table III: average normalised accuracy A_avr ({other.info.name}")
    )
    assert (tmp_path / "all" / "fig5_noise_models_cifar10.png").is_file()
    single = assembly.build(ReportSettings(noise_config=other.info.name))
    assert [c.info.key for c in single.configs] == [other.info.key]
    with pytest.raises(LrnoiseError, match="no noise evaluation with configuration 'pcm-1s-1y'"):
        assembly.build(ReportSettings(noise_config="pcm-1s-1y"))


# ---------------------------------------------------------------- claims for a person
def claim_runs(seeds: int, slope: float = 0.02) -> pd.DataFrame:
    """One CIFAR10 cell (ResNet20, Adam) over the paper's six lrs: A_avr rising with lr by `slope` per lr step."""
    rng = np.random.default_rng(4)
    position = np.repeat(np.arange(len(paper.LRS)), seeds)
    return pd.DataFrame(
        {
            "dataset": "cifar10",
            "model": "resnet20",
            "optimizer": "adam",
            "lr": np.array(paper.LRS)[position],
            "seed": np.tile(np.arange(seeds), len(paper.LRS)),
            "baseline_accuracy": 0.9 + rng.normal(0, 0.002, len(position)),
            "avg_normalized_accuracy": 0.6 + slope * position + rng.normal(0, 0.005, len(position)),
        }
    )


def assessed(runs: pd.DataFrame) -> tuple[dict, verdicts.Family]:
    """One noise configuration's verdict tables with their family assessed, as the report makes them."""
    found = verdicts.tables(runs, 0.01, None)
    return found, verdicts.assess({"additive-paper": found})


def test_claims_read_as_sentences_with_their_numbers():
    found, family = assessed(claim_runs(seeds=4))
    text = claims_text.claims_markdown(found, "additive-paper", family)
    lines = text.splitlines()
    assert (
        lines[2] == family.sentence() and lines[2].startswith("This report prints ") and "## Primary verdicts" in lines
    )
    assert "## cifar10 · resnet20 · adam" in lines
    avr = next(line for line in lines if line.startswith("- A_avr "))
    assert re.fullmatch(
        r"- A_avr rises with lr: \+\d\.\d pp per lr step \[\+\d\.\d, \+\d\.\d\] \(rho \+0\.\d\d; primary, "
        r"p [=<] [\d.]+, Holm p [=<] [\d.]+\); 24 runs, 4 seeds per lr, each lr its own spread",
        avr,
    ), avr
    assert any(
        re.match(r"- sweet spot lr [\d.]+ \(descriptive, no test\), chosen in \d+% of resamples", line)
        for line in lines
    )
    assert any(
        line.startswith("- the paper's Table III row: A_avr") and line.endswith("this cell does not agree")
        for line in lines
    )  # the paper's CIFAR10 ResNet20 row does not rise with lr
    assert "|" not in text  # sentences, not a 27-column table


def test_a_no_clear_verdict_says_what_it_could_have_detected():
    runs = claim_runs(seeds=3)
    runs["avg_normalized_accuracy"] = 0.6 + np.random.default_rng(3).normal(0, 0.01, len(runs))  # no trend
    found, family = assessed(runs)
    avr = next(line for line in claims_text.claims_markdown(found, "x", family).splitlines() if "- A_avr" in line)
    assert avr.startswith("- A_avr no clear trend: ") and "cannot exclude +-" in avr and "pp per lr step" in avr
    assert family.primary == 1 and family.primary_named == 0


def test_a_verdict_without_an_interval_prints_none():
    claims = lr_claims.claims(claim_runs(seeds=1), DROP)
    avr = claims_text.claim_lines(claims.iloc[0])[0]
    assert avr.startswith("A_avr too few seeds (rho +") and "no interval); 6 runs, 1 seeds per lr" in avr
    assert "[" not in avr


# ---------------------------------------------------------------- the mechanism tests, from a store
@pytest.mark.slow
def test_batch_size_and_train_noise_runs_give_the_mechanism_tests_and_figures(store, tmp_path):
    """A store like `--preset mechanism`'s: lr x batch size with seeds (A_avr a function of lr^2 / B, the noise
    power lr^2 / B as eq. 2 says), and noise-injection runs at lr 0.00075 that are clearly more robust."""
    client = mlflow.tracking.MlflowClient()
    exp_id = session.ensure_experiment("lrnoise")
    rng = np.random.default_rng(12)

    def add(lr, batch_size, seed, avr, train_noise=0.0):
        c = lr**2 / batch_size * np.exp(rng.normal(0, 0.05))  # a measured C planted to move as lr^2 / B
        add_run(
            client,
            exp_id,
            "digits",
            "resnet20",
            "adam",
            lr,
            seed,
            0.95 + rng.normal(0, 0.002),
            [avr + rng.normal(0, 0.004)] * 6,
            batch_size=batch_size,
            train_noise=train_noise,
            metrics={
                names.GRAD_NOISE_C + names.MEAN_SUFFIX: c,
                names.GRAD_NOISE_POWER_MEAN: lr**2 / batch_size * c,
            },
        )

    for lr in (0.0005, 0.001, 0.002):
        for batch_size in (16, 64):
            for seed in range(3):
                add(lr, batch_size, seed, 0.7 - 0.05 * (np.log(lr) - 0.5 * np.log(batch_size) + 5.5))
    for train_noise, gain in ((0.0, 0.0), (0.05, 0.06), (0.1, 0.12)):
        for seed in range(3):
            add(0.00075, 64, seed, 0.7 - 0.05 * (np.log(0.00075) - 0.5 * np.log(64) + 5.5) + gain, train_noise)
    built = assembly.build_and_write(
        ReportSettings(out=str(tmp_path / "out"), pdf=False), log_run=False, set_alias=False
    )
    main = built.main
    eq2 = main.verdicts["eq2"].set_index("value")
    planted = "excludes lr/B and lr alone; does not exclude lr^2/B"
    assert eq2.loc["avg_normalized_accuracy", "verdict"] == planted
    assert eq2.loc["log grad_noise_c_mean", "verdict"].startswith("scales as lr^")  # its own words, no prediction
    assert eq2.loc["log grad_noise_c_mean", "lr_slope"] == pytest.approx(2.0, abs=0.15)  # the measured C: lr^2
    assert "log grad_noise_power_mean" not in eq2.index
    assert list(main.verdicts["frontier"]["verdict"]) == ["noise-injection training dominates"]
    assert main.verdicts["frontier"].iloc[0]["noise_best_train_noise"] == 0.1
    noise_trend = main.verdicts["axis_claims"][main.verdicts["axis_claims"]["axis"] == "train_noise"]
    assert list(noise_trend["avr_verdict"]) == ["rises with train_noise"]
    (batch,) = main.verdicts["axis_claims"][main.verdicts["axis_claims"]["axis"] == "batch_size"].itertuples()
    assert (batch.n_lrs, batch.n_runs, batch.avr_verdict) == (3, 18, "rises with batch_size")  # lrs pooled
    # the paper's tables: clean training, a row per model and batch size; the noisy runs are not in them
    (block,) = main.tables["table2_baseline_accuracy"][1].values()
    assert list(block.index) == ["resnet20 B=16", "resnet20 B=64"]
    assert block.loc["resnet20 B=64", "0.00075"].endswith("(n=3)")  # the clean run at 0.00075 alone
    out = tmp_path / "out"
    for name in ("fig7_eq2_digits.png", "fig8_frontier_digits.png", "eq2.csv", "frontier.csv", "axis_claims.csv"):
        assert (out / name).is_file(), name
    claims = (out / "claims.md").read_text()
    assert (
        "## Eq. 2: which gradient-noise scale, lr^2/B, lr/B or lr alone?" in claims
        and "## lr tuning vs noise-injection training" in claims
    )
    assert re.search(
        r"eq\. 2 on avg_normalized_accuracy: excludes lr/B and lr alone; does not exclude lr\^2/B: slope ratio b/a "
        r"-0\.\d\d, 95 % set \[-\d\.\d\d, -0\.\d\d\]",
        claims,
    ), claims
    assert "noise-injection training dominates: at the target accuracy " in claims
    assert "digits · resnet20 · adam · B=64: A_avr rises with train_noise: +" in claims
    assert "eq. 2 on avg_normalized_accuracy: excludes lr/B and lr alone" in console.summary_text(built)
    for stem, fig in main.figures.items():
        if stem.startswith(("fig7", "fig8")):
            assert layout_check.layout_problems(fig) == [], stem


def test_each_batch_sizes_sweet_spot_moves_its_own_alias(store):
    """With two batch sizes the sweet spots of `resnet20 B=16` and `resnet20 B=64` are two registry versions of one
    model: each gets its own alias (noise-robust-b16, noise-robust-b64), so neither overwrites the other."""
    client = mlflow.tracking.MlflowClient()
    rows = []
    for batch_size, best_lr in ((16, 0.001), (64, 0.002)):
        for lr in (0.001, 0.002):
            run_id = client.create_run(session.ensure_experiment("lrnoise")).info.run_id
            if not client.search_registered_models("name = 'lrnoise-digits-resnet20'"):
                client.create_registered_model("lrnoise-digits-resnet20")
            client.create_model_version("lrnoise-digits-resnet20", f"runs:/{run_id}/model", run_id=run_id)
            rows.append(
                {
                    "dataset": "digits",
                    "model": "resnet20",
                    "label": f"resnet20 B={batch_size}",  # as results.join names rows with several batch sizes
                    "optimizer": "adam",
                    "lr": lr,
                    "batch_size": batch_size,
                    "train_noise": 0.0,
                    "run_id": run_id,
                    names.BASELINE_ACCURACY: 0.95,
                    names.AVG_NORMALIZED_ACCURACY: 0.8 if lr == best_lr else 0.7,
                }
            )
    spots = tables.sweet_spots(pd.DataFrame(rows), DROP)
    assert list(spots["alias_suffix"]) == ["-b16", "-b64"]
    config = SimpleNamespace(info=SimpleNamespace(is_paper=True, name="additive-paper"), sweet_spots=spots)
    assert len(aliases.set_sweet_spot_aliases(SimpleNamespace(configs=[config]))) == 2
    for suffix, run_id in zip(spots["alias_suffix"], spots["run_id"]):
        assert client.get_model_version_by_alias("lrnoise-digits-resnet20", f"noise-robust{suffix}").run_id == run_id
    one = tables.sweet_spots(pd.DataFrame(rows[:2]).assign(label="resnet20"), DROP)  # one batch size: the plain alias
    assert list(one["alias_suffix"]) == [""]


def test_the_console_names_the_folder_the_count_and_the_files_to_open_first():
    main = SimpleNamespace(info=SimpleNamespace(name="additive-paper"))
    names = ["claims.md", "fig1_noise_curves_digits.png", "fig4_tradeoff_digits.pdf", "fig4_tradeoff_digits.png"]
    names += ["table3_avg_normalized_accuracy.csv", "table3_avg_normalized_accuracy.md"]
    files = sorted(f"{c}/{n}" for c in ("additive-paper", "pcm-1s-1y") for n in names) + [
        "fig5_noise_models_digits.png",
        "report.html",
    ]
    built = SimpleNamespace(files=files, out="reports/lrnoise", main=main, configs=[main, main])
    assert console.files_line(built) == (
        "14 files in reports/lrnoise; open first: report.html, additive-paper/claims.md, "
        "additive-paper/table3_avg_normalized_accuracy.md, additive-paper/fig4_tradeoff_digits.png"
    )


def test_a_configuration_made_again_by_newer_code_counts_once_and_mixed_semantics_are_said(store):
    """Finished training runs of one configuration key under semantics 0, this code's and a newer one: only this
    code's counts (with its own evaluation); a configuration made only under 0 still counts, and the report
    names the span."""
    from lrnoise import TRAINING_SEMANTICS

    client = mlflow.tracking.MlflowClient()
    exp_id = session.ensure_experiment("lrnoise")
    old = add_run(client, exp_id, "cifar10", "resnet20", "adam", 0.001, 0, 0.50, (0.5, 0.5, 0.5, 0.5, 0.5, 0.5))
    new = add_run(client, exp_id, "cifar10", "resnet20", "adam", 0.001, 0, 0.90, (0.9, 0.9, 0.9, 0.9, 0.9, 0.9))
    only_old = add_run(client, exp_id, "cifar10", "resnet20", "adam", 0.01, 0, 0.80, (0.7, 0.7, 0.7, 0.7, 0.7, 0.7))
    newer = add_run(client, exp_id, "cifar10", "resnet20", "adam", 0.001, 0, 0.70, (0.6, 0.6, 0.6, 0.6, 0.6, 0.6))
    for run_id, key in ((old, "k1"), (new, "k1"), (only_old, "k2"), (newer, "k1")):
        client.set_tag(run_id, names.CONFIG_KEY, key)
    client.set_tag(new, names.SEMANTICS, str(TRAINING_SEMANTICS))
    client.set_tag(newer, names.SEMANTICS, str(TRAINING_SEMANTICS + 1))  # a newer lrnoise's: this code's wins
    runs, evals, _ = results.fetch("lrnoise")
    assert sorted(runs["run_id"]) == sorted([new, only_old])
    joined = results.join(runs, evals, results.choose(results.configurations(evals), "all")[0])
    assert joined.set_index("run_id").loc[new, names.AVG_NORMALIZED_ACCURACY] == pytest.approx(0.9)
    note = results.semantics_note(runs, evals)
    assert f"training runs span semantics 0 (1 runs), {TRAINING_SEMANTICS} (1 runs)" in note
    assert "noise evaluation runs were made under semantics 0 (2 runs)" in note
    assert note in console.summary_text(assembly.build(ReportSettings()))


def test_runs_on_a_subset_stay_apart_from_the_whole_data_and_the_report_says_which_subset(store):
    client = mlflow.tracking.MlflowClient()
    exp_id = session.ensure_experiment("lrnoise")
    for subset, shift in ((None, 0.0), ((4000, 1000), -0.1)):
        for lr, seed in itertools.product((0.0005, 0.001, 0.0015), (0, 1)):
            avr = 0.8 + shift + 100 * lr + 0.01 * seed
            add_run(client, exp_id, "fashion_mnist", "resnet20", "adam", lr, seed, 0.9, (avr,) * 6, subset=subset)
    report = assembly.build(ReportSettings())
    words = "fashion_mnist (4,000 of 60,000 training images; 1,000 of 10,000 test images)"
    title, blocks = report.main.tables["table3_avg_normalized_accuracy"]
    assert sorted(blocks) == ["fashion_mnist", words]  # two cells of three lrs x two seeds, never pooled
    assert blocks[words].loc["resnet20"].str.contains(r"\(n=2\)").all()
    claims = report.main.claims
    assert sorted(claims["dataset"]) == ["fashion_mnist", "fashion_mnist-n4000-t1000"] and (claims["n_runs"] == 6).all()
    assert f"{words} · resnet20 · adam" in assembly.claims_text(report.main, report.family)


def test_claims_markdown_becomes_escaped_html():
    from lrnoise.report import report_html

    text = "# Title <b>\n\nA paragraph with `code`.\n\n## Cell\n\n- one & two\n- three"
    assert report_html.markdown(text) == (
        "<h3>Title &lt;b&gt;</h3>\n<p>A paragraph with <code>code</code>.</p>\n<h4>Cell</h4>\n"
        "<ul><li>one &amp; two</li><li>three</li></ul>"
    )


def test_an_html_table_shows_its_named_index_as_a_column_without_an_empty_header_row():
    from lrnoise.report import report_html

    block = pd.DataFrame({"0.001": ["91.00% ±1.00 (n=3)"]}, index=pd.Index(["resnet20"], name="model"))
    page = report_html.table_html(block)
    assert "<th>model</th>" in page and "<th></th>" not in page and page.count("<tr") == 2  # header + one row
    optimizers = pd.DataFrame(
        [
            {
                "optimizer": "adam",
                names.BASELINE_ACCURACY: 0.9187,
                "baseline_ci95": 0.0,
                names.AVG_NORMALIZED_ACCURACY: 0.7,
                "avr_ci95": 0.0,
                "runs": 1,
            }
        ]
    )
    shown = tables.formatted_optimizers(optimizers)
    assert shown.loc["adam"].tolist() == ["91.87%", "70.00%"]  # one run: no interval of zero
