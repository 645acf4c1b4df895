"""The review's parts that need no pipeline run: reading TFMA's files, the charts, the model card's
human parts and the privacy filter."""
import os
import subprocess
import sys
import xml.etree.ElementTree as ElementTree

import pytest
import tensorflow as tf
import yaml

from review import data, model_card, svg, tfma_outputs


def test_tfrecords_are_read_as_tensorflow_writes_them(tmp_path):
    path = str(tmp_path / "metrics-00000-of-00001.tfrecord")
    records = [b"", b"a", os.urandom(70000), b"last"]
    with tf.io.TFRecordWriter(path) as writer:
        for record in records:
            writer.write(record)
    assert list(tfma_outputs.tfrecords([path])) == records
    with open(path, "rb") as handle:
        content = handle.read()
    (tmp_path / "cut.tfrecord").write_bytes(content[:-10])
    with pytest.raises(ValueError, match="truncated"):
        list(tfma_outputs.tfrecords([str(tmp_path / "cut.tfrecord")]))


READ_PROTOS = """
import sys
from review import tfma_outputs
pb = tfma_outputs.protos()
record = pb.metrics_for_slice_pb2.MetricsForSlice()
record.metric_keys_and_values.add().key.name = "auc"
print("tensorflow" in sys.modules, "tensorflow_model_analysis" in sys.modules)
import tensorflow_model_analysis as tfma
from tensorflow_model_analysis.proto import metrics_for_slice_pb2
print(isinstance(record, metrics_for_slice_pb2.MetricsForSlice), callable(tfma.load_metrics))
"""


@pytest.mark.parametrize("switch, imported", [("1", "False False"), ("-review-tfma-protos", "True True")])
def test_tfmas_protos_load_without_tfma_and_tfma_still_imports_after(switch, imported):
    result = subprocess.run([sys.executable, "-c", READ_PROTOS], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "TFXLINE_SPEEDUPS": switch, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.split("\n")
    assert lines[0] == imported and lines[1] == "True True"


def parse_svg(markup: str) -> ElementTree.Element:
    root = ElementTree.fromstring(markup)
    assert root.tag.endswith("svg") and root.find("{http://www.w3.org/2000/svg}title").text
    assert "script" not in markup and "href=\"http" not in markup
    return root


def test_every_chart_is_well_formed_svg_without_scripts():
    series = [{"label": "candidate", "color": svg.CANDIDATE, "points": [(0, 0), (0.2, 0.7), (1, 1)]},
              {"label": "baseline <b>", "color": svg.BASELINE, "dashed": True, "points": [(0, 0), (1, float("nan"))]}]
    parse_svg(svg.line_chart("ROC & more", series, "x", "y", diagonal=True, markers=True))
    parse_svg(svg.matrix_chart("m", ["label 0", "label 1"], ["p0", "p1"], [[5, 1], [0, 12345]], "a", "p"))
    parse_svg(svg.bar_chart("b", [("hour=1", -0.2), ("hour=<2>", 0.4)], "residual"))
    parse_svg(svg.interval_chart("i", [("A", 0.4, [0.3, 0.5], True), ("B", None, None, False)], "rate"))
    parse_svg(svg.decile_strip("d", [1, 2, 3, 4, 5, 6, 7, 8, 9]))
    nodes = [{"artifact_id": i, "label": f"n{i}", "details": ["#1"], "role": ""} for i in range(1, 5)]
    root = parse_svg(svg.lineage_graph("l", nodes, [{"source": 1, "target": 2}, {"source": 2, "target": 3}],
                                       [(3, 4)]))
    boxes = root.findall("{http://www.w3.org/2000/svg}rect")
    xs = sorted(float(box.get("x")) for box in boxes)
    assert len(boxes) == 4 and xs == sorted(set(xs))  # a chain: each node one layer further right


def test_the_model_card_template_is_all_placeholders(tmp_path):
    path = tmp_path / "card.yaml"
    path.write_text(model_card.template())
    human = model_card.load_human_parts(str(path))
    assert set(human) == set(model_card.HUMAN_PARTS)
    assert all(model_card.is_placeholder(value) for fields in human.values() for value in fields.values())
    assert model_card.load_human_parts(str(tmp_path / "missing.yaml")) == {}
    assert not model_card.is_placeholder("the tfxline maintainers")


@pytest.mark.parametrize("content, problem", [
    ("model_details: {owner: me}\n", "unknown field(s) ['owner'] in 'model_details'"),
    ("purpose: {x: y}\n", "unknown section 'purpose'"),
    ("model_details: [a, b]\n", "'model_details' must map field names to text"),
    ("model_details: {developers: [unclosed\n", "is not valid YAML"),
])
def test_a_bad_model_card_yaml_is_one_line(tmp_path, content, problem):
    path = tmp_path / "card.yaml"
    path.write_text(content)
    with pytest.raises(model_card.CardError) as error:
        model_card.load_human_parts(str(path))
    assert problem in str(error.value) and "\n" not in str(error.value)


def test_the_shipped_taxi_card_has_no_placeholders():
    from config import load_config

    human = model_card.load_human_parts(load_config().review.model_card)
    missing = [f"{section}.{name}" for section, fields in model_card.HUMAN_PARTS.items() for name in fields
               if model_card.is_placeholder(human.get(section, {}).get(name))]
    assert missing == []


def test_markdown_front_matter_is_yaml_with_the_hugging_face_keys():
    card = {"front_matter": {"license": "apache-2.0", "library_name": "tensorflow", "tags": ["tfx"],
                             "datasets": ["simple"], "metrics": ["auc"],
                             "model-index": [{"name": "taxi", "results": []}]},
            "sections": [{"id": "model_details", "title": "Model details",
                          "fields": [{"name": "name", "value": "taxi", "source": "config"}]}],
            "placeholders": [], "human_parts_file": "x"}
    text = model_card.markdown(card)
    assert text.startswith("---\n")
    front = yaml.safe_load(text.split("---\n")[1])
    assert {"license", "library_name", "tags", "datasets", "metrics", "model-index"} <= set(front)
    assert "## Model details" in text and "- **name**: taxi" in text


def test_rare_values_are_redacted_and_only_common_ones_allowed():
    values = data.ValueFilter({"train": {"company": {"Big Cab": 40, "Tiny Cab": 3}},
                               "eval": {"company": {"Big Cab": 12, "Tiny Cab": 11}}}, min_count=10)
    assert values.allows("company", "Big Cab") and not values.allows("company", "Tiny Cab")
    text = values.redact("values missing from the schema: Tiny Cab (~1%), Big Cab")
    assert "Tiny Cab" not in text and "Big Cab" in text and "fewer than 10 examples" in text
