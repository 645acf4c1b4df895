"""The Trainer's run_fn: wiring only; the work is in data, model and export."""
import time

import tensorflow as tf
import tensorflow_transform as tft
import tf_keras as keras
from absl import logging

from config import ModelConfig
from trainer.data import make_dataset
from trainer.export import export_model
from trainer.model import build_model


# Nothing here has data-dependent Python control flow: AutoGraph transpiling the Keras, tf.distribute,
# tf.data and Transform code that training calls took seconds per run.
@tf.autograph.experimental.do_not_convert
def run_fn(fn_args) -> None:
    config = ModelConfig.model_validate(fn_args.custom_config["config"])
    keras.utils.set_random_seed(config.training.seed)
    tft_output = tft.TFTransformOutput(fn_args.transform_output)
    # One load of the Transform graph, for the training data and for the export.
    transform_layer = tft_output.transform_features_layer()

    # The eval split is the Evaluator's (TFMA, with slices and thresholds); training does not peek.
    train = make_dataset(fn_args.train_files, fn_args.data_accessor, tft_output, transform_layer, config)
    model = build_model(config, tft_output)
    started = time.monotonic()
    history = model.fit(train, epochs=config.training.epochs, verbose=0)
    logging.info("Trained in %.1f s: %s", time.monotonic() - started,
                 {k: round(v[-1], 4) for k, v in history.history.items()})

    started = time.monotonic()
    export_model(model, tft_output, transform_layer, config, fn_args.serving_model_dir)
    logging.info("Exported in %.1f s to %s", time.monotonic() - started, fn_args.serving_model_dir)
