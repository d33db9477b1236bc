"""Where a study's time goes: the demo preset itself (23 configurations: ResNet20 x 6 lrs x 3 seeds with Adam,
five other optimizers; 10 epochs; additive + PCM noise, 5 draws per level), run in this process in a throwaway
sqlite store without its report, its stdout captured and parsed. About 8 minutes on 2 cores (one worker).

Per configuration c (one training + its noise evaluations, run one after another in this process):
  S_c   = Outcome.seconds: the whole configuration (run_job: tracking look-ups, data, model build, training,
          gradient-noise summary, a_0, model logging and registration, every noise evaluation with its
          artifacts and figures);
  e_c,i = the seconds of epoch i printed by the training's epoch line `epoch i/E ... (X.Xs)` (fit's epoch with
          validation; the per-epoch gradient-noise measurement, checkpoint and MLflow epoch logging run after
          that line's timer stops, so they are not in e_c,i);
  m_c   = mean(e_c,2 .. e_c,E): the steady epoch (the first epoch carries tracing and compilation);
  D_c   = the sum of the noise-evaluation level lines' seconds `eta 0.1: 2 draws ... (X.Xs)` / `t 3600: ...`:
          the noisy draws (draw + load + predict), every level of every noise configuration.
Figures (means over configurations):
  first_epoch_vs_steady_epoch            = mean_c e_c,1 / mean_c m_c;
  study_seconds_per_configuration        = mean_c S_c;
  study_fixed_seconds_per_configuration  = mean_c (S_c - E m_c - D_c): everything but steady-state epochs and
      noise draws, i.e. the first epoch's excess over a steady one, the per-epoch bookkeeping above (E times),
      and the per-configuration work (run set-up, model build, a_0, model logging, each noise evaluation's
      model load, baseline pass and artifacts). Target <= 5 s.
Information (no target), from the times t(line) the lines were printed:
  study_fixed_seconds_after_first_configuration: the fixed mean without the first configuration, which also
      pays the process's one-time costs (imports, first traces), amortised in a real study;
  study_epoch_bookkeeping_seconds = mean over c and i < E of t(epoch line i+1) - t(epoch line i) - e_c,i+1:
      the per-epoch work after an epoch line (gradient noise, checkpoint, logging);
  study_before_fit_seconds = t(epoch line 1) - e_c,1 - t(previous `[study]` line): look-ups, run set-up, data,
      model build; study_after_fit_seconds = t(first `noise-eval run` line) - t(last epoch line): the last
      epoch's bookkeeping, gradient-noise summary, a_0, model logging and registration;
      study_noise_eval_fixed_seconds = t(`[study] k/N done`) - t(first `noise-eval run` line) - D_c: the noise
      evaluations' model loads, baseline passes and artifacts. Together with e_c,1 - m_c and
      (E - 1) x bookkeeping these make up the fixed seconds.
  study_grad_noise_seconds_per_configuration: the seconds in gradnoise.estimate (the paper's mechanism, eq.
      1-3: K forward and backward passes after every epoch and once on the final weights), timed around the
      function in this process, per configuration; all of it lies in the fixed seconds (bookkeeping and
      after-fit). study_fixed_seconds_without_grad_noise: the fixed seconds less that arithmetic.
  Where the floor is: a configuration either starts from a model its worker already traced for its architecture,
      input normalisation and optimizer type (build.SweepCache) or traces its steps anew (a new seed's
      normalisation, a new optimizer type); which one, the benchmark reads off the cache as each configuration
      takes its model. study_configurations_traced = the share that traced; study_fixed_seconds_reused and
      study_fixed_seconds_traced = the fixed seconds' mean over each kind (reused: the floor of a configuration
      that traces nothing, the gradient-noise estimates included).
The study's set-up (store, study run) and report (report=False) are outside every S_c. So are the stake of the
claim of the configuration run next, which the study makes while the current one runs (dispatch.Dispatcher), and the
claim's removal after its configuration: their seconds, timed in this process, are added to the fixed seconds
(study_stake_seconds_per_configuration).
`python study_overhead.py`; LRNOISE_BENCH_QUICK=1: 2 learning rates, 2 epochs, 1 draw per level.
"""

import contextlib
import os
import re
import statistics
import sys
import tempfile
import time

import _common

EPOCH_LINE = re.compile(r"^epoch (\d+)/(\d+)\s.*\((\d+(?:\.\d+)?)s\)$")
LEVEL_LINE = re.compile(r"^(?:eta|t) \S+: \d+ draws\s.*\((\d+(?:\.\d+)?)s\)$")  # not the indented progress lines
DONE_LINE = re.compile(r"^\[study\] \d+/\d+ done, .*\((\d+)s\)$")


class TimedLines:
    """A stdout stand-in that keeps every complete line with the perf_counter time it was written, and echoes
    the study's own `[study]` lines to `echo` (progress for whoever watches the benchmark)."""

    def __init__(self, echo):
        self.lines, self.partial, self.echo = [], "", echo

    def write(self, text: str) -> int:
        self.partial += text
        *complete, self.partial = self.partial.split("\n")
        now = time.perf_counter()
        for line in complete:
            self.lines.append((now, line))
            if line.startswith("[study]"):
                self.echo.write(line + "\n")
                self.echo.flush()
        return len(text)

    def flush(self) -> None:
        pass


def _fresh(start: float) -> dict:
    return {"start": start, "epochs": [], "epoch_times": [], "draws": [], "noise_start": None}


def parse(lines: list[tuple[float, str]]) -> list[dict]:
    """Per configuration, in completion order: {epochs: [e_i], epoch_times: [t(line i)], draws: [level s],
    start: t(previous `[study]` line), noise_start: t(first `noise-eval run` line) or None, end: t(its
    `[study] k/N done` line), seconds: the `(Ns)` figure of that line}."""
    configurations, current = [], _fresh(lines[0][0] if lines else 0.0)
    for when, line in lines:
        if match := EPOCH_LINE.match(line):
            current["epochs"].append(float(match.group(3)))
            current["epoch_times"].append(when)
        elif match := LEVEL_LINE.match(line):
            current["draws"].append(float(match.group(1)))
        elif line.startswith("noise-eval run ") and current["noise_start"] is None:
            current["noise_start"] = when
        elif match := DONE_LINE.match(line):
            configurations.append({**current, "end": when, "seconds": float(match.group(1))})
            current = _fresh(when)
        elif line.startswith("[study]") and not current["epochs"]:  # the study's header: the first one starts
            current["start"] = when
    return configurations


def figures(configurations: list[dict], grad_noise_seconds: float, stake_seconds: float = 0.0) -> dict:
    """The module docstring's figures from parsed configurations (each with >= 2 epochs; `seconds` = S_c; `traced`:
    whether it traced its steps anew, where known), the seconds all of them spent in gradient-noise estimates, and
    the seconds the study spent staking their claims outside S_c (spread evenly over the configurations)."""
    mean = statistics.fmean
    first = [c["epochs"][0] for c in configurations]
    steady = [mean(c["epochs"][1:]) for c in configurations]  # m_c
    stake = stake_seconds / len(configurations)
    fixed = [c["seconds"] + stake - len(c["epochs"]) * m - sum(c["draws"]) for c, m in zip(configurations, steady)]
    bookkeeping = [
        t1 - t0 - e
        for c in configurations
        for t0, t1, e in zip(c["epoch_times"], c["epoch_times"][1:], c["epochs"][1:])
    ]
    noise_start = [c["noise_start"] or c["end"] for c in configurations]
    grad_noise = grad_noise_seconds / len(configurations)
    by_kind = {
        kind: [f for f, c in zip(fixed, configurations) if c.get("traced") is traced]
        for kind, traced in (("traced", True), ("reused", False))
    }
    kinds = {f"study_fixed_seconds_{kind}": round(mean(values), 2) for kind, values in by_kind.items() if values}
    if by_kind["traced"] or by_kind["reused"]:
        kinds["study_configurations_traced"] = f"{len(by_kind['traced'])} of {len(configurations)}"
    return {
        **kinds,
        "first_epoch_vs_steady_epoch": round(mean(first) / mean(steady), 3),
        "study_seconds_per_configuration": round(mean(c["seconds"] for c in configurations), 2),
        "study_fixed_seconds_per_configuration": round(mean(fixed), 2),
        "study_fixed_seconds_after_first_configuration": round(mean(fixed[1:] or fixed), 2),
        "study_steady_epoch_seconds": round(mean(steady), 3),
        "study_draw_seconds_per_configuration": round(mean(sum(c["draws"]) for c in configurations), 2),
        "study_epoch_bookkeeping_seconds": round(mean(bookkeeping), 3),
        "study_before_fit_seconds": round(
            mean(c["epoch_times"][0] - c["epochs"][0] - c["start"] for c in configurations), 2
        ),
        "study_after_fit_seconds": round(
            mean(n - c["epoch_times"][-1] for c, n in zip(configurations, noise_start)), 2
        ),
        "study_noise_eval_fixed_seconds": round(
            mean(c["end"] - n - sum(c["draws"]) for c, n in zip(configurations, noise_start)), 2
        ),
        "study_grad_noise_seconds_per_configuration": round(grad_noise, 2),
        "study_stake_seconds_per_configuration": round(stake, 3),
        "study_fixed_seconds_without_grad_noise": round(mean(fixed) - grad_noise, 2),
    }


def watch_traces(build) -> dict:
    """Wraps build.SweepCache.model_for in place: run name -> whether that configuration's model had to be traced
    anew (no kept model of its architecture key, or one with another optimizer type: see model_for)."""
    traced, original = {}, build.SweepCache.model_for

    def model_for(self, config, ds, execution):
        stats = build.networks.channel_stats(ds.x_train)
        kept = self.models.get(build.architecture_key(config, ds, execution, stats))
        fresh = kept is None or execution.mixed_precision == "fp16"  # fp16: always built afresh
        traced[config.run_name] = fresh or kept[1] != config.optimizer
        return original(self, config, ds, execution)

    build.SweepCache.model_for = model_for
    return traced


class Stopwatch:
    """Wraps a module function in place, adding up the seconds spent in it (calls made in this process)."""

    def __init__(self, module, name: str):
        self.seconds, original = 0.0, getattr(module, name)

        def timed(*args, **kwargs):
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - started

        setattr(module, name, timed)


def sweep_spec(quick: bool):
    from lrnoise.grid import StudySpec

    if quick:
        return StudySpec(
            preset="demo",
            models=("resnet20",),
            optimizers=("adam",),
            lrs=(0.001, 0.0015),
            seeds=(0,),
            epochs=2,
            noise=("additive", "pcm"),
            trials=1,
        )
    return StudySpec(preset="demo")  # the main job's grid, as `mlflow run .` runs it


def main():
    here = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="lrnoise-study-bench-") as tmp:
        os.chdir(tmp)  # the store's artifacts (./mlruns) land here
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp}/mlflow.db"
        from lrnoise.settings import StudySettings
        from lrnoise.study import dispatch, runner
        from lrnoise.training import build, gradnoise

        traced = watch_traces(build)
        grad_noise = Stopwatch(gradnoise, "estimate")  # the callback and the final estimate both call it
        # claims staked and removed between configurations, outside S_c
        staking = [Stopwatch(dispatch.Dispatcher, name) for name in ("_stake", "finish")]
        capture = TimedLines(sys.stdout)
        try:
            with contextlib.redirect_stdout(capture):
                outcomes, _ = runner.run_study(
                    sweep_spec(_common.quick()),
                    StudySettings(experiment="study-overhead", workers=1, report=False),
                )  # in this process: its stdout is parsed
        finally:
            os.chdir(here)
    failed = [o.job.name for o in outcomes if o.status != "ok"]
    if failed:
        raise SystemExit(f"study configurations failed: {failed}")
    configurations = parse(capture.lines)
    if len(configurations) != len(outcomes):
        raise SystemExit(f"parsed {len(configurations)} configurations from the log, the study ran {len(outcomes)}")
    for parsed, outcome in zip(configurations, outcomes):  # Outcome.seconds: unrounded S_c
        parsed["seconds"] = outcome.seconds
        parsed["traced"] = traced.get(outcome.job.train.run_name)
    return _common.record(figures(configurations, grad_noise.seconds, sum(w.seconds for w in staking)))


if __name__ == "__main__":
    main()
