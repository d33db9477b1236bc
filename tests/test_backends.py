"""Train, noise-eval and report under KERAS_BACKEND=torch with TensorFlow hidden (CI's backend smoke test),
and the NumPy training pipeline that makes it possible."""

import os
import subprocess
import sys

import mlflow
import numpy as np
import pytest

from lrnoise import names
from lrnoise.data import pipelines
from lrnoise.store import registry

from support import ROOT
from support.stores import runs_of


def test_numpy_pipeline_matches_the_tf_pipeline_semantics():
    x = np.arange(20 * 6 * 5 * 2).reshape(20, 6, 5, 2) % 251
    y = np.arange(20)
    stream = pipelines.numpy_stream_class()(x, y, 8, 3, 0, (2, True))
    assert len(stream) == pipelines.steps_per_epoch(20, 8) == 3
    first = [stream[i] for i in range(3)]
    assert sorted(np.concatenate([b[1] for b in first])) == list(range(20))  # a permutation per epoch
    assert first[0][0].dtype == np.float32 and first[0][0].shape == (8, 6, 5, 2)
    padded = np.pad(x, [(0, 0), (2, 2), (2, 2), (0, 0)])
    for xb, yb in first:  # every image is a window of its padded self, possibly mirrored
        for img, label in zip(xb, yb):
            windows = [padded[label, r : r + 6, c : c + 5] for r in range(5) for c in range(5)]
            assert any(np.array_equal(img, w) or np.array_equal(img, w[:, ::-1]) for w in windows)
    again = pipelines.numpy_stream_class()(x, y, 8, 3, 0, (2, True))
    np.testing.assert_array_equal(again[1][0], first[1][0])  # a pure function of (seed, epoch, step)
    stream.on_epoch_end()
    resumed = pipelines.numpy_stream_class()(x, y, 8, 3, 1, (2, True))  # starting at epoch 1 replays epoch 1
    np.testing.assert_array_equal(stream[0][0], resumed[0][0])
    assert not np.array_equal(stream[0][1], first[0][1])


@pytest.mark.e2e
@pytest.mark.parametrize("backend", ["torch", "jax"])  # jax: run where installed (CI installs torch only)
def test_other_backend_without_tensorflow(store, tmp_path, backend):
    """One study under the backend with TensorFlow hidden: a noise-injection training (torch: its
    train_step(data); jax: the stateless train_step(state, data)) with the gradient noise measured through the
    backend's autodiff, evaluated under the paper's noise and PCM, and the report. A ResNet8: what is tested is
    the backend, not depth (a clean training takes the same path less the injected noise)."""
    pytest.importorskip(backend)
    env = {**os.environ, "KERAS_BACKEND": backend}
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "tests" / "support" / "without_tensorflow.py"),
            "study",
            "--models",
            "resnet8",
            "--optimizers",
            "adam",
            "--lrs",
            "0.002",
            "--seeds",
            "0",
            "--epochs",
            "2",
            "--patience",
            "0",
            "--batch-sizes",
            "128",
            "--train-noises",
            "0.05",
            "--noise",
            "additive,pcm",
            "--times",
            "1,86400",
            "--trials",
            "1",
            "--workers",
            "1",
            "--report-dir",
            str(tmp_path / "report"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "tensorflow imported: False" in proc.stderr
    assert (tmp_path / "report" / "additive-paper" / "table3_avg_normalized_accuracy.md").is_file()
    (trained,) = runs_of("train")
    assert trained.info.status == "FINISHED" and trained.data.params["train_noise"] == "0.05"
    assert trained.data.metrics["baseline_accuracy"] > 0.2  # it learned (chance: 0.1)
    assert names.BASELINE_ACCURACY_NOISY_BN in trained.data.metrics  # a_0 with BN re-estimated at the clean weights
    assert "avg_normalized_accuracy" in trained.data.metrics
    assert any(k.startswith("pcm-") and k.endswith("/avg_normalized_accuracy") for k in trained.data.metrics)
    assert "grad_noise_power_mean" in trained.data.metrics  # eq. 1-3 measured through the backend's autodiff
    folder = mlflow.artifacts.download_artifacts(artifact_uri=registry.model_uri_of_run(trained.info.run_id))
    requirements = open(f"{folder}/requirements.txt").read()
    assert f"{backend}==" in requirements and "tensorflow" not in requirements
