"""The tracking store, and every MLflow call lrnoise makes: the session with the store and its experiments, what
goes into a run, the model registry, runs read back as frames, the runs a command builds on, a run's lifecycle
with "already ran?", leases and claims, and the `mlflow server` a study starts.

Runs: a `train` run per trained model (params, per-epoch metrics, the model, checkpoints); a `noise_eval` run per
noise evaluation, child of its training run; a `report` run; a `study` run parenting the grid. Inside the package
imports run one way (`a <- b`: b imports a):

    session <- run_logging, registry
    session, semantics <- run_frames
    session, semantics, registry <- lookup
    session, semantics, run_logging, lookup <- leases

and server imports none of them.

May import: the base modules.
"""
