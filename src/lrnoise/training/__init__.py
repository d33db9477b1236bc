"""Training one configuration: the ResNets, a model built and compiled from a `TrainConfig`, the tracked training
loop, the gradient noise of eq. 1-3, noise-injection training, and the fast paths into Keras's internals.

May import: the base modules, data, store, noise.
"""
