"""What noise-injection training costs: a steady epoch of model.fit with the paper's weight noise drawn in every
step (noise_training.configure, eta = 0.05) against the same epoch trained clean, digits ResNet20 at batch 32
(the digits presets' step, the most overhead-bound), epochs of the two alternated so load drift hits both.
Target: train_noise_step_vs_clean_step <= 1.3."""

import time

from lrnoise.config import TrainConfig
from lrnoise.training import build, noise_training

import _common  # noqa: F401  (environment defaults)

ROUNDS = 2 if _common.quick() else 6  # alternated epoch pairs; the minimum of each side is kept


def model_and_stream(config: TrainConfig, ds):
    build.seed_everything(config.seed)
    model = build.build_model(config, ds)
    build.build_state(model, ds)
    noise_training.configure(model, config.train_noise, config.seed)
    stream, steps = build.training_stream(config, ds)
    return model, stream, steps


def main():
    clean_config = TrainConfig(dataset="digits", model="resnet20", batch_size=32, epochs=ROUNDS + 1, seed=0)
    ds = build.load_data(clean_config)
    if _common.quick():
        ds.x_train, ds.y_train = ds.x_train[:256], ds.y_train[:256]
    runs = {
        name: model_and_stream(TrainConfig(**{**clean_config.params(), "train_noise": eta}), ds)
        for name, eta in (("clean", 0.0), ("noisy", 0.05))
    }
    times = {name: [] for name in runs}
    for epoch in range(ROUNDS + 1):  # epoch 0 traces the step: not timed
        for name, (model, stream, steps) in runs.items():
            start = time.perf_counter()
            model.fit(stream, steps_per_epoch=steps, epochs=epoch + 1, initial_epoch=epoch, verbose=0)
            if epoch:
                times[name].append(time.perf_counter() - start)
    clean, noisy = min(times["clean"]), min(times["noisy"])
    _common.record(
        {
            "train_noise_clean_epoch_seconds": round(clean, 3),
            "train_noise_noisy_epoch_seconds": round(noisy, 3),
            "train_noise_step_vs_clean_step": round(noisy / clean, 3),
        }
    )


if __name__ == "__main__":
    main()
