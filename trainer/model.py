"""The Keras model over Transform's output.

tf-keras (Keras 2) rather than Keras 3: TFT 1.16's TransformFeaturesLayer and TFMA 0.47 are
built on tf-keras, and Keras 3 cannot save the mixed TF/Keras object graph we export."""
import tensorflow as tf
import tf_keras as keras

from config import PipelineConfig, names

# Keras' StringLookup reserves this token; a data value equal to it would break the lookup.
_RESERVED_TOKENS = {"", "[UNK]"}


def string_vocabulary(tft_output, feature_name: str) -> list:
    """Vocabulary computed by Transform, as a Python list baked into the model graph
    (a list-backed table converts to TFLite built-ins; a file-backed one does not run there)."""
    values = tft_output.vocabulary_by_name(names.vocabulary_name(feature_name))
    tokens = [v.decode() if isinstance(v, bytes) else v for v in values]
    return [t for t in tokens if t not in _RESERVED_TOKENS]


class DensifyIds(keras.layers.Layer):
    """Rank-1 ids from a sparse [batch, <=1] tensor, `missing_id` where a row has no value."""

    def __init__(self, missing_id: int, **kwargs):
        super().__init__(**kwargs)
        self.missing_id = missing_id

    def call(self, ids):
        ids = tf.SparseTensor(ids.indices, ids.values, tf.stack([ids.dense_shape[0], 1]))
        return tf.squeeze(tf.sparse.to_dense(ids, default_value=tf.constant(self.missing_id, ids.dtype)), axis=1)

    def get_config(self):
        return {**super().get_config(), "missing_id": self.missing_id}


class TabularModel(keras.Model):
    """A functional Keras model whose train function is traced without AutoGraph (see run_fn):
    Keras wraps it in tf.function(autograph=True), which would turn conversion back on."""

    def make_train_function(self, force=False):
        if self.train_function is None or force:
            keras_function = super().make_train_function(force=True)
            self.train_function = self.train_tf_function = tf.function(
                keras_function.python_function, reduce_retracing=True, autograph=False)
        return self.train_function


def _lookup_ids(feature, tensor, vocabulary, sparse: bool):
    """Vocabulary ids (0 = out of vocabulary); a missing value gets the id of the config's default."""
    lookup = keras.layers.StringLookup(vocabulary=vocabulary, num_oov_indices=1, name=f"{feature.name}_lookup")
    ids = lookup(tensor)
    if sparse:
        missing_id = vocabulary.index(feature.default) + 1 if feature.default in vocabulary else 0
        ids = DensifyIds(missing_id, name=f"{feature.name}_densify")(ids)
    return ids


def _encode(feature, tensor, tft_output, embedding_dim, sparse: bool):
    if feature.kind == "numeric":
        return keras.layers.Reshape((1,))(tensor)
    if feature.kind == "bucketized":
        size = feature.buckets + 1
        ids = tensor
    elif feature.kind == "categorical_int":
        size = feature.num_values + 1
        ids = tensor
    else:
        vocabulary = string_vocabulary(tft_output, feature.name)
        ids = _lookup_ids(feature, tensor, vocabulary, sparse)
        size = len(vocabulary) + 1
    embedded = keras.layers.Embedding(size, embedding_dim, name=f"{feature.name}_embedding")(ids)
    return keras.layers.Reshape((embedding_dim,))(embedded)


def input_dtype(feature) -> str:
    if feature.kind == "numeric":
        return "float32"
    if feature.kind == "categorical_string":
        return "string"
    return "int64"


def build_model(config: PipelineConfig, tft_output) -> keras.Model:
    training = config.training
    transformed_spec = tft_output.transformed_feature_spec()
    sparse = {f.name: isinstance(transformed_spec[names.transformed_name(f.name)], tf.io.VarLenFeature)
              for f in config.features}
    inputs = {
        f.name: keras.Input(shape=(None,) if sparse[f.name] else (), name=names.transformed_name(f.name),
                            dtype=input_dtype(f), sparse=sparse[f.name])
        for f in config.features
    }
    encoded = [_encode(f, inputs[f.name], tft_output, training.embedding_dim, sparse[f.name])
               for f in config.features]
    x = keras.layers.Concatenate()(encoded) if len(encoded) > 1 else encoded[0]
    for units in training.hidden_units:
        x = keras.layers.Dense(units, activation="relu")(x)

    if config.task == "binary":
        output = keras.layers.Dense(1, activation="sigmoid")(x)
        loss, metrics = "binary_crossentropy", [keras.metrics.AUC(name="auc"), "binary_accuracy"]
    elif config.task == "multiclass":
        output = keras.layers.Dense(names.num_classes(config), activation="softmax")(x)
        loss, metrics = "sparse_categorical_crossentropy", ["sparse_categorical_accuracy"]
    else:
        output = keras.layers.Dense(1)(x)
        loss, metrics = "mean_squared_error", ["mean_absolute_error"]

    model = TabularModel(
        inputs={names.transformed_name(name): tensor for name, tensor in inputs.items()}, outputs=output)
    model.compile(optimizer=keras.optimizers.Adam(training.learning_rate), loss=loss, metrics=metrics)
    # The optimizer's and the metrics' variables, created now: created inside the first traced
    # train step instead, they make tf.function trace that step a second time (~1 s).
    model.optimizer.build(model.trainable_variables)
    model.compiled_loss.build(output)
    model.compiled_metrics.build(output, output)
    return model
