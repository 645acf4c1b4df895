"""Publishing versions into TF Serving's layout."""
import os

from serving import layout


def _model(path, content=b"graph"):
    (path / "variables").mkdir(parents=True)
    (path / "saved_model.pb").write_bytes(content)
    (path / "variables" / "variables.index").write_bytes(b"index")
    return path


def test_publish_renames_a_complete_copy_into_an_integer_version(tmp_path):
    model = _model(tmp_path / "model")
    base = tmp_path / "serving" / "taxi"
    version = layout.publish_saved_model(str(model), str(base), now=1700000000.7)
    assert version == "1700000000"
    assert sorted(os.listdir(base)) == ["1700000000"]
    assert (base / version / "saved_model.pb").read_bytes() == b"graph"
    assert (base / version / "variables" / "variables.index").exists()


def test_versions_always_increase_even_within_one_second(tmp_path):
    base = tmp_path / "serving"
    first = layout.publish_saved_model(str(_model(tmp_path / "a", b"one")), str(base), now=1000.0)
    second = layout.publish_saved_model(str(_model(tmp_path / "b", b"two")), str(base), now=1000.2)
    assert (first, second) == ("1000", "1001")
    assert layout.versions(str(base)) == [1000, 1001]
    assert layout.next_version(str(base), now=5.0) == 1002


def test_the_same_model_is_not_published_twice(tmp_path):
    base = tmp_path / "serving"
    model = _model(tmp_path / "model")
    assert layout.publish_saved_model(str(model), str(base), now=1000.0) == "1000"
    assert layout.publish_saved_model(str(model), str(base), now=2000.0) == "1000"
    assert os.listdir(base) == ["1000"]


def test_non_version_entries_are_ignored(tmp_path):
    base = tmp_path / "serving"
    (base / ".incoming-5").mkdir(parents=True)
    (base / "models.config").mkdir()
    assert layout.versions(str(base)) == []
