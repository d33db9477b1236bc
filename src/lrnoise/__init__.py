"""lrnoise: how the learning rate and optimizer shape the analog-noise resistance of deep nets."""

__version__ = "0.1.0"

# What a run's numbers mean. Raise TRAINING_SEMANTICS whenever a change alters the weights a configuration
# trains (data order, initialisation, an optimizer's step, a budget's meaning) and NOISE_SEMANTICS whenever one
# alters what a noise evaluation measures from given weights. Every training and noise-evaluation run records
# its number (names.SEMANTICS); a study reuses only runs of this code's numbers unless told `--reuse any`.
TRAINING_SEMANTICS = 2
NOISE_SEMANTICS = 1
