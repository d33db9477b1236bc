"""A model's test accuracy, fast and exactly: the `Evaluator` runs a compiled forward pass over a fixed test set
and, for noise on BN-folded weights, a twin of the model with every batch normalisation folded into the
convolution or dense layer before it (`foldable_pairs`, `PassThrough`). Pure Keras: any backend.
"""

from __future__ import annotations

import json
import weakref

import keras
import numpy as np


def weight_values(model: keras.Model) -> dict:
    """{variable path: a copy of its value as a backend tensor} for every weight of the model."""
    return {v.path: keras.ops.convert_to_tensor(np.array(v.numpy())) for v in model.weights}


FOLDABLE = ("Conv2D", "Dense")  # class names (in a functional model's config) a BN can be folded into
OUTPUT = None  # consumer standing for "a model output" in consumers


def _tensor_sources(structure) -> list[str]:
    """Layer names of the serialized keras tensors ({"class_name": "__keras_tensor__", "config": {"keras_history":
    [layer, node index, tensor index], ...}}) anywhere in `structure` (an inbound node's args or kwargs)."""
    if isinstance(structure, dict):
        if structure.get("class_name") == "__keras_tensor__":
            return [structure["config"]["keras_history"][0]]
        return [name for value in structure.values() for name in _tensor_sources(value)]
    if isinstance(structure, (list, tuple)):
        return [name for value in structure for name in _tensor_sources(value)]
    return []


def inputs_of(layer_config: dict) -> list[str]:
    """The layers whose outputs a functional-config layer reads, over all its calls (inbound nodes), in order,
    one entry per tensor read."""
    return [
        name
        for node in layer_config["inbound_nodes"]
        for name in _tensor_sources([node.get("args", []), node.get("kwargs", {})])
    ]


def _output_sources(structure) -> list[str]:
    """Layer names in a functional config's "output_layers": one [layer, node index, tensor index] or a list
    or dict of them."""
    if isinstance(structure, (list, tuple)) and len(structure) == 3 and isinstance(structure[0], str):
        return [structure[0]]
    values = structure.values() if isinstance(structure, dict) else structure
    return [name for value in values for name in _output_sources(value)]


def _is_functional(config: dict) -> bool:
    """Whether a model config is a functional layer graph (each layer with its name and inbound nodes)."""
    layers = config.get("layers")
    return isinstance(layers, list) and all("name" in layer and "inbound_nodes" in layer for layer in layers)


def consumers(config: dict) -> dict[str, list]:
    """{layer: the layers reading its output, one entry per tensor read} of a functional config; a model output
    counts as one consumer (`OUTPUT`)."""
    consumers = {layer["name"]: [] for layer in config["layers"]}
    for layer in config["layers"]:
        for source in inputs_of(layer):
            consumers.setdefault(source, []).append(layer["name"])
    for source in _output_sources(config.get("output_layers", [])):
        consumers.setdefault(source, []).append(OUTPUT)
    return consumers


def _normalises_last_axis(bn_config: dict) -> bool:
    """A BatchNormalization layer (functional config) with gamma and beta over the last axis of its one input."""
    options = bn_config["config"]
    nodes = bn_config["inbound_nodes"]
    if not (options.get("center") and options.get("scale") and len(nodes) == 1):
        return False
    tensors = [
        arg for arg in nodes[0].get("args", []) if isinstance(arg, dict) and arg.get("class_name") == "__keras_tensor__"
    ]
    axis = options.get("axis")
    if len(tensors) != 1 or not isinstance(axis, int):
        return False
    return axis in (-1, len(tensors[0]["config"]["shape"]) - 1)


def _pairs_of_config(config: dict) -> dict[str, str]:
    """foldable_pairs over a functional model's config dict."""
    layers = {layer["name"]: layer for layer in config["layers"]}
    users = consumers(config)
    pairs = {}
    for name, layer in layers.items():
        if layer["class_name"] != "BatchNormalization" or not _normalises_last_axis(layer):
            continue
        sources = inputs_of(layer)
        source = layers.get(sources[0]) if len(sources) == 1 else None
        if (
            source is not None
            and source["class_name"] in FOLDABLE
            and source["config"].get("activation") == "linear"
            and source["config"].get("data_format", "channels_last") == "channels_last"
            and users[source["name"]] == [name]
        ):
            pairs[source["name"]] = name
    return pairs


def foldable_pairs(model: keras.Model) -> dict[str, str]:
    """{conv or dense layer: the BatchNormalization that alone reads its output}, for BN folding.

    A pair qualifies when the conv/dense has no activation and feeds nothing else (a model output counts as a
    reader), and the BN normalises the last axis with both gamma and beta. Read from the public functional
    layer graph, `model.get_config()`; other BN layers, and models that are not functional, are left unfolded.
    """
    config = model.get_config()
    return _pairs_of_config(config) if _is_functional(config) else {}


class PassThrough(keras.layers.Layer):
    """Stands in for a folded BN in the (never saved) inference twin; accepts BN's call arguments."""

    def call(self, inputs, training=None, mask=None):
        return inputs


_TWINS: dict = {}  # architecture (model config JSON) -> (twin, pairs, folds, direct, twin variables)
_TWIN_HOLDER: dict = {}  # id(twin) -> the Evaluator whose weights it holds now
_TWIN_KEYS = weakref.WeakKeyDictionary()  # model -> its architecture key (a model never changes architecture)


def _twin_of(model: keras.Model) -> tuple:
    """The folded inference twin of `model`'s architecture and the plan of what load() does, built once per
    architecture and process: a sweep's models share one twin (and its traced predict)."""
    # the architecture only: to_json() would add the compile config (optimizer, learning rate), so every lr of a
    # sweep would build and trace its own twin. get_config() of a ResNet takes ~10 ms: once per model object
    if model not in _TWIN_KEYS:
        _TWIN_KEYS[model] = json.dumps(model.get_config(), sort_keys=True, default=str)
    key = _TWIN_KEYS[model]
    if key in _TWINS:
        return _TWINS[key]
    pairs = foldable_pairs(model)
    folded = set(pairs.values())

    def twin_layer(layer):
        if layer.name in folded:
            return PassThrough(name=layer.name)
        config = layer.get_config()
        if layer.name in pairs:
            config["use_bias"] = True
        return layer.__class__.from_config(config)

    twin = keras.models.clone_model(model, clone_function=twin_layer)
    twin_vars = {v.path: v for v in twin.weights}
    # what load() does, worked out once: (conv, bn paths, eps, twin kernel, twin bias) per folded pair,
    # and the twin variables copied straight from the original's
    folds = [
        (
            f"{conv}/kernel",
            f"{conv}/bias",
            *(f"{bn}/{w}" for w in ("gamma", "beta", "moving_mean", "moving_variance")),
            model.get_layer(bn).epsilon,
            twin_vars[f"{conv}/kernel"],
            twin_vars[f"{conv}/bias"],
        )
        for conv, bn in pairs.items()
    ]
    direct = [(path, v) for path, v in twin_vars.items() if path.split("/")[0] not in pairs]
    if len(_TWINS) >= 8:  # a few architectures (x input normalisations, which are baked into the graph)
        _TWINS.pop(next(iter(_TWINS)))
    _TWINS[key] = (twin, pairs, folds, direct, twin_vars)
    return _TWINS[key]


class Evaluator:
    """Test-set accuracy of a model: the one evaluation used for a_0 and for every noisy draw.

    It runs an inference twin of the model in which each conv -> BN pair is folded into one biased conv
    (kernel * s, beta - mean * s + bias * s with s = gamma / sqrt(var + eps)): the same function as BN in
    inference mode, without BN's separate pass over every activation. `load(values)` writes any set of weights of the
    original model (clean or noisy, keyed by variable path) into the twin; the original is never modified.
    The inputs become backend tensors once; each call runs the twin's compiled predict over them.
    """

    def __init__(self, model: keras.Model, x: np.ndarray, y: np.ndarray, batch_size: int = 1000):
        twin = _twin_of(model)  # shared by every Evaluator of this architecture: traced once per process
        self.twin, self.pairs, self.folds, self.direct, self.twin_variables = twin
        self.clean = weight_values(model)
        self.load(self.clean)
        # stored as given (uint8 images stay uint8 on the device), cast batch by batch when they are used
        self.batches = [keras.ops.convert_to_tensor(x[i : i + batch_size]) for i in range(0, len(x), batch_size)]
        self.labels = [np.asarray(y[i : i + batch_size]) for i in range(0, len(y), batch_size)]
        self.count, self.batch_size = len(y), batch_size

    def fold(self, values: dict) -> dict:
        """The twin's weights {twin variable path: tensor} for the original model's weights `values`."""
        ops = keras.ops
        twin = {}
        for kernel, conv_bias, gamma, beta, mean, var, eps, twin_kernel, twin_bias in self.folds:
            scale = values[gamma] / ops.sqrt(values[var] + eps)  # C_out
            bias = values[beta] - values[mean] * scale
            if conv_bias in values:
                bias = bias + values[conv_bias] * scale
            twin[twin_kernel.path] = values[kernel] * scale  # ... x C_out
            twin[twin_bias.path] = bias
        for path, _ in self.direct:
            twin[path] = values[path]
        return twin

    def assign(self, twin_values: dict) -> None:
        """Writes twin weights ({twin variable path: tensor}, e.g. noisy folded kernels) into the twin."""
        for path, variable in self.twin_variables.items():
            variable.assign(twin_values[path])
        self.loaded = twin_values
        _TWIN_HOLDER[id(self.twin)] = self

    def load(self, values: dict) -> None:
        """Writes the original model's weights `values` ({variable path: tensor}) into the folded twin."""
        self.assign(self.fold(values))

    def accuracy(self) -> tuple[float, bool]:
        """(test accuracy, whether any output was non-finite). A non-finite output row (a noise draw that
        pushed a BN variance below zero, say) counts as a wrong prediction, never as class 0."""
        if _TWIN_HOLDER.get(id(self.twin)) is not self:  # another Evaluator wrote the shared twin since
            self.assign(self.loaded)
        hits, nonfinite = 0, False
        for xb, yb in zip(self.batches, self.labels):
            probs = keras.ops.convert_to_numpy(self.twin.predict_on_batch(keras.ops.cast(xb, "float32")))
            bad = ~np.isfinite(probs).all(axis=-1)  # B
            predicted = np.where(bad, -1, np.argmax(np.nan_to_num(probs, nan=-np.inf), axis=-1))
            hits += int(np.sum(predicted == yb))
            nonfinite |= bool(bad.any())
        return hits / self.count, nonfinite

    def __call__(self) -> float:
        return self.accuracy()[0]
