"""lrnoise: how the learning rate and optimizer shape the analog-noise resistance of deep nets."""

__version__ = "0.1.0"
