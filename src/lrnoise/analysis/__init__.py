"""The statistics behind every verdict: cell fits with their own spreads, intervals and the bootstrap, the lr
claims and sweet spots, the mechanism tests (batch size, train noise, eq. 2), the frontier, and the verdicts as
one family. Works on any frame: no MLflow, no Keras, no matplotlib.

May import: the base modules, noise.
"""
