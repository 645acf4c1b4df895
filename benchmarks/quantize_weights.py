"""Weight quantization of a TFLite model below 8 bits, for the edge benchmark's size floor.

Runs in a scratch venv holding ai-edge-quantizer (which needs no TensorFlow):
  python quantize_weights.py MODEL.tflite OUT_DIR RECIPE [RECIPE ...]
and writes OUT_DIR/<recipe>.tflite for each of ai_edge_quantizer.recipe's recipes named."""
import os
import sys

from ai_edge_quantizer import quantizer, recipe


def main(model_path: str, out_dir: str, *recipes: str) -> int:
    with open(model_path, "rb") as handle:
        model = handle.read()
    for name in recipes:
        engine = quantizer.Quantizer(model)
        engine.load_quantization_recipe(getattr(recipe, name)())
        with open(os.path.join(out_dir, f"{name}.tflite"), "wb") as handle:
            handle.write(bytes(engine.quantize().quantized_model))
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
