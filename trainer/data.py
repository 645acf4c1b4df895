"""Reading Transform's output as batched (features, label) datasets."""
import tensorflow as tf
from tfx_bsl.public import tfxio

from pipeline.config import PipelineConfig


def make_dataset(file_pattern, data_accessor, tft_output, config: PipelineConfig,
                 shuffle: bool) -> tf.data.Dataset:
    options = tfxio.TensorFlowDatasetOptions(
        batch_size=config.training.batch_size,
        label_key=config.label.name,
        num_epochs=1,
        shuffle=shuffle,
        shuffle_seed=config.training.seed,
    )
    dataset = data_accessor.tf_dataset_factory(file_pattern, options, tft_output.transformed_metadata.schema)
    # Small enough for memory after the first epoch; saves re-reading TFRecords each epoch.
    return dataset.cache().prefetch(tf.data.AUTOTUNE)
