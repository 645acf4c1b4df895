"""TF Serving's JSON for the REST API, as tensorflow_serving/util/json_tensor.cc reads and writes
it: request bodies to numpy inputs, outputs back to JSON, with its shape, dtype and feature rules
and its error messages byte for byte. TF Serving parses with rapidjson (NaN and Infinity
allowed, anything after the first value ignored) and writes with rapidjson's PrettyWriter, so
both are reproduced here: parse errors name rapidjson's error and byte offset, values quoted in
errors are printed as rapidjson prints them (pretty, arrays on one line, cut at 256 bytes), and
responses have TF Serving's layout. The dtype of an input always comes from the signature."""
import base64
import binascii
import decimal
import json
import math
import struct
from typing import Dict, List, Optional, Tuple

import numpy as np

from serving.errors import invalid, ServingError
from serving.servable import NUMPY_DTYPES, SignatureInfo, string_array

INT32 = (-(2 ** 31), 2 ** 31 - 1)
INT64 = (-(2 ** 63), 2 ** 63 - 1)
UINT32 = (0, 2 ** 32 - 1)
UINT64 = (0, 2 ** 64 - 1)
# Which JSON integers each dtype takes (rapidjson's IsInt, IsInt64, IsUint, IsUint64).
INT_RANGES = {"DT_INT32": INT32, "DT_INT16": INT32, "DT_INT8": INT32, "DT_UINT8": INT32, "DT_INT64": INT64,
              "DT_UINT32": UINT32, "DT_UINT64": UINT64}
# TensorFlow's DataTypeString names.
TYPE_NAMES = {"DT_FLOAT": "float", "DT_DOUBLE": "double", "DT_INT32": "int32", "DT_UINT8": "uint8",
              "DT_INT16": "int16", "DT_INT8": "int8", "DT_STRING": "string", "DT_COMPLEX64": "complex64",
              "DT_INT64": "int64", "DT_BOOL": "bool", "DT_QINT8": "qint8", "DT_QUINT8": "quint8",
              "DT_QINT32": "qint32", "DT_BFLOAT16": "bfloat16", "DT_QINT16": "qint16", "DT_QUINT16": "quint16",
              "DT_UINT16": "uint16", "DT_COMPLEX128": "complex128", "DT_HALF": "half", "DT_RESOURCE": "resource",
              "DT_VARIANT": "variant", "DT_UINT32": "uint32", "DT_UINT64": "uint64"}
_NUMPY_TYPE_NAMES = {"float16": "half", "uint16": "uint16", "complex64": "complex64", "complex128": "complex128"}
MAX_DEBUG_BYTES = 256  # json_tensor.cc's kMaxJsonDebugStringBytes
BYTES_SUFFIX = "_bytes"
_FLOAT32 = struct.Struct("f")


# ---------------------------------------------------------------- parsing (rapidjson's reader)

_PARSE_ERRORS = {
    "empty": "The document is empty.",
    "value": "Invalid value.",
    "name": "Missing a name for object member.",
    "colon": "Missing a colon after a name of object member.",
    "object": "Missing a comma or '}' after an object member.",
    "array": "Missing a comma or ']' after an array element.",
    "hex": "Incorrect hex digit after \\u escape in string.",
    "surrogate": "The surrogate pair in string is invalid.",
    "escape": "Invalid escape character in string.",
    "quote": "Missing a closing quotation mark in string.",
    "encoding": "Invalid encoding in string.",
    "big": "Number too big to be stored in double.",
    "fraction": "Miss fraction part in number.",
    "exponent": "Miss exponent part in number.",
}


class _ParseError(Exception):
    def __init__(self, kind: str, offset: int):
        super().__init__(kind)
        self.kind, self.offset = kind, offset


class _Reader:
    """rapidjson's reader with kParseNanAndInfFlag and kParseStopWhenDoneFlag, over bytes. Only
    bodies that Python's json refuses come here: it names the error and byte offset rapidjson
    would, and it accepts what rapidjson accepts and Python does not (Inf, -Inf)."""

    _ESCAPES = {ord('"'): '"', ord("\\"): "\\", ord("/"): "/", ord("b"): "\b", ord("f"): "\f", ord("n"): "\n",
                ord("r"): "\r", ord("t"): "\t"}
    _HEX = b"0123456789abcdefABCDEF"

    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def peek(self) -> int:
        return self.data[self.pos] if self.pos < len(self.data) else 0

    def consume(self, char: str) -> bool:
        if self.peek() == ord(char):
            self.pos += 1
            return True
        return False

    def skip_space(self) -> None:
        while self.peek() in (0x20, 0x0A, 0x0D, 0x09):
            self.pos += 1

    def document(self):
        self.skip_space()
        if self.peek() == 0:
            raise _ParseError("empty", self.pos)
        return self.value()

    def value(self):
        char = self.peek()
        if char == ord("n"):
            return self.literal("null", None)
        if char == ord("t"):
            return self.literal("true", True)
        if char == ord("f"):
            return self.literal("false", False)
        if char == ord('"'):
            return self.string()
        if char == ord("{"):
            return self.object()
        if char == ord("["):
            return self.array()
        return self.number()

    def literal(self, word: str, value):
        self.pos += 1
        for char in word[1:]:
            if not self.consume(char):
                raise _ParseError("value", self.pos)
        return value

    def object(self) -> dict:
        self.pos += 1
        self.skip_space()
        members = {}
        if self.consume("}"):
            return members
        while True:
            if self.peek() != ord('"'):
                raise _ParseError("name", self.pos)
            key = self.string()
            self.skip_space()
            if not self.consume(":"):
                raise _ParseError("colon", self.pos)
            self.skip_space()
            value = self.value()
            members.setdefault(key, value)  # rapidjson's FindMember finds the first
            self.skip_space()
            if self.consume(","):
                self.skip_space()
            elif self.consume("}"):
                return members
            else:
                raise _ParseError("object", self.pos)

    def array(self) -> list:
        self.pos += 1
        self.skip_space()
        items = []
        if self.consume("]"):
            return items
        while True:
            items.append(self.value())
            self.skip_space()
            if self.consume(","):
                self.skip_space()
            elif self.consume("]"):
                return items
            else:
                raise _ParseError("array", self.pos)

    def hex4(self, escape_offset: int) -> int:
        digits = self.data[self.pos:self.pos + 4]
        if len(digits) < 4 or any(d not in self._HEX for d in digits):
            raise _ParseError("hex", escape_offset)
        self.pos += 4
        return int(digits, 16)

    def string(self) -> str:
        self.pos += 1
        out = bytearray()
        while True:
            char = self.peek()
            if char == ord("\\"):
                escape_offset = self.pos
                self.pos += 1
                code = self.peek()
                if code in self._ESCAPES:
                    self.pos += 1
                    out += self._ESCAPES[code].encode()
                elif code == ord("u"):
                    self.pos += 1
                    point = self.hex4(escape_offset)
                    if 0xD800 <= point <= 0xDFFF:
                        if point > 0xDBFF or not (self.consume("\\") and self.consume("u")):
                            raise _ParseError("surrogate", escape_offset)
                        low = self.hex4(escape_offset)
                        if not 0xDC00 <= low <= 0xDFFF:
                            raise _ParseError("surrogate", escape_offset)
                        point = (((point - 0xD800) << 10) | (low - 0xDC00)) + 0x10000
                    out += chr(point).encode()
                else:
                    raise _ParseError("escape", escape_offset)
            elif char == ord('"'):
                self.pos += 1
                return out.decode("utf-8", "surrogateescape")
            elif char == 0:
                raise _ParseError("quote", self.pos)
            elif char < 0x20:
                raise _ParseError("encoding", self.pos)
            else:
                out.append(char)
                self.pos += 1

    def number(self):
        start = self.pos
        minus = self.consume("-")
        char = self.peek()
        if char == ord("0"):
            self.pos += 1
        elif ord("1") <= char <= ord("9"):
            while ord("0") <= self.peek() <= ord("9"):
                self.pos += 1
        elif char in (ord("N"), ord("I")):
            if self.consume("N"):
                if self.consume("a") and self.consume("N"):
                    return float("nan")
            elif self.consume("I") and self.consume("n") and self.consume("f"):
                if self.peek() == ord("i") and not all(self.consume(c) for c in "inity"):
                    raise _ParseError("value", self.pos)
                return float("-inf") if minus else float("inf")
            raise _ParseError("value", self.pos)
        else:
            raise _ParseError("value", self.pos)
        integral = True
        if self.consume("."):
            integral = False
            if not ord("0") <= self.peek() <= ord("9"):
                raise _ParseError("fraction", self.pos)
            while ord("0") <= self.peek() <= ord("9"):
                self.pos += 1
        if self.peek() in (ord("e"), ord("E")):
            integral = False
            self.pos += 1
            if self.peek() in (ord("+"), ord("-")):
                self.pos += 1
            if not ord("0") <= self.peek() <= ord("9"):
                raise _ParseError("exponent", self.pos)
            while ord("0") <= self.peek() <= ord("9"):
                self.pos += 1
        text = self.data[start:self.pos].decode()
        try:
            return _json_int(text) if integral else _json_float(text)
        except ValueError:
            raise _ParseError("big", start) from None


def _json_int(text: str):
    """An integer as rapidjson holds it: int64 or uint64, else a double."""
    if len(text) <= 20:
        value = int(text)
        if INT64[0] <= value <= UINT64[1]:
            return value
    return _json_float(text)


def _json_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError("Number too big to be stored in double.")  # the reader then names the offset
    return value


_DECODER = json.JSONDecoder(parse_int=_json_int, parse_float=_json_float)


def parse_body(body: bytes) -> dict:
    """The request's JSON object (json_tensor.cc's ParseJson)."""
    if not body:
        raise invalid("JSON Parse error: The document is empty")
    try:
        value, _ = _DECODER.raw_decode(body.decode("utf-8", "surrogateescape").lstrip(" \t\n\r"))
    except (ValueError, RecursionError):
        try:
            value = _Reader(body).document()
        except _ParseError as error:
            raise invalid(f"JSON Parse error: {_PARSE_ERRORS[error.kind]} at offset: {error.offset}") from None
        except RecursionError:
            raise invalid("JSON Parse error: the document nests too deeply") from None
    if not isinstance(value, dict):
        raise format_error(value, "Is not object")
    return value


# ---------------------------------------------------------------- writing (rapidjson's PrettyWriter)

_ESCAPE_TABLE = {i: f"\\u{i:04X}" for i in range(0x20)}
_ESCAPE_TABLE.update({0x08: "\\b", 0x09: "\\t", 0x0A: "\\n", 0x0C: "\\f", 0x0D: "\\r", ord('"'): '\\"',
                      ord("\\"): "\\\\"})


def json_string(text: str) -> str:
    """A string as rapidjson writes it: only quotes, backslashes and control characters escaped."""
    return '"' + text.translate(_ESCAPE_TABLE) + '"'


def _text(value: bytes) -> str:
    # Bytes that are not UTF-8 go out unchanged, as rapidjson writes them (see to_bytes).
    return value.decode("utf-8", "surrogateescape")


def to_bytes(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def rapidjson_double(value: float) -> Optional[str]:
    """Writer::Double: the shortest round-trip digits, laid out by rapidjson's Prettify. None for
    NaN and infinities, which rapidjson refuses to write."""
    if math.isnan(value) or math.isinf(value):
        return None
    if value == 0:
        return "-0.0" if math.copysign(1.0, value) < 0 else "0.0"
    sign = "-" if value < 0 else ""
    _, digit_tuple, exponent = decimal.Decimal(repr(abs(value))).as_tuple()
    digits = "".join(map(str, digit_tuple)).lstrip("0")
    stripped = digits.rstrip("0")
    exponent += len(digits) - len(stripped)
    digits, k = stripped, exponent
    length = len(digits)
    kk = length + k
    if 0 <= k and kk <= 21:
        text = digits + "0" * k + ".0"
    elif 0 < kk <= 21:
        text = digits[:kk] + "." + digits[kk:]
    elif -6 < kk <= 0:
        text = "0." + "0" * -kk + digits
    elif kk < -324:
        text = "0.0"
    elif length == 1:
        text = digits + "e" + str(kk - 1)
    else:
        text = digits[0] + "." + digits[1:] + "e" + str(kk - 1)
    return sign + text


def _as_float32(value: float) -> float:
    return _FLOAT32.unpack(_FLOAT32.pack(value))[0]


def format_float(value: float, digits: int) -> str:
    """json_tensor.cc's WriteDecimal: six significant digits if they round-trip (as float for
    DT_FLOAT, digits=9; as double for DT_DOUBLE, digits=17), else max_digits10; ".0" on whole
    numbers; NaN and [-]Infinity as bare tokens."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    text = f"{value:.6g}"
    if (_as_float32(float(text)) if digits == 9 else float(text)) != value:
        text = f"{value:.{digits}g}"
    return text if ("." in text or "e" in text) else text + ".0"


class _Full(Exception):
    """The debug writer's byte limit was reached, or a value rapidjson cannot write came up."""


class PrettyWriter:
    """rapidjson::PrettyWriter (4-space indent; kFormatSingleLineArray writes arrays on one line
    with ", " between elements), with json_tensor.cc's optional byte limit for debug strings."""

    def __init__(self, limit: Optional[int] = None):
        self.parts: List[str] = []
        self.size = 0
        self.levels: List[list] = []  # [in_array, value_count] per open container
        self.single_line = False
        self.limit = limit

    def text(self) -> str:
        return "".join(self.parts)

    def _put(self, text: str) -> None:
        self.parts.append(text)
        if self.limit is not None:
            self.size += len(to_bytes(text))

    def _check(self) -> None:
        if self.limit is not None and self.size >= self.limit:
            raise _Full()

    def _prefix(self) -> None:
        if not self.levels:
            return
        level = self.levels[-1]
        if level[0]:
            if level[1] > 0:
                self._put(", " if self.single_line else ",")
            if not self.single_line:
                self._put("\n" + "    " * len(self.levels))
        else:
            if level[1] > 0:
                self._put(",\n" if level[1] % 2 == 0 else ": ")
            else:
                self._put("\n")
            if level[1] % 2 == 0:
                self._put("    " * len(self.levels))
        level[1] += 1

    def raw(self, text: str) -> None:
        self._check()
        self._prefix()
        self._put(text)

    def string(self, text: str) -> None:
        self.raw(json_string(text))

    key = string

    def start(self, array: bool) -> None:
        self.raw("[" if array else "{")
        self.levels.append([array, 0])

    def end(self) -> None:
        self._check()
        array, count = self.levels.pop()
        if count and (not array or not self.single_line):
            self._put("\n" + "    " * len(self.levels))
        self._put("]" if array else "}")

    def value(self, value) -> None:
        """A parsed JSON value, as rapidjson's Value::Accept writes it."""
        if isinstance(value, dict):
            self.start(False)
            for key, item in value.items():
                self.key(key)
                self.value(item)
            self.end()
        elif isinstance(value, list):
            self.start(True)
            for item in value:
                self.value(item)
            self.end()
        elif isinstance(value, str):
            self.string(value)
        elif value is None:
            self.raw("null")
        elif isinstance(value, bool):
            self.raw("true" if value else "false")
        elif isinstance(value, int):
            self.raw(str(value))
        else:
            text = rapidjson_double(float(value))
            if text is None:
                raise _Full()
            self.raw(text)


def debug_string(value) -> str:
    """json_tensor.cc's JsonValueToDebugString."""
    writer = PrettyWriter(limit=MAX_DEBUG_BYTES)
    writer.single_line = True
    try:
        writer.value(value)
    except _Full:
        pass
    return writer.text()


def format_error(doc, *message) -> ServingError:
    return invalid("JSON Value: " + debug_string(doc) + " " + "".join(message))


def json_type(value) -> str:
    """rapidjson's type of a parsed value, as JsonTypeString names it."""
    if value is None:
        return "Null"
    if value is True:
        return "True"
    if value is False:
        return "False"
    if isinstance(value, dict):
        return "Object"
    if isinstance(value, list):
        return "Array"
    if isinstance(value, str):
        return "String"
    return "Number"


def error_body(message: str) -> str:
    """MakeJsonFromStatus."""
    return '{\n    "error": ' + json_string(message) + "\n}"


# ---------------------------------------------------------------- JSON values to tensors

def is_b64(value) -> bool:
    return type(value) is dict and len(value) == 1 and type(value.get("b64")) is str


def _is_object(value) -> bool:
    return type(value) is dict and not is_b64(value)


def _int_in(value, bounds) -> bool:
    return type(value) is int and bounds[0] <= value <= bounds[1]


def _is_number(value) -> bool:
    return type(value) in (int, float)


def type_error(value, dtype: str) -> ServingError:
    return invalid(f"JSON Value: {debug_string(value)} Type: {json_type(value)} is not of expected type: "
                   f"{TYPE_NAMES.get(dtype, dtype)}")


def decode_b64(value) -> bytes:
    """JsonDecodeBase64Object, with absl::Base64Unescape's alphabet (padding optional)."""
    if not is_b64(value):
        raise invalid(f"JSON Value: {debug_string(value)} not formatted correctly for base64 data")
    text = value["b64"]
    try:
        if len(text) % 4 == 1:
            raise binascii.Error("truncated")
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise invalid("Unable to base64 decode") from None


def _scalar(value, dtype: str):
    """AddValueToTensor, and the base64 objects of FillTensorProto."""
    if type(value) is dict:
        if dtype == "DT_STRING":
            return decode_b64(value)
        raise type_error(value, dtype)
    if dtype in ("DT_FLOAT", "DT_DOUBLE"):
        if not _is_number(value):
            raise type_error(value, dtype)
        return float(value)
    if dtype in INT_RANGES:
        if not _int_in(value, INT_RANGES[dtype]):
            raise type_error(value, dtype)
        return value
    if dtype == "DT_STRING":
        if type(value) is not str:
            raise type_error(value, dtype)
        return to_bytes(value)
    if dtype == "DT_BOOL":
        if type(value) is not bool:
            raise type_error(value, dtype)
        return value
    raise ServingError("UNIMPLEMENTED", f"Conversion of JSON Value: {debug_string(value)} to type: "
                                        f"{TYPE_NAMES.get(dtype, dtype)}")


def dense_shape(value) -> List[int]:
    """GetDenseTensorShape: each level's length, following the first element."""
    shape = []
    while type(value) is list:
        shape.append(len(value))
        if not value:
            break
        value = value[0]
    return shape


def _fill(value, level: int, shape: List[int], dtype: str, out: list) -> None:
    """FillTensorProto."""
    rank = len(shape)
    if type(value) is not list:
        if level != rank:
            raise invalid(f"JSON Value: {debug_string(value)} found at incorrect level: {level + 1} in the JSON DOM. "
                          f"Expected at level: {rank}")
        out.append(_scalar(value, dtype))
        return
    if level >= rank:
        raise invalid(f"Encountered list at unexpected level: {level} expected < {rank}")
    if len(value) != shape[level]:
        raise invalid(f"Encountered list at unexpected size: {len(value)} at level: {level} "
                      f"expected size: {shape[level]}")
    for item in value:
        _fill(item, level + 1, shape, dtype, out)


def _plain_values(values: list, dtype: str) -> Optional[np.ndarray]:
    """A flat list of JSON scalars that _scalar would accept one by one, as one array; None
    when any value needs the element-by-element rules (and their errors)."""
    if not values:
        return None
    kinds = set(map(type, values))
    if dtype == "DT_STRING":
        return string_array([to_bytes(v) for v in values]) if kinds == {str} else None
    if dtype in INT_RANGES:
        if kinds != {int}:
            return None
        low, high = INT_RANGES[dtype]
        if not low <= min(values) <= max(values) <= high:
            return None
        return np.array(values, dtype=np.int64).astype(NUMPY_DTYPES[dtype], copy=False)
    if dtype == "DT_BOOL":
        return np.array(values, dtype=np.bool_) if kinds == {bool} else None
    if dtype not in ("DT_FLOAT", "DT_DOUBLE") or not kinds <= {int, float}:
        return None
    with np.errstate(over="ignore"):  # a double beyond float32 becomes inf, as static_cast<float> makes it
        if kinds == {float}:
            return np.array(values, dtype=NUMPY_DTYPES[dtype])
        # Through doubles, as rapidjson's GetFloat converts an integer.
        return np.array(values, dtype=np.float64).astype(NUMPY_DTYPES[dtype], copy=False)


def values_array(flat: list, dtype: str, shape: List[int]) -> np.ndarray:
    """Converted scalars as an array of the dtype, as Tensor::FromProto fills it (narrow ints wrap)."""
    if dtype == "DT_STRING":
        return string_array(flat).reshape(shape)
    if dtype in INT_RANGES and dtype not in ("DT_INT64", "DT_UINT64", "DT_UINT32", "DT_INT32"):
        return np.array(flat, dtype=np.int64).astype(NUMPY_DTYPES[dtype]).reshape(shape)
    with np.errstate(over="ignore"):
        return np.array(flat, dtype=NUMPY_DTYPES[dtype]).reshape(shape)


def to_tensor(value, dtype: str) -> np.ndarray:
    """One JSON tensor (nested lists, scalars, b64 objects) as an array of `dtype`."""
    if dtype not in NUMPY_DTYPES:
        shape = dense_shape(value)
        _fill(value, 0, shape, dtype, [])  # raises the UNIMPLEMENTED conversion error
        return np.zeros(shape)  # no values at all: an empty tensor of an unsupported dtype
    if type(value) is list:
        plain = _plain_values(value, dtype)
        if plain is not None:
            return plain
    shape = dense_shape(value)
    flat: list = []
    _fill(value, 0, shape, dtype, flat)
    return values_array(flat, dtype, shape)


def _shape_text(shape) -> str:
    return "[" + ",".join(str(d) for d in shape) + "]"


def predict_inputs(request: dict, signature_name: str, signature: SignatureInfo) -> Tuple[Dict[str, np.ndarray], bool]:
    """FillPredictRequestFromJson after the signature is found: the request's tensors keyed by
    input alias, and whether it used the row ("instances") format."""
    if not signature.inputs:
        raise invalid(f"Failed to get input map for signature: {signature_name or 'DEFAULT'}")
    if "instances" in request:
        if "inputs" in request:
            raise format_error(request, "Not formatted correctly expecting only one of 'inputs' or 'instances' "
                                        "keys to exist ")
        instances = request["instances"]
        if type(instances) is not list:
            raise format_error(request, "Expecting 'instances' to be an list/array")
        if not instances:
            raise format_error(request, "No values in 'instances' array")
        return _row_inputs(instances, signature), True
    if "inputs" in request:
        return _columnar_inputs(request["inputs"], signature), False
    raise invalid("Missing 'inputs' or 'instances' key")


def _row_inputs(instances: list, signature: SignatureInfo) -> Dict[str, np.ndarray]:
    """FillTensorMapFromInstancesList."""
    names = sorted(signature.inputs)
    if type(instances[0]) is not dict and len(names) > 1:
        raise invalid("instances is a plain list, but expecting list of objects as multiple input tensors "
                      "required as per tensorinfo_map")
    objects = _is_object(instances[0])
    plain = _plain_rows(instances, signature, objects)
    return plain if plain is not None else _checked_rows(instances, signature, objects)


def _checked_rows(instances: list, signature: SignatureInfo, objects: bool) -> Dict[str, np.ndarray]:
    """FillTensorMapFromInstancesList value by value, with its errors."""
    names = sorted(signature.inputs)
    items: Dict[str, list] = {}
    shapes: Dict[str, Tuple[int, List[int]]] = {}

    def add(item, name: str) -> None:
        """AddInstanceItem."""
        if name not in signature.inputs:
            raise invalid(f"JSON object: does not have named input: {name}")
        shape = dense_shape(item)
        flat: list = []
        _fill(item, 0, shape, signature.inputs[name].dtype, flat)
        if name not in shapes:
            shapes[name] = (len(flat), shape)
        elif shapes[name][0] != len(flat):
            raise invalid(f"Expecting tensor size: {shapes[name][0]} but got: {len(flat)}")
        elif shapes[name][1] != shape:
            raise invalid(f"Expecting shape {_shape_text(shapes[name][1])} but got: {_shape_text(shape)}")
        items.setdefault(name, []).extend(flat)

    for index, element in enumerate(instances):
        if objects:
            if not _is_object(element):
                raise invalid(f"Expecting object but got list at item {index} of input list")
            for key, item in element.items():
                try:
                    add(item, key)
                except ServingError as error:
                    raise invalid(f"Failed to process element: {index} key: {key} of 'instances' list. "
                                  f"Error: {error.code}: {error.message}") from None
            if set(element) != set(names):
                raise invalid(f"Failed to process element: {index} of 'instances' list. JSON object: "
                              f"{debug_string(element)} keys must be equal to: {','.join(names)}")
        else:
            if _is_object(element):
                raise invalid(f"Expecting value/list but got object at item {index} of input list")
            try:
                add(element, names[0])
            except ServingError as error:
                raise invalid(f"Failed to process element: {index} of 'instances' list. "
                              f"Error: {error.code}: {error.message}") from None
    return {name: values_array(flat, signature.inputs[name].dtype, [len(instances)] + shapes[name][1])
            for name, flat in items.items()}


def _plain_rows(instances: list, signature: SignatureInfo, objects: bool) -> Optional[Dict[str, np.ndarray]]:
    """The common case in one numpy call per input: every instance a scalar (one input), or an
    object with exactly the signature's keys and scalar values. None sends the request
    through the checks that name what is wrong."""
    if not objects:
        if len(signature.inputs) != 1:
            return None
        (name, info), = signature.inputs.items()
        column = _plain_values(instances, info.dtype)
        return None if column is None else {name: column}
    keys = signature.inputs.keys()
    if not all(type(instance) is dict and instance.keys() == keys for instance in instances):
        return None
    # One array per dtype, each input a row of it: a few numpy calls, not one per input.
    groups: Dict[str, List[str]] = {}
    for name, info in signature.inputs.items():
        groups.setdefault(info.dtype, []).append(name)
    columns = {}
    for dtype, names in groups.items():
        block = _plain_values([instance[name] for name in names for instance in instances], dtype)
        if block is None:
            return None
        block = block.reshape(len(names), len(instances))
        for index, name in enumerate(names):
            columns[name] = block[index]
    return columns


def _columnar_inputs(inputs, signature: SignatureInfo) -> Dict[str, np.ndarray]:
    """FillTensorMapFromInputsMap."""
    names = sorted(signature.inputs)
    if type(inputs) is not dict or is_b64(inputs):
        if len(names) > 1:
            raise invalid("inputs is a plain value/list, but expecting an object as multiple input tensors "
                          "required as per tensorinfo_map")
        return {names[0]: to_tensor(inputs, signature.inputs[names[0]].dtype)}
    tensors = {}
    for name in names:
        if name not in inputs:
            raise invalid(f"Missing named input: {name} in 'inputs' object.")
        tensors[name] = to_tensor(inputs[name], signature.inputs[name].dtype)
    return tensors


# ---------------------------------------------------------------- tensors to JSON

def _leaf_writer(array: np.ndarray, alias: str):
    """How AddSingleValueAndAdvance writes one value of `array`, as text; None for b64 objects."""
    kind = array.dtype.kind
    if kind == "f" and array.dtype.itemsize in (4, 8):
        digits = 9 if array.dtype.itemsize == 4 else 17
        return lambda v: format_float(v, digits)
    if kind == "b":
        return lambda v: "true" if v else "false"
    if kind in "iu" and array.dtype != np.uint16:
        return str
    if kind in "OSU":
        if alias.endswith(BYTES_SUFFIX):
            return None
        return lambda v: json_string(_text(_bytes(v)))
    name = _NUMPY_TYPE_NAMES.get(array.dtype.name, array.dtype.name)
    raise invalid(f"Failed to write JSON value for tensor type: {name}")


def _bytes(value) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode("utf-8")


def _single_line(node, leaf) -> str:
    if isinstance(node, list):
        return "[" + ", ".join(_single_line(child, leaf) for child in node) + "]"
    return leaf(node)


def _write_values(writer: PrettyWriter, node, leaf, alias: str) -> None:
    """AddTensorValues through the writer (b64 objects, the multi-line columnar layout)."""
    if isinstance(node, list):
        writer.start(True)
        for child in node:
            _write_values(writer, child, leaf, alias)
        writer.end()
    elif leaf is None:
        writer.start(False)
        writer.key("b64")
        writer.string(base64.b64encode(_bytes(node)).decode())
        writer.end()
    else:
        writer.raw(leaf(node))


def predict_response(outputs: Dict[str, np.ndarray], row_format: bool) -> str:
    """MakeJsonFromTensors, outputs in alias order."""
    if not outputs:
        raise invalid("Cannot convert empty tensor map to JSON")
    names = sorted(outputs)
    leaves = {alias: _leaf_writer(outputs[alias], alias) for alias in names}
    if not row_format:
        writer = PrettyWriter()
        writer.start(False)
        writer.key("outputs")
        if len(names) > 1:
            writer.start(False)
        for alias in names:
            if len(names) > 1:
                writer.key(alias)
            _write_values(writer, outputs[alias].tolist(), leaves[alias], alias)
        if len(names) > 1:
            writer.end()
        writer.end()
        return writer.text()
    batch = -1
    for alias in names:
        array = outputs[alias]
        if array.ndim == 0:
            raise invalid(f"Tensor name: {alias} has no shape information ")
        if batch >= 0 and batch != array.shape[0]:
            raise invalid(f"Tensor name: {alias} has inconsistent batch size: {array.shape[0]} expecting: {batch}")
        batch = array.shape[0]
    if len(names) == 1 and leaves[names[0]] is not None:
        leaf = leaves[names[0]]
        rows = ", ".join(_single_line(row, leaf) for row in outputs[names[0]].tolist())
        return '{\n    "predictions": [' + rows + ("\n    ]\n}" if batch else "]\n}")
    return _written_rows(outputs, names, leaves, batch)


def _written_rows(outputs: Dict[str, np.ndarray], names: List[str], leaves: dict, batch: int) -> str:
    """MakeRowFormatJsonFromTensors through the writer, event by event."""
    writer = PrettyWriter()
    writer.start(False)
    writer.key("predictions")
    writer.start(True)
    columns = {alias: outputs[alias].tolist() for alias in names}
    for item in range(batch):
        if len(names) > 1:
            writer.start(False)
        writer.single_line = True
        for alias in names:
            if len(names) > 1:
                writer.key(alias)
            _write_values(writer, columns[alias][item], leaves[alias], alias)
        writer.single_line = False
        if len(names) > 1:
            writer.end()
    writer.end()
    writer.end()
    return writer.text()


def classify_response(results: List[List[Tuple[str, float]]]) -> str:
    """MakeJsonFromClassificationResult."""
    if not results:
        raise invalid("Cannot convert empty ClassificationResults to JSON")
    rows = ", ".join("[" + ", ".join(f"[{json_string(label)}, {format_float(score, 9)}]" for label, score in row) + "]"
                     for row in results)
    return '{\n    "results": [' + rows + "\n    ]\n}"


def regress_response(values: List[float]) -> str:
    """MakeJsonFromRegressionResult."""
    if not values:
        raise invalid("Cannot convert empty RegressionResults to JSON")
    return '{\n    "results": [' + ", ".join(format_float(v, 9) for v in values) + "]\n}"


# ---------------------------------------------------------------- classify/regress examples

def example_request(request: dict) -> Tuple[list, Optional[dict]]:
    """FillClassifyRegressRequestFromJson after the signature name: the examples and optional
    context as feature dicts {name: (kind or None, values)}."""
    context = _example(request["context"]) if "context" in request else None
    if "examples" not in request:
        raise format_error(request, "When method is classify, key 'examples' is expected and was not found")
    examples = request["examples"]
    if type(examples) is not list:
        raise format_error(request, "Expecting 'examples' value to be an list/array")
    if not examples:
        raise format_error(request, "'examples' value is an empty array")
    return [_example(example) for example in examples], context


def _example(value) -> Dict[str, Tuple[Optional[str], list]]:
    """MakeExampleFromJsonObject."""
    if type(value) is not dict:
        raise invalid(f"Example must be JSON object but got JSON {json_type(value)}")
    features = {}
    for name, content in value.items():
        feature = [None, []]
        for item in (content if type(content) is list else [content]):
            _add_to_feature(name, item, feature)
        features[name] = tuple(feature)
    return features


def _add_to_feature(name: str, item, feature: list) -> None:
    """AddValueToFeature: `feature` is [kind or None, values]."""
    kind = type(item)
    if kind is bool:
        wanted = "int64"
    elif kind is str:
        wanted = "bytes"
    elif kind is float:
        wanted = "float"
    elif kind is int:
        wanted = "int64"
    elif is_b64(item):
        wanted = "bytes"
    else:
        raise invalid(f"Feature: {name} has element with unexpected JSON type: {json_type(item)}")
    if feature[0] is not None and feature[0] != wanted:
        raise invalid(f"Unexpected element type in feature: {name} expecting type: {feature[0]}")
    if kind is int and wanted == "int64" and item > INT64[1]:
        raise invalid(f"Feature: {name} has uint64_t element. Only int64_t is supported.")
    feature[0] = wanted
    if kind is dict:
        feature[1].append(decode_b64(item))
    elif kind is str:
        feature[1].append(to_bytes(item))
    elif wanted == "float":
        feature[1].append(float(item))
    else:
        feature[1].append(int(item))
