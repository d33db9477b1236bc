"""CIFAR ResNets: exact parameter counts, the option-A shortcut, and plain-Keras reloading."""
import keras
import numpy as np
import pytest

from lrnoise import models
from lrnoise.errors import LrnoiseError

COUNTS = {"A": (269_722, 464_154, 658_586, 853_018), "B": (272_474, 466_906, 661_338, 855_770)}


def trainable(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


@pytest.mark.parametrize("shortcut", ["A", "B"])
def test_parameter_counts(shortcut):
    got = tuple(trainable(models.resnet(d, 10, (32, 32, 3), shortcut=shortcut)) for d in (20, 32, 44, 56))
    assert got == COUNTS[shortcut]


def test_depth_must_be_6n_plus_2():
    with pytest.raises(LrnoiseError, match="6n\\+2"):
        models.resnet(21, 10, (32, 32, 3))
    assert len([layer for layer in models.resnet(8, 10, (8, 8, 1)).layers if "_conv" in layer.name]) == 7


def test_shortcut_a_subsamples_and_zero_pads_channels():
    inp = keras.Input((4, 4, 2))
    probe = keras.Model(inp, models._shortcut_a(inp, 6, "t"))
    x = np.random.rand(1, 4, 4, 2).astype("float32")
    out = probe.predict(x, verbose=0)
    assert out.shape == (1, 2, 2, 6)
    np.testing.assert_array_equal(out[..., 2:4], x[:, ::2, ::2, :])
    assert not out[..., :2].any() and not out[..., 4:].any()


def test_normalisation_inside_and_reload_in_safe_mode(tmp_path):
    x = np.random.RandomState(0).randint(0, 256, (5, 32, 32, 3)).astype("uint8")
    mean, var = models.channel_stats(x)
    np.testing.assert_allclose(mean, x.reshape(-1, 3).mean(0))
    np.testing.assert_allclose(var, x.reshape(-1, 3).astype(float).var(0))
    model = models.resnet(20, 10, (32, 32, 3), mean=mean, variance=var)
    model.save(tmp_path / "m.keras")
    again = keras.models.load_model(tmp_path / "m.keras", safe_mode=True)
    np.testing.assert_array_equal(model.predict(x.astype("float32"), verbose=0),
                                  again.predict(x.astype("float32"), verbose=0))


def test_evaluator_counts_hits():
    model = models.resnet(8, 3, (8, 8, 1))
    x = np.random.RandomState(0).rand(7, 8, 8, 1).astype("float32")
    pred = np.argmax(model.predict(x, verbose=0), -1)
    assert models.Evaluator(model, x, pred, batch_size=3)() == 1.0
    assert models.Evaluator(model, x, (pred + 1) % 3, batch_size=3)() == 0.0


def test_private_keras_graph_api_bn_folding_relies_on():
    """BN folding reads keras' private layer graph (`_inbound_nodes`): fails loudly when an upgrade breaks it."""
    model = models.resnet(8, 10, (8, 8, 1))
    assert models._producer(model.get_layer("stem_bn")).name == "stem_conv"
    assert models.foldable_pairs(model)["stem_conv"] == "stem_bn"
    # a new keras: check foldable_pairs against it, then add its version to models.KERAS_TESTED
    assert keras.__version__.startswith(models.KERAS_TESTED), keras.__version__
