"""Analog weight noise: the noise configuration (`NoiseConfig`), one class per physical noise model, injection
into a trained model's weights, fast accuracy scoring with BN folding, the eq. 7-9 statistics, and the tracked
`noise-eval` evaluation. The noise math imports no MLflow and no matplotlib.

May import: the base modules, data, store.
"""
