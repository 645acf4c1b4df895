"""The shipped alerting rules, checked and unit-tested by Prometheus's own promtool (Debian's `prometheus`
package, .ci/system-packages), against the gauges `tfxline monitor` exports."""
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from monitoring import report as reports

RULES = Path(__file__).resolve().parents[2] / "monitoring" / "prometheus"
PROMTOOL = shutil.which("promtool") or "promtool"


@pytest.fixture(autouse=True, scope="module")
def promtool():
    if not shutil.which("promtool"):
        pytest.fail("promtool is missing: install the Debian package prometheus (make test does, as root)")


def test_rules_are_valid():
    result = subprocess.run([PROMTOOL, "check", "rules", str(RULES / "alerts.yml")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 4 rules found" in result.stdout


def test_rules_pass_their_unit_tests():
    result = subprocess.run([PROMTOOL, "test", "rules", str(RULES / "alerts_test.yml")], capture_output=True,
                            text=True, cwd=RULES)
    assert result.returncode == 0, result.stdout + result.stderr


def test_rules_use_the_metrics_the_monitor_exports():
    exported = set(re.findall(r"^# TYPE (\S+) gauge$", reports.prometheus_text(None, "taxi"), re.M))
    exported |= {name for name, _ in reports.GAUGES} | set(reports.QUALITY_GAUGES)
    used = set(re.findall(r"\b(tfxline_[a-z_]+)\b", (RULES / "alerts.yml").read_text()))
    assert used and used <= exported, used - exported


def test_the_exposition_passes_promtool_check_metrics():
    text = reports.prometheus_text(None, "taxi", up=False, last_run=1.0)
    result = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_live_quality_gauges_pass_promtool_check_metrics():
    from monitoring.monitor import Report
    from monitoring.quality import Estimate, VersionQuality, Window

    window = Window("newest", 500, {"auc": Estimate(0.71, 0.68, 0.74), "log_loss": None}, (3600.0, 7200.0))
    live = VersionQuality(7, 900, [window], {"auc": 0.93}, "its evaluation", "auc", 0.05, True)
    text = reports.prometheus_text(Report("taxi", "log", 900, "w", 0.05, [], quality=[live]), "taxi", last_run=1.0)
    assert 'tfxline_concept_drift{model="taxi",version="7",metric="auc"} 1' in text
    assert 'tfxline_live_metric{model="taxi",version="7",window="newest",metric="auc",bound="low"} 0.68' in text
    result = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr

