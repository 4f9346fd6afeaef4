"""Small worker pieces: error parsing, PNG metadata stripping, message scrubbing, policy."""

from __future__ import annotations

import io

import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from stillhouse.schemas.graph import ComfyGraph
from stillhouse.schemas.worker_io import ErrorInfo, parse_error
from worker.errors import JobFailure, scrub
from worker.policy import allowed_nodes, enforce, job_folder
from worker.uploads import strip_png_metadata


def test_errors_are_read_from_json_text_dicts_or_runpod_prose() -> None:
    info = ErrorInfo(type="node_error", message="OOM", node_id="3", retryable=True)
    assert parse_error(info.model_dump_json()) == info
    assert parse_error(info.model_dump()) == info
    prose = parse_error("job timed out after 600 s")
    assert prose.type == "backend_error" and prose.retryable


def test_png_text_chunks_go_and_pixels_stay() -> None:
    image = Image.new("RGB", (48, 32), (10, 200, 30))
    info = PngInfo()
    info.add_text("prompt", '{"secret graph": 1}')
    info.add_text("workflow", "{}")
    out = io.BytesIO()
    image.save(out, format="PNG", pnginfo=info)
    clean, width, height = strip_png_metadata(out.getvalue())
    assert (width, height) == (48, 32)
    assert b"secret graph" not in clean and b"tEXt" not in clean
    with Image.open(io.BytesIO(clean)) as reread:
        assert reread.size == (48, 32) and reread.getpixel((5, 5)) == (10, 200, 30)
        assert reread.info == {}
    with pytest.raises(ValueError, match="corrupt"):
        strip_png_metadata(out.getvalue()[:-5] + b"XXXXX")


def test_host_paths_are_scrubbed_from_messages() -> None:
    text = scrub("cannot open /opt/ComfyUI/models/checkpoints/x.safetensors: no such file")
    assert text == "cannot open <path>: no such file"
    assert scrub("value 0.5/1.0 out of range") == "value 0.5/1.0 out of range"
    assert JobFailure("x", "y" * 5000, retryable=False).info.message == "y" * 1000


def test_policy_refuses_unknown_nodes_and_owns_the_output_names() -> None:
    graph = ComfyGraph.model_validate(
        {
            "1": {"class_type": "LoadImage", "inputs": {"image": "a.png"}},
            "9": {
                "class_type": "SaveImage",
                "inputs": {"images": ["1", 0], "filename_prefix": "../../etc/evil"},
            },
        }
    )
    folder = job_folder("job42")
    safe = enforce(graph, allowed_nodes(""), folder)
    prefix = safe.root["9"].inputs["filename_prefix"]
    assert prefix == f"{folder}/img" and prefix.startswith("stillhouse/job42-")
    assert ".." not in prefix and job_folder("job42") != folder, "a folder per attempt"
    assert graph.root["9"].inputs["filename_prefix"] == "../../etc/evil", "input graph untouched"
    with pytest.raises(JobFailure, match="LoadImage"):
        enforce(graph, allowed_nodes("SaveImage"), folder)


def test_a_preview_node_from_comfyuis_ui_is_saved_into_the_jobs_folder() -> None:
    graph = ComfyGraph.model_validate(
        {
            "1": {"class_type": "LoadImage", "inputs": {"image": "a.png"}},
            "9": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}},
        }
    )
    safe = enforce(graph, allowed_nodes(""), "stillhouse/job7-ab")
    assert safe.root["9"].class_type == "SaveImage"
    assert safe.root["9"].inputs == {
        "images": ["1", 0],
        "filename_prefix": "stillhouse/job7-ab/img",
    }
