"""`tfxline release`: canary, promote, rollback and status on a serving directory with fake versions."""
import json
import os

import pytest

from pipeline import cli
from serving import model_config, release
from serving.model_config import read_model_server_config
from serving.release_state import write_serving_configs


@pytest.fixture
def serving(tmp_path):
    """Versions 100, 200 and 300 on disk; 100 pushed first (stable)."""
    directory = tmp_path / "serving"
    for version in (100, 200, 300):
        (directory / "taxi" / str(version) / "variables").mkdir(parents=True)
        (directory / "taxi" / str(version) / "saved_model.pb").write_bytes(b"graph")
    write_serving_configs(str(directory), "taxi", 100)
    return directory


def run(serving, *args):
    return release.main([*args, "--serving-dir", str(serving)])


def labels_and_loaded(serving):
    """(labels, loaded versions) from models.config, after checking models.local.config agrees."""
    container = model_config.find_model(read_model_server_config(str(serving / "models.config")), "taxi")
    local = model_config.find_model(read_model_server_config(str(serving / "models.local.config")), "taxi")
    assert local.base_path == str(serving / "taxi")
    local.base_path = container.base_path
    assert local == container
    return dict(container.version_labels), list(container.model_version_policy.specific.versions)


def history(serving):
    return json.loads((serving / "release_history.json").read_text())["taxi"]


def error_line(capsys):
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("tfxline release: ") and "; " in err, err
    return err


def test_canary_points_at_a_version_on_disk(serving, capsys):
    assert run(serving, "canary", "200") == 0
    assert labels_and_loaded(serving) == ({"stable": 100, "canary": 200}, [100, 200])
    assert "canary 200" in capsys.readouterr().out
    assert [(event["action"], event["version"]) for event in history(serving)["events"]] == [
        ("push", 100), ("canary", 200)]


def test_promote_moves_stable_to_the_canary_and_keeps_the_old_stable_loaded(serving):
    run(serving, "canary", "200")
    assert run(serving, "promote") == 0
    # 100 stays loaded: TF Serving moves a label only onto a loaded version, so a rollback needs it.
    assert labels_and_loaded(serving) == ({"stable": 200}, [100, 200])
    assert history(serving)["stable_versions"] == [100, 200]
    assert history(serving)["events"][-1]["labels"] == {"stable": 200}


def test_rollback_returns_stable_to_the_previous_stable_and_then_runs_out(serving, capsys):
    run(serving, "canary", "200")
    run(serving, "promote")
    run(serving, "canary", "300")
    run(serving, "promote")
    assert labels_and_loaded(serving) == ({"stable": 300}, [200, 300])

    assert run(serving, "rollback") == 0
    assert labels_and_loaded(serving) == ({"stable": 200}, [100, 200])
    assert run(serving, "rollback") == 0
    assert labels_and_loaded(serving) == ({"stable": 100}, [100])
    capsys.readouterr()
    assert run(serving, "rollback") == 1
    assert "nothing to roll back to" in error_line(capsys)
    assert labels_and_loaded(serving) == ({"stable": 100}, [100])
    assert [event["action"] for event in history(serving)["events"]][-2:] == ["rollback", "rollback"]


def test_rollback_keeps_the_canary(serving):
    run(serving, "canary", "200")
    run(serving, "promote")
    run(serving, "canary", "300")
    run(serving, "rollback")
    assert labels_and_loaded(serving) == ({"stable": 100, "canary": 300}, [100, 300])


def test_rollback_without_an_earlier_stable_is_an_error(serving, capsys):
    assert run(serving, "rollback") == 1
    assert "nothing to roll back to" in error_line(capsys)


def test_rollback_to_a_deleted_version_is_an_error_and_changes_nothing(serving, capsys):
    run(serving, "canary", "200")
    run(serving, "promote")
    os.rename(serving / "taxi" / "100", serving / "taxi" / "deleted-100")
    before = (serving / "models.config").read_bytes()
    assert run(serving, "rollback") == 1
    assert "100 is no longer on disk" in error_line(capsys)
    assert (serving / "models.config").read_bytes() == before


def test_clear_canary_drops_the_label_and_unloads_it(serving, capsys):
    run(serving, "canary", "300")
    assert run(serving, "clear-canary") == 0
    assert labels_and_loaded(serving) == ({"stable": 100}, [100])
    capsys.readouterr()
    assert run(serving, "clear-canary") == 1
    assert "there is no canary" in error_line(capsys)


@pytest.mark.parametrize("args, message", [
    (("canary", "999"), "version 999 is not a directory under taxi/; pick one of: 100, 200, 300"),
    (("canary", "100"), "version 100 is already stable"),
    (("promote",), "there is no canary to promote"),
])
def test_label_errors_are_one_line_and_change_nothing(serving, capsys, args, message):
    before = {name: (serving / name).read_bytes() for name in ("models.config", "release_history.json")}
    assert run(serving, *args) == 1
    assert message in error_line(capsys)
    assert {name: (serving / name).read_bytes() for name in before} == before


def test_setting_the_same_canary_twice_is_no_change(serving, capsys):
    run(serving, "canary", "200")
    before = (serving / "release_history.json").read_bytes()
    capsys.readouterr()
    assert run(serving, "canary", "200") == 0
    assert "no change" in capsys.readouterr().out
    assert (serving / "release_history.json").read_bytes() == before


def test_status_shows_labels_versions_and_history(serving, capsys):
    run(serving, "canary", "200")
    capsys.readouterr()
    assert run(serving, "status") == 0
    out = capsys.readouterr().out
    assert "  stable    100\n" in out and "  canary    200\n" in out
    assert "  loaded    100, 200\n" in out
    assert "  on disk   100, 200, 300\n" in out
    assert [line.split()[1:3] for line in out.splitlines() if line.startswith("  20")] == [
        ["push", "100"], ["canary", "200"]]


def test_missing_serving_dir_model_or_broken_config_are_one_line_errors(tmp_path, serving, capsys):
    assert release.main(["status", "--serving-dir", str(tmp_path / "nowhere")]) == 1
    assert "no models.config in" in error_line(capsys)
    assert release.main(["promote", "--serving-dir", str(serving), "--model-name", "other"]) == 1
    assert "model 'other' is not in" in error_line(capsys)
    (serving / "models.config").write_text("model_config_list { config { name: ")
    assert run(serving, "canary", "200") == 1
    assert "Error parsing text-format tensorflow.serving.ModelServerConfig" in error_line(capsys)


@pytest.mark.parametrize("command", [[], ["status"], ["canary"], ["promote"], ["rollback"], ["clear-canary"]])
def test_every_subcommand_has_help(command, capsys):
    with pytest.raises(SystemExit) as exited:
        release.main([*command, "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: tfxline release {' '.join(command)}".rstrip())
    if command:
        assert "--serving-dir" in out and "--model-name" in out


def test_the_tfxline_command_routes_release(serving, capsys):
    assert cli.main(["release", "status", "--serving-dir", str(serving)]) == 0
    assert "  stable    100\n" in capsys.readouterr().out
