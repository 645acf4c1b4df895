"""TF Serving's JSON tensor encoding: request bodies to numpy inputs and outputs back to JSON,
with the same shape rules, dtype rules and error messages as TF Serving's util/json_tensor.cc.
The dtype of an input always comes from the signature, never from the JSON."""
import base64
import binascii
import json
import math
import struct
from typing import Callable, Dict, List, Tuple

import numpy as np

from serving.errors import invalid, ServingError
from serving.servable import NUMPY_DTYPES, SignatureInfo, string_array

INT_RANGES = {
    "DT_INT8": (-(2 ** 31), 2 ** 31 - 1), "DT_INT16": (-(2 ** 31), 2 ** 31 - 1),
    "DT_INT32": (-(2 ** 31), 2 ** 31 - 1), "DT_UINT8": (-(2 ** 31), 2 ** 31 - 1),
    "DT_INT64": (-(2 ** 63), 2 ** 63 - 1), "DT_UINT32": (0, 2 ** 32 - 1), "DT_UINT64": (0, 2 ** 64 - 1),
}
_FLOAT32 = struct.Struct("f")
_JSON_TYPES = {dict: "Object", list: "Array", str: "String", bool: "Bool", type(None): "Null"}


def parse_body(body: bytes) -> dict:
    """The request's JSON object. As in TF Serving, NaN/Infinity are accepted and anything after
    the first complete value is ignored."""
    text = body.decode("utf-8", errors="replace").lstrip()
    if not text:
        raise invalid("JSON Parse error: The document is empty")
    try:
        value, _ = json.JSONDecoder().raw_decode(text)
    except json.JSONDecodeError as error:
        raise invalid(f"JSON Parse error: Invalid value. at offset: {error.pos}") from None
    if not isinstance(value, dict):
        raise invalid("Is not object")
    return value


def _json_type(value) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return "Number"
    return _JSON_TYPES.get(type(value), "Unknown")


def is_b64(value) -> bool:
    return isinstance(value, dict) and "b64" in value


def _scalar(value, dtype: str):
    def wrong():
        return invalid(f"JSON Value: {json.dumps(value)} Type: {_json_type(value)} "
                       f"is not of expected type: {dtype[3:].lower()}")

    if dtype == "DT_STRING":
        if isinstance(value, str):
            return value.encode("utf-8")
        if isinstance(value, dict):
            if len(value) != 1 or not isinstance(value.get("b64"), str):
                raise invalid(f"JSON Value: {json.dumps(value)} not formatted correctly for base64 data")
            try:
                return base64.b64decode(value["b64"], validate=True)
            except (binascii.Error, ValueError):
                raise invalid(f"Unable to base64 decode: {value['b64']}") from None
        raise wrong()
    if dtype == "DT_BOOL":
        if isinstance(value, bool):
            return value
        raise wrong()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise wrong()
    if dtype in ("DT_FLOAT", "DT_DOUBLE"):
        return float(value)
    if dtype not in INT_RANGES:
        raise ServingError("UNIMPLEMENTED", f"Conversion of JSON Value: {json.dumps(value)} to type: {dtype}")
    low, high = INT_RANGES[dtype]
    if not isinstance(value, int) or not low <= value <= high:
        raise wrong()
    return value


def _shape_of(value) -> List[int]:
    shape = []
    while isinstance(value, list):
        shape.append(len(value))
        if not value:
            break
        value = value[0]
    return shape


_SCALAR_TYPES = {"DT_FLOAT": (int, float), "DT_DOUBLE": (int, float), "DT_STRING": (str,), "DT_BOOL": (bool,)}


def _flat_column(values: list, dtype: str):
    """The common case, a flat list of plain scalars of the right JSON type, converted in one
    numpy call; None when any value needs the element-by-element rules (and their errors)."""
    types = _SCALAR_TYPES.get(dtype, (int,) if dtype in INT_RANGES else None)
    if types is None or not values or not all(type(v) in types for v in values):
        return None
    if dtype == "DT_STRING":
        return string_array([v.encode("utf-8") for v in values])
    if dtype in INT_RANGES:
        low, high = INT_RANGES[dtype]
        if not low <= min(values) <= max(values) <= high:
            return None
    return np.array(values, dtype=NUMPY_DTYPES[dtype])


def to_array(value, dtype: str) -> np.ndarray:
    """One JSON tensor (nested lists, scalars, b64 objects) to an array of `dtype`; the shape
    is the nesting, taken from each level's first element."""
    if isinstance(value, list):
        fast = _flat_column(value, dtype)
        if fast is not None:
            return fast
    shape = _shape_of(value)
    flat: list = []

    def walk(node, level):
        if isinstance(node, list):
            if level >= len(shape):
                raise invalid(f"Encountered list at unexpected level: {level} found at incorrect level")
            if len(node) != shape[level]:
                raise invalid(f"Encountered list at unexpected size: {len(node)} at level: {level} "
                              f"expected size: {shape[level]}")
            for item in node:
                walk(item, level + 1)
        elif level != len(shape):
            raise invalid(f"JSON value: {json.dumps(node)} found at incorrect level: {level + 1} "
                          f"in the JSON DOM. Expected at level: {len(shape) + 1}")
        else:
            flat.append(_scalar(node, dtype))

    walk(value, 0)
    numpy_dtype = NUMPY_DTYPES.get(dtype, object)
    if numpy_dtype is object:
        return string_array(flat).reshape(shape)
    return np.array(flat, dtype=numpy_dtype).reshape(shape)


def _stack(items: List[np.ndarray], first_index: int = 0) -> np.ndarray:
    expected = items[0].shape
    for index, item in enumerate(items):
        if item.size != int(np.prod(expected)):
            raise invalid(f"Failed to process element: {index + first_index} of 'instances' list. Error: "
                          f"INVALID_ARGUMENT: Expecting tensor size: {int(np.prod(expected))} but got: {item.size}")
        if item.shape != expected:
            raise invalid(f"Failed to process element: {index + first_index} of 'instances' list. Error: "
                          f"INVALID_ARGUMENT: Expecting shape {list(expected)} but got: {list(item.shape)}")
    return np.stack(items) if items[0].dtype != object else _stack_objects(items)


def _stack_objects(items: List[np.ndarray]) -> np.ndarray:
    size = items[0].size
    flat = np.empty(len(items) * size, dtype=object)
    for index, item in enumerate(items):
        flat[index * size:(index + 1) * size] = item.ravel()
    return flat.reshape((len(items),) + items[0].shape)


def predict_inputs(request: dict, signature_name: str, signature: SignatureInfo) -> Tuple[Dict[str, np.ndarray], bool]:
    """The request's tensors keyed by input alias, and whether it used the row format."""
    has_instances, has_inputs = "instances" in request, "inputs" in request
    if has_instances and has_inputs:
        raise invalid("Not formatted correctly expecting only one of 'inputs' or 'instances' keys to exist")
    if not (has_instances or has_inputs):
        raise invalid("Missing 'inputs' or 'instances' key")
    if not signature.inputs:
        raise invalid(f"Failed to get input map for signature: {signature_name or 'DEFAULT'}")
    if has_instances:
        return _row_inputs(request["instances"], signature), True
    return _columnar_inputs(request["inputs"], signature), False


def _row_inputs(instances, signature: SignatureInfo) -> Dict[str, np.ndarray]:
    if not isinstance(instances, list):
        raise invalid("Expecting 'instances' to be an list/array")
    if not instances:
        raise invalid("No values in 'instances' array")
    names = list(signature.inputs)
    if isinstance(instances[0], dict) and not is_b64(instances[0]):
        fast = _flat_rows(instances, signature)
        if fast is not None:
            return fast
        columns: Dict[str, list] = {name: [] for name in names}
        for index, instance in enumerate(instances):
            if not isinstance(instance, dict) or is_b64(instance):
                raise invalid(f"Expecting object but got list at item {index} of input list")
            for key in instance:
                if key not in signature.inputs:
                    raise invalid(f"Failed to process element: {index} of 'instances' list. JSON object: "
                                  f"{json.dumps(instance)} does not have named input: {key}")
            if len(instance) != len(names):
                raise invalid(f"Failed to process element: {index} of 'instances' list. JSON object: "
                              f"{json.dumps(instance)} keys must be equal to: {','.join(sorted(names))}")
            for name in names:
                columns[name].append(_element(instance[name], signature.inputs[name].dtype, index))
        return {name: _stack(values) for name, values in columns.items()}
    if len(names) > 1:
        raise invalid("instances is a plain list, but expecting list of objects as multiple input tensors "
                      "required as per tensorinfo_map")
    values = []
    for index, instance in enumerate(instances):
        if isinstance(instance, dict) and not is_b64(instance):
            raise invalid(f"Expecting value/list but got object at item {index} of input list")
        values.append(_element(instance, signature.inputs[names[0]].dtype, index))
    return {names[0]: _stack(values)}


def _flat_rows(instances: list, signature: SignatureInfo):
    """Objects with exactly the signature's keys and plain scalar values, column by column in
    one numpy call each; None sends the request through the checks that name what is wrong."""
    keys = signature.inputs.keys()
    if not all(type(instance) is dict and instance.keys() == keys for instance in instances):
        return None
    columns = {}
    for name, info in signature.inputs.items():
        column = _flat_column([instance[name] for instance in instances], info.dtype)
        if column is None:
            return None
        columns[name] = column
    return columns


def _element(value, dtype: str, index: int) -> np.ndarray:
    try:
        return to_array(value, dtype)
    except ServingError as error:
        raise ServingError(error.code, f"Failed to process element: {index} of 'instances' list. "
                                       f"Error: {error.code}: {error.message}") from None


def _columnar_inputs(inputs, signature: SignatureInfo) -> Dict[str, np.ndarray]:
    names = list(signature.inputs)
    if not isinstance(inputs, dict) or is_b64(inputs):
        if len(names) > 1:
            raise invalid("inputs is a plain value/list, but expecting an object as multiple input tensors "
                          "required as per tensorinfo_map")
        return {names[0]: to_array(inputs, signature.inputs[names[0]].dtype)}
    tensors = {}
    for name in names:
        if name not in inputs:
            raise invalid(f"Missing named input: {name} in 'inputs' object.")
        tensors[name] = to_array(inputs[name], signature.inputs[name].dtype)
    return tensors


def _as_float32(value: float) -> float:
    return _FLOAT32.unpack(_FLOAT32.pack(value))[0]


def format_float(value: float, digits: int) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    text = f"{value:.6g}"
    if (_as_float32(float(text)) if digits == 9 else float(text)) != value:
        text = f"{value:.{digits}g}"
    return text if ("." in text or "e" in text) else text + ".0"


def _encoder(array: np.ndarray, alias: str) -> Callable[[object], str]:
    """How TF Serving writes the values of `array` (as nested lists from tolist()): ints as
    numbers, floats with `.0` on whole values, NaN/Infinity as bare tokens, strings raw or as
    {"b64": ...} when the alias ends in _bytes."""
    kind = array.dtype.kind
    if kind == "f":
        digits = 9 if array.dtype == np.float32 else 17
        leaf = lambda v: format_float(v, digits)  # noqa: E731
    elif kind == "b":
        leaf = lambda v: "true" if v else "false"  # noqa: E731
    elif kind in "iu":
        leaf = str
    elif kind in "OSU":
        if alias.endswith("_bytes"):
            leaf = lambda v: json.dumps({"b64": base64.b64encode(_bytes(v)).decode()})  # noqa: E731
        else:
            leaf = lambda v: json.dumps(_bytes(v).decode("utf-8", errors="replace"))  # noqa: E731
    else:
        raise invalid(f"Failed to write JSON value for tensor type: {array.dtype}")

    def walk(node):
        if isinstance(node, list):
            return "[" + ",".join(walk(child) for child in node) + "]"
        return leaf(node)

    return walk


def _encode(array: np.ndarray, alias: str) -> str:
    return _encoder(array, alias)(array.tolist())


def _bytes(value) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode("utf-8")


def predict_response(outputs: Dict[str, np.ndarray], row_format: bool) -> str:
    if not row_format:
        if len(outputs) == 1:
            (alias, array), = outputs.items()
            return '{"outputs": ' + _encode(array, alias) + "}"
        return '{"outputs": {' + ",".join(f"{json.dumps(a)}: {_encode(v, a)}" for a, v in outputs.items()) + "}}"
    batch = None
    for alias, array in outputs.items():
        if array.ndim == 0:
            raise invalid(f"Tensor name: {alias} has no shape information ")
        if batch is not None and array.shape[0] != batch:
            raise invalid(f"Tensor name: {alias} has inconsistent batch size: {array.shape[0]} expecting: {batch}")
        batch = array.shape[0]
    encoded = {alias: [encode(row) for row in array.tolist()]
               for alias, array in outputs.items() for encode in [_encoder(array, alias)]}
    if len(outputs) == 1:
        rows = next(iter(encoded.values()))
    else:
        rows = ["{" + ",".join(f"{json.dumps(a)}: {values[i]}" for a, values in encoded.items()) + "}"
                for i in range(batch)]
    return '{"predictions": [' + ",".join(rows) + "]}"


def example_features(request: dict, method: str) -> Tuple[list, dict]:
    """The `examples` (and optional `context`) of a classify/regress request, as feature dicts
    of typed value lists, checked as TF Serving checks them."""
    if "examples" not in request:
        raise invalid("When method is classify, key 'examples' is expected and was not found")
    examples = request["examples"]
    if not isinstance(examples, list):
        raise invalid("Expecting 'examples' value to be an list/array")
    if not examples:
        raise invalid("'examples' value is an empty array")
    context = request.get("context")
    return [_features(example) for example in examples], (_features(context) if context is not None else None)


def _features(example) -> Dict[str, Tuple[str, list]]:
    if not isinstance(example, dict):
        raise invalid(f"Example must be JSON object but got JSON {_json_type(example)}")
    features = {}
    for name, value in example.items():
        values = value if isinstance(value, list) else [value]
        kinds, converted = set(), []
        for item in values:
            if isinstance(item, bool):
                kinds.add("int64"), converted.append(int(item))
            elif isinstance(item, int):
                if item > 2 ** 63 - 1:
                    raise invalid(f"Feature: {name} has element with value {item} Only int64_t is supported.")
                kinds.add("int64"), converted.append(item)
            elif isinstance(item, float):
                kinds.add("float"), converted.append(item)
            elif isinstance(item, str):
                kinds.add("bytes"), converted.append(item.encode("utf-8"))
            elif is_b64(item):
                kinds.add("bytes"), converted.append(_scalar(item, "DT_STRING"))
            else:
                raise invalid(f"Feature: {name} has element with unexpected JSON type: {_json_type(item)}")
            if len(kinds) > 1:
                expected = next(iter(kinds - {_kind_of(item)}))
                raise invalid(f"Unexpected element type in feature: {name} expecting type: {expected}")
        features[name] = (kinds.pop() if kinds else "float", converted)
    return features


def _kind_of(item) -> str:
    if isinstance(item, (bool, int)):
        return "int64"
    return "float" if isinstance(item, float) else "bytes"
