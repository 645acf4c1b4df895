"""Reading Transform's output as batched (features, label) training data."""
import tensorflow as tf
from tfx_bsl.public import tfxio

from pipeline.config import PipelineConfig


def make_dataset(file_pattern, data_accessor, tft_output, config: PipelineConfig) -> tf.data.Dataset:
    """Shuffled (seeded) training batches of transformed features and the label."""
    options = tfxio.TensorFlowDatasetOptions(
        batch_size=config.training.batch_size,
        label_key=config.label.name,
        num_epochs=1,
        shuffle=True,
        shuffle_seed=config.training.seed,
    )
    dataset = data_accessor.tf_dataset_factory(file_pattern, options, tft_output.transformed_metadata.schema)
    # Transformed data of a local run fits in memory: cache it after the first epoch instead of
    # re-reading TFRecords, and reshuffle the cached batches every epoch.
    return dataset.cache().shuffle(256, seed=config.training.seed).prefetch(tf.data.AUTOTUNE)
