"""The catalog: the shipped workflows come with the package, wherever it is installed; an
operator's own folder adds workflows or replaces shipped ones by name; a broken file is
reported and hides nothing else."""

from __future__ import annotations

import fnmatch
import shutil
import tomllib
from pathlib import Path

import pytest

from stillhouse.config import make_settings
from stillhouse.workflows.loader import Origin, WorkflowCatalog, shipped_workflows

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = Path(str(shipped_workflows()))
SHIPPED_NAMES = sorted(p.stem for p in SHIPPED.glob("*.toml"))


def own_copy(folder: Path, shipped: str, name: str, title: str) -> None:
    """A workflow in `folder`: a shipped one's graph and manifest under another title."""
    manifest = (SHIPPED / f"{shipped}.toml").read_text()
    original = tomllib.loads(manifest)["title"]
    (folder / f"{name}.toml").write_text(manifest.replace(original, title, 1))
    shutil.copy(SHIPPED / f"{shipped}.json", folder / f"{name}.json")


def test_with_no_folder_set_every_shipped_workflow_loads() -> None:
    catalog = WorkflowCatalog.load()
    assert len(SHIPPED_NAMES) >= 6
    assert catalog.names() == SHIPPED_NAMES
    assert catalog.problems == []
    assert {w.origin for w in catalog.workflows.values()} == {Origin.SHIPPED}
    assert catalog.summary() == f"{len(SHIPPED_NAMES)} loaded: {len(SHIPPED_NAMES)} shipped"


def test_every_shipped_workflow_file_is_declared_package_data() -> None:
    # Without this a wheel installs no workflows and `stillhouse up` serves none.
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["stillhouse"]
    files = [p for p in SHIPPED.iterdir() if p.suffix in (".toml", ".json")]
    assert len(files) == 2 * len(SHIPPED_NAMES)
    for path in files:
        relative = f"workflows/{SHIPPED.name}/{path.name}"
        assert any(fnmatch.fnmatch(relative, p) for p in patterns), relative


def test_your_folder_adds_workflows_and_replaces_shipped_ones_by_name(tmp_path: Path) -> None:
    own_copy(tmp_path, "sd15-txt2img", "sd15-txt2img", "Our house style")
    own_copy(tmp_path, "sd15-txt2img", "house-lighthouse", "Lighthouses only")

    catalog = WorkflowCatalog.load(tmp_path)

    assert catalog.problems == []
    assert catalog.names() == sorted([*SHIPPED_NAMES, "house-lighthouse"])
    replaced = catalog.get("sd15-txt2img")
    assert replaced.manifest.title == "Our house style" and replaced.origin is Origin.FOLDER
    assert replaced.source == str(tmp_path / "sd15-txt2img.toml")
    assert catalog.get("house-lighthouse").origin is Origin.FOLDER
    assert catalog.get("upscale-2x").origin is Origin.SHIPPED
    assert catalog.replaced == ["sd15-txt2img"]
    assert catalog.summary() == (
        f"{len(SHIPPED_NAMES) + 1} loaded: {len(SHIPPED_NAMES) - 1} shipped, 2 from {tmp_path}, "
        "replacing the shipped sd15-txt2img"
    )


def test_a_broken_file_in_your_folder_is_reported_and_the_shipped_one_stays(
    tmp_path: Path,
) -> None:
    (tmp_path / "sd15-txt2img.toml").write_text('title = "unfinished')
    own_copy(tmp_path, "upscale-2x", "house-upscale", "Our upscale")
    (tmp_path / "orphan.toml").write_text((SHIPPED / "upscale-2x.toml").read_text())

    catalog = WorkflowCatalog.load(tmp_path)

    assert catalog.names() == sorted([*SHIPPED_NAMES, "house-upscale"])
    assert catalog.get("sd15-txt2img").origin is Origin.SHIPPED
    [orphan, broken] = catalog.problems  # in file-name order
    assert broken.startswith(f"{tmp_path / 'sd15-txt2img.toml'}: not valid TOML")
    assert broken.endswith("(the shipped sd15-txt2img stays)")
    assert orphan == f"{tmp_path / 'orphan.toml'}: graph file orphan.json not found"


def test_a_graph_outside_the_manifests_folder_is_refused(tmp_path: Path) -> None:
    manifest = (SHIPPED / "upscale-2x.toml").read_text()
    (tmp_path / "escape.toml").write_text(f'graph = "../upscale-2x.json"\n{manifest}')

    [problem] = WorkflowCatalog.load(tmp_path).problems

    assert problem == f"{tmp_path / 'escape.toml'}: graph '../upscale-2x.json' must lie beside it"


def test_a_missing_folder_is_a_problem_and_the_shipped_ones_still_load(tmp_path: Path) -> None:
    catalog = WorkflowCatalog.load(tmp_path / "nowhere")
    assert catalog.problems == [f"{tmp_path / 'nowhere'}: workflows folder not found"]
    assert catalog.names() == SHIPPED_NAMES


def test_an_empty_workflows_dir_setting_means_no_folder_of_your_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("STILLHOUSE_WORKFLOWS__DIR", "")
    assert make_settings().workflows.dir is None
