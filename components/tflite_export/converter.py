"""TFLite conversion of the exported `serving_raw` signature (Transform graph + model).

TFX's TFLiteRewriter ignores converter options, so the converter is called directly, with
TFLite built-ins only: the LiteRT runtime on the device has no Flex (TensorFlow) ops."""
import tensorflow as tf

from trainer.export import SERVING_RAW


def _converter(saved_model_dir: str) -> tf.lite.TFLiteConverter:
    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir, signature_keys=[SERVING_RAW])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    return converter


def convert_float(saved_model_dir: str) -> bytes:
    return _converter(saved_model_dir).convert()


def convert_quantized(saved_model_dir: str) -> bytes:
    """Dynamic-range quantization: int8 weights, float activations and float/string inputs.
    Full-integer quantization would need int8 inputs, which string features and lookup tables
    cannot be, and would add a representative-dataset pass for no size gain on the weights."""
    converter = _converter(saved_model_dir)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    return converter.convert()
