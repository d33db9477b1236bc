"""Which code made a run: the semantics number a train / noise-eval run records (what its numbers mean), read
back, and whether this code may continue a run made under another number. Imports no MLflow."""

from __future__ import annotations

from lrnoise import NOISE_SEMANTICS, TRAINING_SEMANTICS, __version__, names
from lrnoise.errors import LrnoiseError

SEMANTICS_OF = {"train": TRAINING_SEMANTICS, "noise_eval": NOISE_SEMANTICS}  # what this code trains / measures


def semantics_tags(kind: str) -> dict:
    """The tags a run of `kind` records about the code that made it (none for a study, claim or report run)."""
    return (
        {names.SEMANTICS: str(SEMANTICS_OF[kind]), names.LRNOISE_VERSION: __version__} if kind in SEMANTICS_OF else {}
    )


def run_semantics(run) -> int:
    """The semantics number a train / noise-eval run was made under; 0 for a run older than the tag."""
    return int(run.data.tags.get(names.SEMANTICS, "0"))


def check_resumable(run, kind: str) -> None:
    """A run of `kind` made by lrnoise under other semantics cannot be continued by this code (its first
    epochs would mean something else than its last); a run lrnoise has not touched yet (`mlflow run`'s own)
    can."""
    if kind in SEMANTICS_OF and names.KIND in run.data.tags and run_semantics(run) != SEMANTICS_OF[kind]:
        raise LrnoiseError(
            f"run {run.info.run_id} was made under {kind} semantics {run_semantics(run)}, this lrnoise "
            f"{__version__} works under {SEMANTICS_OF[kind]}: start a new run instead of resuming it"
        )
