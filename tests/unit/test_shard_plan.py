"""tools/shard_plan.py: Prometheus' hashmod, checked against a real Prometheus.

The authority is Prometheus itself: test_predictions_match_a_real_prometheus
runs the mirror's prometheus binary ($PROMETHEUS or
/var/cache/monstack/bin/prometheus, from tools/build_mirror.py) on loopback
with file_sd targets and one job per (shard count, shard) using the
prometheus role's relabelling, and compares its active and dropped targets
with shard_of(). Skipped, with the reason, when there is no binary.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))

import shard_plan  # noqa: E402


def find_prometheus() -> str | None:
    for candidate in (os.environ.get("PROMETHEUS"), "/var/cache/monstack/bin/prometheus"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


PROMETHEUS = find_prometheus()


@pytest.mark.skipif(PROMETHEUS is None, reason="no prometheus binary at $PROMETHEUS or "
                    "/var/cache/monstack/bin/prometheus (tools/build_mirror.py puts one there)")
def test_predictions_match_a_real_prometheus():
    result = shard_plan.verify(PROMETHEUS, 300, moduli=(2, 3, 8))
    assert result["checked"] == 300 * (2 + 3 + 8)
    assert result["active"] == 300 * 3, result  # every target active in exactly one shard per count
    assert result["wrong"] == [], result["wrong"][:10]


def test_the_role_relabels_as_the_script_hashes():
    """The role's relabelling is the one shard_of() models: hashmod of the source labels, keep the shard."""
    text = (ROOT / "roles" / "prometheus" / "vars" / "main.yml").read_text()
    block = text[text.index("prometheus_shard_relabel_configs:"):]
    block = block[:block.index("\n# ")]
    assert "'action': 'hashmod'" in block and "'action': 'keep'" in block
    assert "prometheus_shard_source_labels" in block and "'separator'" not in block  # default ";"
    defaults = yaml.safe_load((ROOT / "roles" / "prometheus" / "defaults" / "main" / "main.yml").read_text())
    assert defaults["prometheus_shard_source_labels"] == ["__address__"]
    assert defaults["prometheus_shard"] == -1


def test_one_shard_takes_everything_and_values_join_with_semicolons():
    assert {shard_plan.shard_of(f"10.0.0.{i}:9100", 1) for i in range(50)} == {0}
    assert shard_plan.shard_of(["a", "b"], 7) == shard_plan.shard_of("a;b", 7)
    assert shard_plan.shard_of(["a", "b"], 7, separator="|") == shard_plan.shard_of("a|b", 7)
    with pytest.raises(ValueError, match="modulus must be at least 1"):
        shard_plan.shard_of("x", 0)


def test_spread_counts_every_target_once():
    for modulus in (2, 4, 8):
        result = shard_plan.spread(1000, modulus)
        assert sum(result["sizes"]) == 1000 and len(result["sizes"]) == modulus
        assert result["max_over_even_pct"] < 20
        assert 0 < result["moved_to_next_pct"] < 100


def test_plan_of_file_sd_files(tmp_path):
    (tmp_path / "a.yml").write_text(yaml.safe_dump([{"targets": ["h1:9100", "h2:9100"], "labels": {"env": "x"}}]))
    (tmp_path / "b.json").write_text(json.dumps([{"targets": ["h3:8000"]}]))
    targets = shard_plan.file_sd_targets([tmp_path / "a.yml", tmp_path / "b.json"])
    assert [t["__address__"] for t in targets] == ["h1:9100", "h2:9100", "h3:8000"]
    plan = shard_plan.plan(targets, 3)
    assert plan == {a: shard_plan.shard_of(a, 3) for a in ("h1:9100", "h2:9100", "h3:8000")}
    by_env = shard_plan.plan(targets, 3, ("__address__", "env"))
    assert by_env["h1:9100"] == shard_plan.shard_of("h1:9100;x", 3)
    assert by_env["h3:8000"] == shard_plan.shard_of("h3:8000;", 3)  # a missing label is ""


def test_command_line(capsys, tmp_path):
    (tmp_path / "t.yml").write_text(yaml.safe_dump([{"targets": ["h1:9100"]}]))
    assert shard_plan.main([str(tmp_path / "t.yml"), "--shards", "2"]) == 0
    out = capsys.readouterr().out
    assert f"{shard_plan.shard_of('h1:9100', 2)}\th1:9100" in out
    assert shard_plan.main(["--spread", "100", "--shards", "2"]) == 0
    assert "| 100 | 2 |" in capsys.readouterr().out
