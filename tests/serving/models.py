"""SavedModels exported the ways other tools export them, built in the test (no downloads):

- half_plus_two: TF Serving's own test model, a TF1 graph with variables saved with
  SavedModelBuilder, as tensorflow_serving/servables/tensorflow/testdata/saved_model_half_plus_two.py
  builds it (predict, classify and regress signatures over serialized tf.Examples, an asset file
  and a main op);
- a TF2 tf.Module with tf.function signatures: several inputs and outputs, strings and ints;
- an Estimator-style export: the SignatureDefs tf.estimator.export writes for a binary
  classifier (classification, regression and predict over a parsing serving input receiver),
  built with the TF1 API, with a vocabulary table initialized by the main op;
- tfxline's own export: the Trainer's modules (preprocessing_fn, model, export) on tiny data.
"""
from pathlib import Path

import numpy as np

# ------------------------------------------------------------------ half_plus_two (TF1)


def build_half_plus_two(path: Path, b: float = 2.0, c: float = 3.0) -> Path:
    """y = a*x + b, y2 = a*x + c, y3 = a2*x2 + c2 with a = a2 = 0.5, c2 = 3."""
    import tensorflow.compat.v1 as tf

    feature_spec = {"x": tf.FixedLenFeature([1], dtype=tf.float32),
                    "x2": tf.FixedLenFeature([1], dtype=tf.float32, default_value=[0.0])}
    constants = tf.saved_model.signature_constants
    info = tf.saved_model.utils.build_tensor_info
    build = tf.saved_model.signature_def_utils.build_signature_def

    def regression(inputs, outputs):
        return build({constants.REGRESS_INPUTS: info(inputs)}, {constants.REGRESS_OUTPUTS: info(outputs)},
                     constants.REGRESS_METHOD_NAME)

    assets = path.parent / f".assets-{path.name}"
    assets.mkdir(parents=True, exist_ok=True)
    (assets / "foo.txt").write_text("asset-file-contents")
    builder = tf.saved_model.builder.SavedModelBuilder(str(path))
    with tf.Session(graph=tf.Graph()) as session:
        with tf.device("/cpu:0"):
            a = tf.Variable(0.5, name="a")
            b_var = tf.Variable(b, name="b")
            c_var = tf.Variable(c, name="c")
            serialized = tf.placeholder(tf.string, name="tf_example", shape=[None])
            parsed = tf.parse_example(serialized, feature_spec)
            x = tf.identity(parsed["x"], name="x")
            y = tf.identity(tf.add(tf.multiply(a, x), b_var), name="y")
            y2 = tf.identity(tf.add(tf.multiply(a, x), c_var), name="y2")
            x2 = tf.identity(parsed["x2"], name="x2")
            a2 = tf.Variable(0.5, name="a2")
            c2 = tf.Variable(3.0, name="c2")
            y3 = tf.identity(tf.add(tf.multiply(a2, x2), c2), name="y3")
        asset_path = tf.constant(str(assets / "foo.txt"))
        tf.add_to_collection(tf.GraphKeys.ASSET_FILEPATHS, asset_path)
        filename = tf.Variable("foo.txt", name="filename_tensor", trainable=False, collections=[])
        assign_filename = filename.assign("foo.txt")
        signatures = {
            "regress_x_to_y": regression(serialized, y),
            "regress_x_to_y2": regression(serialized, y2),
            "regress_x2_to_y3": regression(x2, y3),
            "classify_x_to_y": build({constants.CLASSIFY_INPUTS: info(serialized)},
                                     {constants.CLASSIFY_OUTPUT_SCORES: info(y)}, constants.CLASSIFY_METHOD_NAME),
            constants.DEFAULT_SERVING_SIGNATURE_DEF_KEY: build({"x": info(x)}, {"y": info(y)},
                                                               constants.PREDICT_METHOD_NAME),
        }
        session.run(tf.global_variables_initializer())
        builder.add_meta_graph_and_variables(
            session, [tf.saved_model.tag_constants.SERVING], signature_def_map=signatures,
            assets_collection=tf.get_collection(tf.GraphKeys.ASSET_FILEPATHS), main_op=tf.group(assign_filename))
    builder.save()
    return path


def build_slow_loading(path: Path, iterations: int = 1_000_000) -> Path:
    """half_plus_two's predict signature, with a main op that spins `iterations` times (about
    3 us each) when the version loads: a load that takes seconds."""
    import tensorflow.compat.v1 as tf

    builder = tf.saved_model.builder.SavedModelBuilder(str(path))
    with tf.Session(graph=tf.Graph()) as session:
        x = tf.placeholder(tf.float32, shape=[None, 1], name="x")
        y = tf.identity(0.5 * x + 2.0, name="y")
        spin = tf.while_loop(lambda i: i < iterations, lambda i: i + 1, (tf.constant(0, tf.int64),),
                             return_same_structure=True)[0]
        signature = tf.saved_model.signature_def_utils.predict_signature_def({"x": x}, {"y": y})
        builder.add_meta_graph_and_variables(session, [tf.saved_model.tag_constants.SERVING],
                                             signature_def_map={"serving_default": signature},
                                             main_op=tf.group(spin))
    builder.save()
    return path


# ------------------------------------------------------------------ TF2 tf.Module

def build_tf2_module(path: Path) -> Path:
    """Signatures of several inputs and outputs, with float, int64, int32 and string tensors."""
    import tensorflow as tf

    class Scorer(tf.Module):
        def __init__(self):
            super().__init__()
            self.weights = tf.Variable([[0.5, -1.0, 2.0], [1.5, 0.25, -0.5]], name="weights")
            self.bias = tf.Variable([0.1, 0.2, 0.3], name="bias")
            self.table = tf.lookup.StaticHashTable(
                tf.lookup.KeyValueTensorInitializer(tf.constant(["red", "green", "blue"]),
                                                    tf.constant([1, 2, 3], tf.int64)), default_value=0)

        @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.float32, name="features"),
                                      tf.TensorSpec([None], tf.string, name="color"),
                                      tf.TensorSpec([None], tf.int64, name="count")], autograph=False)
        def score(self, features, color, count):
            logits = tf.matmul(features, self.weights) + self.bias
            color_id = self.table.lookup(color)
            return {"logits": logits, "probabilities": tf.nn.softmax(logits),
                    "color_id": color_id, "label": tf.strings.join([color, tf.strings.as_string(count)], "-"),
                    "total": count * 2 + color_id}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text"),
                                      tf.TensorSpec([None], tf.int32, name="repeat")], autograph=False)
        def text(self, text, repeat):
            return {"upper_bytes": tf.strings.upper(text), "length": tf.strings.length(text) * repeat}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")], autograph=False)
        def regress(self, inputs):
            parsed = tf.io.parse_example(inputs, {"features": tf.io.FixedLenFeature([2], tf.float32)})
            return {"outputs": tf.reduce_sum(tf.matmul(parsed["features"], self.weights), axis=1)}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")], autograph=False)
        def classify(self, inputs):
            parsed = tf.io.parse_example(inputs, {"features": tf.io.FixedLenFeature([2], tf.float32),
                                                  "color": tf.io.FixedLenFeature([], tf.string, "")})
            logits = tf.matmul(parsed["features"], self.weights) + self.bias
            batch = tf.shape(logits)[0]
            return {"scores": tf.nn.softmax(logits),
                    "classes": tf.tile(tf.constant([["a", "b", "c"]]), tf.stack([batch, 1]))}

        # Signatures that TF Serving refuses to answer in some way, for the error texts.
        @tf.function(input_signature=[tf.TensorSpec([None], tf.float16, name="h")], autograph=False)
        def half(self, h):
            return {"doubled": h * 2}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="v")], autograph=False)
        def scalar(self, v):
            return {"sum": tf.reduce_sum(v), "doubled": v * 2}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="v")], autograph=False)
        def ragged_batch(self, v):
            return {"same": v, "twice": tf.concat([v, v], 0)}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")], autograph=False)
        def bad_scores(self, inputs):
            return {"scores": tf.ones(tf.shape(inputs))}  # rank 1, where classify needs [batch, classes]

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")], autograph=False)
        def wide_regression(self, inputs):
            return {"outputs": tf.ones(tf.stack([tf.size(inputs), 2]))}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")], autograph=False)
        def int_regression(self, inputs):
            return {"outputs": tf.ones(tf.shape(inputs), tf.int64)}

        # A request that takes as long as it asks (about 3 us an iteration): requests in flight.
        @tf.function(input_signature=[tf.TensorSpec([None], tf.int64, name="iterations")], autograph=False)
        def spin(self, iterations):
            done = tf.while_loop(lambda i: i < tf.reduce_max(iterations), lambda i: i + 1,
                                 (tf.constant(0, tf.int64),))[0]
            return {"done": tf.fill(tf.shape(iterations), done)}

        # What the model call saw: its batch size, and each request's own rows.
        @tf.function(input_signature=[tf.TensorSpec([None, None], tf.float32, name="v")], autograph=False)
        def batch_view(self, v):
            return {"batch": tf.fill(tf.shape(v)[:1], tf.shape(v)[0]), "echo": v}

    module = Scorer()
    tf.saved_model.save(module, str(path), signatures={
        "spin": module.spin, "batch_view": module.batch_view,
        "serving_default": module.score, "text": module.text, "regress": module.regress,
        "classify": module.classify, "half": module.half, "scalar": module.scalar,
        "ragged_batch": module.ragged_batch, "bad_scores": module.bad_scores,
        "wide_regression": module.wide_regression, "int_regression": module.int_regression})
    return path


# ------------------------------------------------------------------ Estimator-style (TF1 API)

ESTIMATOR_COLORS = ["red", "green", "blue"]


def build_estimator_style(path: Path) -> Path:
    """What tf.estimator.export writes for a binary classifier fed by
    build_parsing_serving_input_receiver_fn: receiver tensor `examples` (placeholder
    input_example_tensor), signatures serving_default and classification (classify: classes
    and scores [batch, 2]), regression (the positive-class probability) and predict."""
    import tensorflow.compat.v1 as tf

    feature_spec = {"x": tf.FixedLenFeature([1], tf.float32),
                    "color": tf.FixedLenFeature([1], tf.string, default_value=[""])}
    builder = tf.saved_model.builder.SavedModelBuilder(str(path))
    with tf.Session(graph=tf.Graph()) as session:
        examples = tf.placeholder(tf.string, shape=[None], name="input_example_tensor")
        features = tf.parse_example(examples, feature_spec)
        table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(tf.constant(ESTIMATOR_COLORS),
                                                tf.constant(list(range(len(ESTIMATOR_COLORS))), tf.int64)), -1)
        color_ids = table.lookup(tf.squeeze(features["color"], 1))
        weight = tf.Variable([[1.5]], name="linear/x/weights")
        color_weights = tf.Variable([0.5, -0.25, 1.0, 0.0], name="linear/color/weights")
        bias = tf.Variable([-0.75], name="linear/bias_weights")
        logits = tf.matmul(features["x"], weight) + tf.expand_dims(
            tf.gather(color_weights, tf.where(color_ids < 0, tf.fill(tf.shape(color_ids), tf.constant(3, tf.int64)),
                                              color_ids)), 1) + bias
        logistic = tf.sigmoid(logits, name="head/predictions/logistic")
        probabilities = tf.concat([1 - logistic, logistic], axis=1, name="head/predictions/probabilities")
        class_ids = tf.expand_dims(tf.argmax(probabilities, axis=1), 1, name="head/predictions/class_ids")
        classes = tf.strings.as_string(class_ids, name="head/predictions/str_classes")
        batch = tf.shape(logits)[0]
        all_classes = tf.tile(tf.constant([["0", "1"]]), tf.stack([batch, 1]), name="head/Tile")
        signatures = {
            "serving_default": tf.saved_model.classification_signature_def(examples, all_classes, probabilities),
            "classification": tf.saved_model.classification_signature_def(examples, all_classes, probabilities),
            "regression": tf.saved_model.regression_signature_def(examples, logistic),
            "predict": tf.saved_model.predict_signature_def(
                {"examples": examples},
                {"logits": logits, "logistic": logistic, "probabilities": probabilities, "class_ids": class_ids,
                 "classes": classes, "all_classes": all_classes}),
        }
        session.run(tf.global_variables_initializer())
        builder.add_meta_graph_and_variables(
            session, [tf.saved_model.tag_constants.SERVING], signature_def_map=signatures,
            main_op=tf.tables_initializer(), strip_default_attrs=True)
    builder.save()
    return path


# ------------------------------------------------------------------ tfxline's own export

TINY_ROWS = [
    {"miles": [1.0], "hour": [0], "payment": [b"Cash"], "fare": [2.0], "tips": [1.0]},
    {"miles": [2.0], "hour": [2], "payment": [b"Cash"], "fare": [2.0], "tips": [0.0]},
    {"miles": [3.0], "hour": [1], "payment": [b"Card"], "fare": [10.0], "tips": [5.0]},
    {"miles": [], "hour": [1], "payment": [], "fare": [], "tips": [1.0]},
    {"miles": [0.5], "hour": [2], "payment": [b"Card"], "fare": [4.0], "tips": [0.0]},
    {"miles": [5.0], "hour": [0], "payment": [b"Cash"], "fare": [20.0], "tips": [6.0]},
]


def tiny_config():
    from config import parse_config

    return parse_config({
        "name": "tiny", "task": "binary",
        "data": {"path": "/unused"},
        "schema": {"source": "inferred"},
        "features": [
            {"name": "miles", "kind": "numeric"},
            {"name": "hour", "kind": "categorical_int", "num_values": 3},
            {"name": "payment", "kind": "categorical_string"},
            {"name": "fare", "kind": "numeric", "default": 0.0},
        ],
        "label": {"name": "big_tipper", "column": "tips", "rule": "fraction_of_column_above",
                  "of_column": "fare", "threshold": 0.2},
        "training": {"epochs": 1, "batch_size": 4, "hidden_units": [4], "embedding_dim": 2},
        "evaluation": {"thresholds": {"auc": 0.5}},
    })


def build_tfxline_export(path: Path, work: Path) -> Path:
    """The Trainer's export of a model trained one epoch on six rows, through the same modules
    the pipeline runs (Transform's preprocessing_fn, build_model, export_model)."""
    import tensorflow as tf
    import tensorflow_transform as tft
    import tensorflow_transform.beam as tft_beam
    from tensorflow_transform.tf_metadata import dataset_metadata, metadata_io

    from pipeline.pipeline import TRANSFORM_AS_TF1_GRAPH
    from trainer import preprocessing
    from trainer.export import export_model
    from trainer.model import build_model

    config = tiny_config()
    custom_config = {"config": config.to_custom_config()}
    raw_spec = {name: tf.io.VarLenFeature(dtype) for name, dtype in (
        ("miles", tf.float32), ("hour", tf.int64), ("payment", tf.string), ("fare", tf.float32),
        ("tips", tf.float32))}
    metadata = dataset_metadata.DatasetMetadata.from_feature_spec(raw_spec)
    with tft_beam.Context(temp_dir=str(work / "tmp"), force_tf_compat_v1=TRANSFORM_AS_TF1_GRAPH):
        transform_fn = (TINY_ROWS, metadata) | tft_beam.AnalyzeDataset(
            lambda inputs: preprocessing.preprocessing_fn(inputs, custom_config))
        _ = transform_fn | tft_beam.WriteTransformFn(str(work / "transform_fn"))
    # As Transform's component does: the raw schema next to the Transform graph.
    metadata_io.write_metadata(metadata, str(work / "transform_fn" / tft.TFTransformOutput.RAW_METADATA_DIR))
    tft_output = tft.TFTransformOutput(str(work / "transform_fn"))
    layer = tft_output.transform_features_layer()
    raw = tf.io.parse_example(tiny_examples(), tft_output.raw_feature_spec())
    transformed = layer(raw)
    label = transformed.pop(config.label.name)
    model = build_model(config, tft_output)
    model.fit(tf.data.Dataset.from_tensors((transformed, label)), epochs=1, verbose=0)
    export_model(model, tft_output, layer, config, str(path))
    return path


def tiny_examples() -> list:
    """TINY_ROWS as serialized tf.Examples (an empty list is a missing value)."""
    import tensorflow as tf

    serialized = []
    for row in TINY_ROWS:
        example = tf.train.Example()
        for name, values in row.items():
            if not values:
                continue
            feature = example.features.feature[name]
            if isinstance(values[0], bytes):
                feature.bytes_list.value.extend(values)
            elif isinstance(values[0], float):
                feature.float_list.value.extend(values)
            else:
                feature.int64_list.value.extend(values)
        serialized.append(example.SerializeToString())
    return serialized


def example(**features) -> bytes:
    """One serialized tf.Example: floats, ints and strings (str or bytes) by Python type."""
    import tensorflow as tf

    proto = tf.train.Example()
    for name, value in features.items():
        values = value if isinstance(value, (list, tuple, np.ndarray)) else [value]
        feature = proto.features.feature[name]
        if isinstance(values[0], (str, bytes)):
            feature.bytes_list.value.extend(v.encode() if isinstance(v, str) else v for v in values)
        elif isinstance(values[0], (float, np.floating)):
            feature.float_list.value.extend(float(v) for v in values)
        else:
            feature.int64_list.value.extend(int(v) for v in values)
    return proto.SerializeToString()


def public_call(path: Path):
    """The model's own answers: its signatures called through tf.saved_model.load, the public
    signature call."""
    import tensorflow as tf

    loaded = tf.saved_model.load(str(path))

    def run(signature_name: str, **inputs):
        function = loaded.signatures[signature_name]
        specs = function.structured_input_signature[1]
        tensors = {alias: tf.constant(value, dtype=specs[alias].dtype) for alias, value in inputs.items()}
        return {alias: value.numpy() for alias, value in function(**tensors).items()}

    return run
