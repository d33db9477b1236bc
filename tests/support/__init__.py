"""What the tests share besides fixtures (those stay in conftest.py): the repository's root, tracking stores and
their runs (stores.py), tracking servers (servers.py), lrnoise and `mlflow run` in a process of their own
(commands.py), and the secured-server, two-node Ray and TensorFlow-less helpers the e2e tests start."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the repository
