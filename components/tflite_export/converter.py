"""TFLite conversion of the exported `serving_raw` signature (Transform graph + model).

TFX's TFLiteRewriter ignores converter options, so the converter is called directly, with
TFLite built-ins only: the LiteRT runtime on the device has no Flex (TensorFlow) ops."""
import dataclasses
from typing import Any

import tensorflow as tf
from tensorflow.lite.tools import flatbuffer_utils

from config import speedups

from trainer.export import SERVING_RAW


def tflite_converter(saved_model_dir: str) -> tf.lite.TFLiteConverter:
    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir, signature_keys=[SERVING_RAW])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    return converter


def without_tensor_names(model: bytes) -> bytes:
    """The model without its tensors' debug names (the TF op paths they came from; ~10% of the
    taxi model's file). LiteRT reaches inputs and outputs through the signature, whose names stay."""
    flat = flatbuffer_utils.convert_bytearray_to_object(bytearray(model))
    for subgraph in flat.subgraphs:
        for tensor in subgraph.tensors:
            tensor.name = None
    return bytes(flatbuffer_utils.convert_object_to_bytearray(flat))


@dataclasses.dataclass
class Conversion:
    float_model: bytes
    quantized_model: bytes
    # The SavedModel as the converter loaded it, for the parity check (a second load took 1 s).
    saved_model: Any


def convert(saved_model_dir: str) -> Conversion:
    """The float and the quantized model, from one converter (one load of the SavedModel).

    Quantization is dynamic-range: int8 weights, float activations and float/string inputs.
    Measured on the taxi model: full-integer quantization (representative rows from the training
    split, float fallback for the string lookups) loses 0.012-0.014 AUC, over the 0.005 the parity
    check allows (also with the bucket comparisons and z-scores left in float), for a file only 5%
    smaller; float16 is larger. Weights under 1,024 elements (the embeddings) stay float: TF 2.16's
    converter does not expose that threshold.
    The quantized file stays well above 1/4 of the float one: int8 weights are exactly 1/4 of
    float32 ones, and the graph and the vocabularies are the same size in both files."""
    converter = tflite_converter(saved_model_dir)
    float_model = without_tensor_names(converter.convert())
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    quantized_model = without_tensor_names(converter.convert())
    if speedups.active("tflite-loaded-model"):
        # TF 2.16's converter keeps the SavedModel it loaded in this attribute.
        return Conversion(float_model, quantized_model, converter._trackable_obj)
    return Conversion(float_model, quantized_model, tf.saved_model.load(saved_model_dir))
