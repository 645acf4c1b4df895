"""Transform's preprocessing_fn, driven by the pipeline config.

Every op here must also run in TFLite built-ins, because the edge export converts the
Transform graph together with the model: buckets are counted by comparisons against
constant boundaries, and string features leave here as they came (sparse where values can
be missing): TFLite cannot densify strings, so the model looks up the sparse values with a
list-backed table and densifies the integer ids (see trainer/model.py)."""
import tensorflow as tf
import tensorflow_transform as tft

from config import ModelConfig, PipelineConfig, names


def cast(x, dtype):
    if isinstance(x, tf.SparseTensor):
        return tf.SparseTensor(x.indices, tf.cast(x.values, dtype), x.dense_shape)
    return tf.cast(x, dtype)


def to_dense(x, default):
    """Rank-1 dense values of a feature, with `default` where it is missing."""
    if isinstance(x, tf.SparseTensor):
        default = tf.constant(default, x.dtype) if x.dtype == tf.string else tf.cast(default, x.dtype)
        x = tf.sparse.to_dense(tf.SparseTensor(x.indices, x.values, [x.dense_shape[0], 1]), default)
    if x.shape.rank == 2:
        x = tf.squeeze(x, axis=1)
    return x


def bucketize(x, boundaries):
    """Bucket ids in [0, len(boundaries)]: the number of boundaries at or below each value."""
    return tf.reduce_sum(tf.cast(tf.expand_dims(x, 1) >= tf.reshape(boundaries, [1, -1]), tf.int64), axis=1)


def transform_feature(feature, x):
    if feature.kind == "numeric":
        return tft.scale_to_z_score(to_dense(cast(x, tf.float32), feature.default))
    if feature.kind == "bucketized":
        x = to_dense(cast(x, tf.float32), feature.default)
        boundaries = tft.quantiles(x, num_buckets=feature.buckets, epsilon=0.01)
        return bucketize(x, boundaries)
    if feature.kind == "categorical_int":
        x = to_dense(cast(x, tf.int64), feature.default)
        in_range = tf.logical_and(x >= 0, x < feature.num_values)
        return tf.where(in_range, x, tf.constant(feature.num_values, tf.int64))
    if feature.kind == "categorical_string":
        tft.vocabulary(x, top_k=feature.top_k, vocab_filename=names.vocabulary_name(feature.name))
        return x
    raise ValueError(f"unknown feature kind '{feature.kind}'")


def make_label(config: PipelineConfig, inputs):
    label = config.label
    column = inputs[label.column]
    if label.rule == "fraction_of_column_above":
        value = to_dense(cast(column, tf.float32), 0.0)
        of = to_dense(cast(inputs[label.of_column], tf.float32), float("nan"))
        above = value > of * label.threshold
        return tf.where(tf.math.is_nan(of), tf.zeros_like(of, tf.int64), tf.cast(above, tf.int64))
    if label.rule == "above":
        return tf.cast(to_dense(cast(column, tf.float32), 0.0) > label.threshold, tf.int64)
    if label.classes:
        names = tf.constant(label.classes)
        table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(names, tf.range(len(label.classes), dtype=tf.int64)), -1)
        if column.dtype == tf.string:
            return table.lookup(to_dense(column, ""))
        return table.lookup(tf.strings.as_string(to_dense(column, 0)))
    if config.task == "regression":
        return to_dense(cast(column, tf.float32), 0.0)
    return to_dense(cast(column, tf.int64), 0)


# Plain TensorFlow with no Python control flow on tensors: skipping AutoGraph saves
# Transform several seconds of transpiling per trace.
@tf.autograph.experimental.do_not_convert
def preprocessing_fn(inputs, custom_config):
    config = ModelConfig.model_validate(custom_config["config"])
    outputs = {
        names.transformed_name(f.name): transform_feature(f, inputs[f.name]) for f in config.features
    }
    outputs[config.label.name] = make_label(config, inputs)
    return outputs
