"""The Transform layer that prunes the Transform graph once per set of inputs."""
import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
from tensorflow.python.eager import wrap_function

from trainer.transform_layer import load_transform_layer
from tests.helpers import eval_examples, latest_artifact_uri


def test_one_prune_per_input_set_in_any_order_with_the_same_outputs(taxi_run, monkeypatch):
    tft_output = tft.TFTransformOutput(latest_artifact_uri(taxi_run.config, "Transform", "transform_graph"))
    prunes = []
    original = wrap_function.WrappedFunction.prune
    monkeypatch.setattr(wrap_function.WrappedFunction, "prune",
                        lambda self, feeds, fetches: prunes.append(len(feeds)) or original(self, feeds, fetches))
    shared = load_transform_layer(tft_output)
    prunes.clear()  # loading prunes for TFT's own bookkeeping
    raw = tf.io.parse_example(eval_examples(taxi_run.config, limit=50), tft_output.raw_feature_spec())
    serving = {name: raw[name] for name in taxi_run.config.feature_names}

    results = [tf.function(lambda features: shared(features))(features)
               for features in (raw, dict(reversed(list(raw.items()))), serving, dict(reversed(list(serving.items()))))]
    assert len(prunes) == 2

    monkeypatch.setattr(wrap_function.WrappedFunction, "prune", original)
    expected = tft_output.transform_features_layer()
    for result, features in zip(results, (raw, raw, serving, serving)):
        reference = expected(features)
        assert sorted(result) == sorted(reference)
        for name, value in reference.items():
            np.testing.assert_array_equal(tf.sparse.to_dense(value) if isinstance(value, tf.SparseTensor) else value,
                                          tf.sparse.to_dense(result[name]) if isinstance(result[name], tf.SparseTensor)
                                          else result[name])
    assert sorted(results[2]) != sorted(results[0])  # the label needs the label columns
