"""He et al. (2015) CIFAR ResNet v1: depth 6n+2, three stages of n basic blocks with 16/32/64 filters.

Pure Keras 3 (runs under any backend). The input is normalised by a layer inside the model, so a logged
model takes raw images (uint8 values as stored) and reuse from the registry needs no preprocessing code.
"""

from __future__ import annotations

import keras
import numpy as np

from lrnoise import config, names
from lrnoise.errors import LrnoiseError


def check_depth(depth: int) -> int:
    if depth < 8 or (depth - 2) % 6:
        raise LrnoiseError(f"ResNet depth must be 6n+2 with n >= 1 (8, 14, 20, 32, 44, 56, ...), got {depth}")
    return (depth - 2) // 6


def check_shortcut(shortcut: str) -> str:
    config.check_choice("shortcut", shortcut, config.SHORTCUTS)
    return shortcut


def depth_of(model_name: str) -> int:
    config.check_choice("model", model_name, config.MODEL_DEPTHS)
    return config.MODEL_DEPTHS[model_name]


def _conv(filters, kernel, strides, init, name):
    # No bias: batch norm follows every conv (and the pinned parameter counts assume none).
    return keras.layers.Conv2D(
        filters, kernel, strides=strides, padding="same", use_bias=False, kernel_initializer=init, name=name
    )


def shortcut_a(x, filters, name):
    """Option A: subsample by 2 and zero-pad the new channels; no parameters.

    Built from stock layers only (no Lambda, no custom class) so the saved model loads in plain Keras,
    in safe mode, without lrnoise installed. Channels are padded as the time axis of ZeroPadding1D.
    """
    x = keras.layers.MaxPooling2D(pool_size=1, strides=2, name=f"{name}_subsample")(x)  # B x H/2 x W/2 x C
    h, w, c = x.shape[1:]
    extra = filters - c
    x = keras.layers.Reshape((h * w, c), name=f"{name}_flat")(x)
    x = keras.layers.Permute((2, 1), name=f"{name}_to_channels")(x)  # B x C x HW
    x = keras.layers.ZeroPadding1D((extra // 2, extra - extra // 2), name=f"{name}_pad")(x)  # B x F x HW
    x = keras.layers.Permute((2, 1), name=f"{name}_from_channels")(x)
    return keras.layers.Reshape((h, w, filters), name=f"{name}_shortcut")(x)


def _block(x, filters, strides, shortcut, init, name):
    y = _conv(filters, 3, strides, init, f"{name}_conv1")(x)
    y = keras.layers.BatchNormalization(name=f"{name}_bn1")(y)
    y = keras.layers.Activation("relu", name=f"{name}_relu1")(y)
    y = _conv(filters, 3, 1, init, f"{name}_conv2")(y)
    y = keras.layers.BatchNormalization(name=f"{name}_bn2")(y)
    if strides != 1 or x.shape[-1] != filters:
        if shortcut == "A":
            x = shortcut_a(x, filters, name)
        else:  # "B": 1x1 projection + BN
            x = _conv(filters, 1, strides, init, f"{name}_proj")(x)
            x = keras.layers.BatchNormalization(name=f"{name}_proj_bn")(x)
    y = keras.layers.Add(name=f"{name}_add")([x, y])
    return keras.layers.Activation("relu", name=f"{name}_out")(y)


def resnet(
    depth: int,
    num_classes: int,
    input_shape,
    shortcut: str = "A",
    init: str = "glorot_uniform",
    mean=None,
    variance=None,
) -> keras.Model:
    """CIFAR ResNet v1. `mean`/`variance` (per channel, from the training set) set the input normalisation."""
    n = check_depth(depth)
    check_shortcut(shortcut)
    channels = input_shape[-1]
    mean = np.zeros(channels) if mean is None else np.asarray(mean)
    variance = np.ones(channels) if variance is None else np.asarray(variance)

    inputs = keras.Input(shape=tuple(input_shape), name="image")  # raw pixel values, H x W x C
    x = keras.layers.Normalization(mean=mean, variance=variance, name=names.NORMALIZATION_LAYER)(inputs)
    x = _conv(16, 3, 1, init, "stem_conv")(x)
    x = keras.layers.BatchNormalization(name="stem_bn")(x)
    x = keras.layers.Activation("relu", name="stem_relu")(x)
    for stage, filters in enumerate((16, 32, 64)):
        for block in range(n):
            strides = 2 if stage > 0 and block == 0 else 1
            x = _block(x, filters, strides, shortcut, init, f"stage{stage + 1}_block{block + 1}")
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)  # B x 64
    outputs = keras.layers.Dense(num_classes, activation="softmax", kernel_initializer=init, name="classifier")(x)
    return keras.Model(inputs, outputs, name=f"resnet{depth}{shortcut}")


def channel_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and variance of raw images N x H x W x C (float64, chunked: x may be large uint8)."""
    total = np.zeros(x.shape[-1])
    total_sq = np.zeros(x.shape[-1])
    for start in range(0, len(x), 4096):
        chunk = x[start : start + 4096].astype(np.float64)
        total += chunk.sum(axis=(0, 1, 2))
        total_sq += (chunk**2).sum(axis=(0, 1, 2))
    count = x.shape[0] * x.shape[1] * x.shape[2]
    mean = total / count
    return mean, np.maximum(total_sq / count - mean**2, 1e-12)
