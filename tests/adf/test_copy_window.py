"""adf/pipeline/pl_copy_window.json, run by Microsoft's ADF evaluator over manifests the app landed.

The downstream example must read exactly the parts a published manifest lists, from the
generation folder it names, in the dataset of the window's format, after `_SUCCESS`: each Copy
activity's evaluated source is compared with the landed blobs.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from localcloud.stack import orders_source

from fixtures import App

ROOT = Path(__file__).resolve().parents[2]
ADF = ROOT / "adf"
PREFIX = "dev/orders/20240101T000000Z_20240101T010000Z"

Framework = Callable[[Path], Any]


def _value(element: Any) -> Any:
    return getattr(element, "result", element)


Run = tuple[list[str], dict[str, str], list[Any]]


def copy_window(framework: Framework, manifest: dict[str, Any]) -> Run:
    """The activities run, the marker awaited, and (source dataset, source path, sink file) per Copy."""
    from data_factory_testing_framework.state import DependencyCondition, RunParameter, RunParameterType

    test_framework = framework(ADF)
    pipeline = test_framework.get_pipeline_by_name("pl_copy_window")
    arguments = [
        RunParameter(RunParameterType.Pipeline, "container", manifest["container"]),
        RunParameter(RunParameterType.Pipeline, "windowFolder", manifest["prefix"]),
        RunParameter(RunParameterType.Pipeline, "sinkFolder", "orders/2024-01-01T00"),
    ]
    path: list[str] = []
    marker: dict[str, str] = {}
    copies: list[Any] = []
    for activity in test_framework.evaluate_pipeline(pipeline, arguments):
        path.append(activity.name)
        if activity.type == "Validation":
            marker = {k: _value(v) for k, v in activity.type_properties["dataset"]["parameters"].items()}
        elif activity.type == "Lookup":
            assert marker, "the manifest is read only after _SUCCESS is awaited"
            activity.set_result(DependencyCondition.Succeeded, {"firstRow": manifest})
        elif activity.type == "Copy":
            (source,) = activity.all_properties["inputs"]
            (sink,) = activity.all_properties["outputs"]
            given = {k: _value(v) for k, v in source["parameters"].items()}
            assert given["container"] == manifest["container"]
            copies.append(
                (
                    source["referenceName"],
                    f"{given['folderPath'].rstrip('/')}/{given['fileName']}",
                    _value(sink["parameters"]["fileName"]),
                )
            )
    return path, marker, copies


def test_a_parquet_window_is_copied_part_by_part_from_the_manifest(
    app: App, adf_framework: Framework
) -> None:
    app.write_sources(orders=orders_source(app.stack.cloud.gateway_url, output={"format": "parquet"}))
    assert app.ingest().runtime_status == "Completed"
    assert app.ingest(mode="replace").runtime_status == "Completed"  # generation 2, in gen-0002/
    manifest = app.landing.read_json(f"{PREFIX}/_manifest.json")
    assert manifest is not None and manifest["generationFolder"] == "gen-0002/"

    path, marker, copies = copy_window(adf_framework, manifest)

    assert path[:2] == ["Wait for _SUCCESS", "Read manifest"]
    assert marker == {"container": manifest["container"], "folderPath": PREFIX, "fileName": "_SUCCESS"}
    listed = [f"{PREFIX}/{part['name']}" for part in manifest["parts"]]
    assert sorted(c[1] for c in copies) == sorted(listed), "exactly the listed parts, each once"
    assert {c[0] for c in copies} == {"ds_landing_parquet"}
    assert all(app.landing.exists(c[1]) for c in copies)
    assert sorted(c[2] for c in copies) == sorted(name.rsplit("/", 1)[-1] for name in listed)


def test_a_json_lines_window_is_converted_from_its_gzip_parts(app: App, adf_framework: Framework) -> None:
    assert app.ingest().runtime_status == "Completed"
    manifest = app.landing.read_json(f"{PREFIX}/_manifest.json")
    assert manifest is not None
    manifest.pop("format")  # a manifest from before output formats says nothing: JSON Lines

    _, _, copies = copy_window(adf_framework, manifest)

    assert sorted(c[1] for c in copies) == sorted(f"{PREFIX}/{p['name']}" for p in manifest["parts"])
    assert {c[0] for c in copies} == {"ds_landing_jsonl"}
    assert all(c[2].endswith(".parquet") and not c[2].endswith(".jsonl.gz") for c in copies)
