"""The committed deploy/grafana output is what the dashboard code generates, and its provisioning files
agree with the dashboards (datasource uid, folder, path)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from dashboards import house
from dashboards.__main__ import main
from dashboards.generate import (
    DASHBOARD_NAMES,
    DATASOURCES_FILE,
    GRAFANA_DASHBOARDS_PATH,
    KUSTOMIZATION_FILE,
    PROVIDERS_FILE,
    Provisioning,
    dashboards,
    differences,
    output_files,
)
from dashboards.proof import iter_panels, iter_variable_queries

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "deploy" / "grafana"


def test_committed_output_is_up_to_date() -> None:
    problems = differences(COMMITTED, output_files(Provisioning()))
    assert not problems, (
        "deploy/grafana is out of date; run: python -m dashboards build --out deploy/grafana\n"
        + "\n".join(problems)
    )


def test_output_is_deterministic() -> None:
    assert output_files(Provisioning()) == output_files(Provisioning())


def test_every_dashboard_has_one_json_file() -> None:
    files = output_files(Provisioning())
    assert sorted(path for path in files if path.endswith(".json")) == sorted(
        f"dashboards/{name}.json" for name in DASHBOARD_NAMES
    )


def _yaml(relative: str) -> dict[str, Any]:
    loaded = yaml.safe_load((COMMITTED / relative).read_text())
    assert isinstance(loaded, dict)
    return loaded


def test_datasource_file_defines_the_datasource_every_panel_names() -> None:
    (datasource,) = _yaml(DATASOURCES_FILE)["datasources"]
    assert datasource["uid"] == house.DATASOURCE_UID
    assert datasource["type"] == "influxdb"
    assert datasource["url"] == "http://influxdb:8086"
    assert datasource["access"] == "proxy"
    assert datasource["database"] == datasource["jsonData"]["dbName"] == "kpulse"
    assert datasource["jsonData"]["version"] == "InfluxQL"
    assert datasource["jsonData"]["timeInterval"] == "10s"
    named = {house.DATASOURCE_UID}
    for dashboard in dashboards().values():
        for panel in iter_panels(dashboard):
            if panel["type"] != "row":
                assert {panel["datasource"]["uid"]} == named
                assert {target["datasource"]["uid"] for target in panel["targets"]} == named
        for variable in dashboard["templating"]["list"]:
            assert variable["datasource"]["uid"] in named
        assert iter_variable_queries(dashboard)


def test_provider_file_reads_the_dashboard_folder_into_the_kpulse_folder() -> None:
    (provider,) = _yaml(PROVIDERS_FILE)["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == GRAFANA_DASHBOARDS_PATH
    assert provider["folderUid"] == house.FOLDER_UID
    assert provider["allowUiUpdates"] is False


def test_build_writes_every_file_and_check_spots_changes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["build", "--out", str(tmp_path)]) == 0
    for relative, text in output_files(Provisioning()).items():
        assert (tmp_path / relative).read_text() == text
    assert main(["build", "--out", str(tmp_path), "--check"]) == 0

    (tmp_path / "dashboards" / "pod.json").write_text("{}\n")
    (tmp_path / "dashboards" / "old.json").write_text("{}\n")
    (tmp_path / PROVIDERS_FILE).unlink()
    capsys.readouterr()
    assert main(["build", "--out", str(tmp_path), "--check"]) == 1
    errors = capsys.readouterr().err
    assert "dashboards/pod.json: out of date" in errors
    assert "dashboards/old.json: not generated" in errors
    assert f"{PROVIDERS_FILE}: missing" in errors


def test_build_options_change_only_the_datasource(tmp_path: Path) -> None:
    assert (
        main(["build", "--out", str(tmp_path), "--influx-url", "http://db:8086", "--database", "metrics"])
        == 0
    )
    (datasource,) = yaml.safe_load((tmp_path / DATASOURCES_FILE).read_text())["datasources"]
    assert datasource["url"] == "http://db:8086"
    assert datasource["jsonData"]["dbName"] == "metrics"
    problems = differences(tmp_path, output_files(Provisioning()))
    assert problems == [f"{DATASOURCES_FILE}: out of date"]


def test_kustomization_turns_every_generated_file_into_a_configmap() -> None:
    generators = _yaml(KUSTOMIZATION_FILE)["configMapGenerator"]
    listed = [path for generator in generators for path in generator["files"]]
    generated = sorted(path for path in output_files(Provisioning()) if path != KUSTOMIZATION_FILE)
    assert sorted(listed) == generated
    names = [generator["name"] for generator in generators]
    assert len(names) == len(set(names))
    assert {f"grafana-dashboard-{name}" for name in DASHBOARD_NAMES} <= set(names)
