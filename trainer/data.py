"""Batched (transformed features, label) training data: raw examples through the Transform graph."""
import tensorflow as tf
from tfx_bsl.public import tfxio

from config import PipelineConfig


def make_dataset(file_pattern, data_accessor, tft_output, transform_layer,
                 config: PipelineConfig) -> tf.data.Dataset:
    """Shuffled (seeded) training batches of transformed features and the label."""
    options = tfxio.TensorFlowDatasetOptions(
        batch_size=config.training.batch_size,
        num_epochs=1,
        shuffle=True,
        shuffle_seed=config.training.seed,
    )
    raw = data_accessor.tf_dataset_factory(file_pattern, options, tft_output.raw_metadata.schema)

    def transformed(raw_batch):
        features = transform_layer(raw_batch)
        return features, features.pop(config.label.name)

    # Transformed data of a local run fits in memory: cache it after the first epoch instead of
    # re-reading and re-transforming, and reshuffle the cached batches every epoch.
    dataset = raw.map(transformed, num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.cache().shuffle(256, seed=config.training.seed).prefetch(tf.data.AUTOTUNE)
