"""CIFAR ResNets: exact parameter counts, the option-A shortcut, plain-Keras reloading, and BN folding."""

import keras
import numpy as np
import pytest

from lrnoise.errors import LrnoiseError
from lrnoise.noise import scoring
from lrnoise.training import networks

COUNTS = {"A": (269_722, 464_154, 658_586, 853_018), "B": (272_474, 466_906, 661_338, 855_770)}


def trainable(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


@pytest.mark.slow
@pytest.mark.parametrize("shortcut", ["A", "B"])
def test_parameter_counts(shortcut):
    got = tuple(trainable(networks.resnet(d, 10, (32, 32, 3), shortcut=shortcut)) for d in (20, 32, 44, 56))
    assert got == COUNTS[shortcut]


def test_depth_must_be_6n_plus_2():
    with pytest.raises(LrnoiseError, match="6n\\+2"):
        networks.resnet(21, 10, (32, 32, 3))
    assert len([layer for layer in networks.resnet(8, 10, (8, 8, 1)).layers if "_conv" in layer.name]) == 7


def test_shortcut_a_subsamples_and_zero_pads_channels():
    inp = keras.Input((4, 4, 2))
    probe = keras.Model(inp, networks.shortcut_a(inp, 6, "t"))
    x = np.random.rand(1, 4, 4, 2).astype("float32")
    out = probe.predict(x, verbose=0)
    assert out.shape == (1, 2, 2, 6)
    np.testing.assert_array_equal(out[..., 2:4], x[:, ::2, ::2, :])
    assert not out[..., :2].any() and not out[..., 4:].any()


@pytest.mark.slow
def test_normalisation_inside_and_reload_in_safe_mode(tmp_path):
    x = np.random.RandomState(0).randint(0, 256, (5, 32, 32, 3)).astype("uint8")
    mean, var = networks.channel_stats(x)
    np.testing.assert_allclose(mean, x.reshape(-1, 3).mean(0))
    np.testing.assert_allclose(var, x.reshape(-1, 3).astype(float).var(0))
    model = networks.resnet(20, 10, (32, 32, 3), mean=mean, variance=var)
    model.save(tmp_path / "m.keras")
    again = keras.models.load_model(tmp_path / "m.keras", safe_mode=True)
    np.testing.assert_array_equal(
        model.predict(x.astype("float32"), verbose=0), again.predict(x.astype("float32"), verbose=0)
    )


def test_evaluator_counts_hits():
    model = networks.resnet(8, 3, (8, 8, 1))
    x = np.random.RandomState(0).rand(7, 8, 8, 1).astype("float32")
    pred = np.argmax(model.predict(x, verbose=0), -1)
    assert scoring.Evaluator(model, x, pred, batch_size=3)() == 1.0
    assert scoring.Evaluator(model, x, (pred + 1) % 3, batch_size=3)() == 0.0


def resnet_pairs(depth, shortcut):
    """{conv: its BN} read off the architecture: the stem, two convs per block, and (B) the two projections."""
    pairs = {"stem_conv": "stem_bn"}
    for stage in (1, 2, 3):
        for block in range(1, (depth - 2) // 6 + 1):
            name = f"stage{stage}_block{block}"
            pairs.update({f"{name}_conv1": f"{name}_bn1", f"{name}_conv2": f"{name}_bn2"})
            if shortcut == "B" and stage > 1 and block == 1:
                pairs[f"{name}_proj"] = f"{name}_proj_bn"
    return pairs


@pytest.mark.parametrize("shortcut, count", [("A", 19), ("B", 21)])
def test_bn_folding_pairs_every_resnet_conv_with_its_bn(shortcut, count):
    model = networks.resnet(20, 10, (32, 32, 3), shortcut=shortcut)
    pairs = scoring.foldable_pairs(model)
    assert pairs == resnet_pairs(20, shortcut) and len(pairs) == count
    convs = [layer.name for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert sorted(pairs) == sorted(convs)  # every conv, and not the softmax classifier
    assert all(isinstance(model.get_layer(bn), keras.layers.BatchNormalization) for bn in pairs.values())


def test_bn_folding_reads_the_functional_config_graph():
    config = networks.resnet(8, 10, (8, 8, 1), shortcut="B").get_config()
    layers = {layer["name"]: layer for layer in config["layers"]}
    assert scoring.inputs_of(layers["stage2_block1_add"]) == ["stage2_block1_proj_bn", "stage2_block1_bn2"]
    assert scoring.inputs_of(layers["image"]) == []
    consumers = scoring.consumers(config)
    assert consumers["stage1_block1_out"] == ["stage2_block1_conv1", "stage2_block1_proj"]
    assert consumers["stem_conv"] == ["stem_bn"] and consumers["classifier"] == [scoring.OUTPUT]


def mixed_model():
    """Convs/dense before BNs, some foldable (fold_conv, dense) and some not (one reason each)."""
    inputs = keras.Input((6, 6, 2), name="x")
    shared = keras.layers.Conv2D(4, 3, padding="same", name="shared_conv")(inputs)
    side = keras.layers.Activation("relu", name="side")(shared)  # a second reader of shared_conv
    relu = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="relu_conv")(inputs)
    uncentered = keras.layers.Conv2D(4, 1, name="uncentered_conv")(inputs)
    unscaled = keras.layers.Conv2D(4, 1, name="unscaled_conv")(inputs)
    rows = keras.layers.Conv2D(6, 1, name="rows_conv")(inputs)
    folded = keras.layers.Conv2D(4, 3, padding="same", use_bias=False, name="fold_conv")(inputs)
    branches = [
        keras.layers.BatchNormalization(name="shared_bn")(shared),
        side,
        keras.layers.BatchNormalization(name="relu_bn")(relu),
        keras.layers.BatchNormalization(center=False, name="uncentered_bn")(uncentered),
        keras.layers.BatchNormalization(scale=False, name="unscaled_bn")(unscaled),
        keras.layers.BatchNormalization(axis=1, name="rows_bn")(rows),  # not the channel axis
        keras.layers.BatchNormalization(name="fold_bn")(folded),
    ]
    x = keras.layers.Concatenate(name="concat")(branches)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    x = keras.layers.Dense(5, name="dense")(x)
    x = keras.layers.BatchNormalization(name="dense_bn")(x)
    return keras.Model(inputs, keras.layers.Dense(3, activation="softmax", name="probs")(x))


def test_bn_folding_only_folds_a_bn_that_alone_reads_a_linear_conv_or_dense():
    assert scoring.foldable_pairs(mixed_model()) == {"fold_conv": "fold_bn", "dense": "dense_bn"}


def test_a_conv_that_is_also_a_model_output_is_not_folded():
    inputs = keras.Input((5, 5, 1))
    conv = keras.layers.Conv2D(3, 3, name="conv")(inputs)
    bn = keras.layers.BatchNormalization(name="bn")(conv)
    assert scoring.foldable_pairs(keras.Model(inputs, bn)) == {"conv": "bn"}
    assert scoring.foldable_pairs(keras.Model(inputs, [bn, conv])) == {}
    assert scoring.foldable_pairs(keras.Model(inputs, {"normalised": bn, "raw": conv})) == {}


def test_a_model_without_a_functional_graph_is_left_unfolded():
    sequential = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3), keras.layers.BatchNormalization()])
    assert scoring.foldable_pairs(sequential) == {}
    x = np.random.RandomState(0).rand(4, 4).astype("float32")
    evaluator = scoring.Evaluator(sequential, x, np.zeros(4))
    np.testing.assert_allclose(evaluator.twin.predict(x, verbose=0), sequential.predict(x, verbose=0), rtol=1e-5)


def test_folded_evaluator_predicts_like_the_model():
    model = mixed_model()
    rng = np.random.RandomState(0)
    for v in model.weights:  # BN statistics and conv biases away from their initial values
        if v.path.endswith(("gamma", "moving_variance")):
            v.assign(rng.uniform(0.5, 1.5, v.shape))
        elif v.path.endswith(("beta", "moving_mean", "bias")):
            v.assign(rng.normal(0, 0.3, v.shape))
    x = rng.rand(16, 6, 6, 2).astype("float32")
    expected = model.predict(x, verbose=0)
    evaluator = scoring.Evaluator(model, x, np.argmax(expected, -1), batch_size=5)
    assert set(evaluator.pairs) == {"fold_conv", "dense"}
    assert isinstance(evaluator.twin.get_layer("fold_bn"), scoring.PassThrough)
    assert isinstance(evaluator.twin.get_layer("relu_bn"), keras.layers.BatchNormalization)
    np.testing.assert_allclose(evaluator.twin.predict(x, verbose=0), expected, rtol=1e-4, atol=1e-6)
    assert evaluator() == 1.0
