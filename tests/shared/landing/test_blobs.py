"""Landing that downstream steps can trust: generations, conditional publication, resume, verify."""

from __future__ import annotations

import hashlib
import json
import threading
from collections import Counter
from typing import Any

import pytest

from localcloud import Fault
from localcloud.stack import orders_source
from shared import runtime
from shared.errors import LandingError
from shared.ingest.activities import finalize, plan_window
from shared.ingest.payloads import FinalizeInput, IngestState
from shared.landing.blobs import Landing
from shared.landing.verify import read_records, verify_window

from fixtures import HOUR, App

PREFIX = "dev/orders/20240101T000000Z_20240101T010000Z"


def ids_in(app: App) -> Counter[str]:
    return Counter(record["id"] for record in read_records(app.landing, PREFIX))


def part_names(app: App) -> list[str]:
    return sorted(n[len(PREFIX) + 1 :] for n in app.landing.list_names(PREFIX) if "part-" in n)


def test_parts_carry_lineage_metadata_and_the_manifest_describes_them(app: App) -> None:
    instance = app.ingest(pipelineRunId="run-lineage", pipelineName="pl_orders_daily")
    assert instance.runtime_status == "Completed"
    manifest = app.landing.read_json(f"{PREFIX}/_manifest.json")
    assert manifest is not None
    assert manifest["pipelineRunId"] == "run-lineage" and manifest["pipelineName"] == "pl_orders_daily"
    assert manifest["roleArn"] == app.stack.cloud.orders_role_arn
    assert manifest["instanceId"] == instance.instance_id
    part = manifest["parts"][0]
    assert set(part) >= {
        "name",
        "records",
        "bytes",
        "sha256",
        "first_request_id",
        "last_request_id",
        "started_at",
        "finished_at",
    }
    blob = app.landing._container.get_blob_client(f"{PREFIX}/{part['name']}").get_blob_properties()
    assert blob.metadata["pipeline_run_id"] == "run-lineage"
    assert blob.metadata["window_from"] == HOUR[0] and blob.metadata["window_to"] == HOUR[1]


def test_replace_lands_a_new_generation_and_drops_replaced_ones_after_the_grace(app: App) -> None:
    app.write_sources(orders=orders_source(app.stack.cloud.gateway_url, output={"keep_replaced_for": "PT0S"}))
    assert app.ingest().runtime_status == "Completed"
    first = part_names(app)
    assert first[0] == "part-00000.jsonl.gz"
    second = app.ingest(mode="replace")
    assert second.runtime_status == "Completed", second.output
    manifest = app.landing.read_json(f"{PREFIX}/_manifest.json")
    assert manifest is not None and manifest["generation"] == 2
    assert all(p["name"].startswith("gen-0002/") for p in manifest["parts"])
    assert [r["generation"] for r in manifest["replaced"]] == [1]
    # Replaced just now: even a zero grace keeps generation 1 until a later publication.
    assert set(first) <= set(part_names(app))
    assert app.ingest(mode="replace").runtime_status == "Completed"
    names = part_names(app)
    assert not any(n in first for n in names), "replaced longer ago than the grace: removed"
    assert {n.split("/")[0] for n in names} == {"gen-0002", "gen-0003"}
    assert verify_window(app.landing, PREFIX).ok
    assert sum(ids_in(app).values()) == 3600


def test_a_slow_reader_across_two_back_to_back_replaces_still_reads_its_manifest(app: App) -> None:
    """Issue 17 finding 10: with the default grace (PT24H) a reader holding generation 1's
    manifest reads every part it lists after generations 2 and 3 are published."""
    assert app.ingest().runtime_status == "Completed"
    held = app.landing.read_json(f"{PREFIX}/_manifest.json")
    assert held is not None
    for _ in range(2):
        assert app.ingest(mode="replace").runtime_status == "Completed"
    current = app.landing.read_json(f"{PREFIX}/_manifest.json")
    assert current is not None and current["generation"] == 3
    assert [r["generation"] for r in current["replaced"]] == [1, 2]
    for part in held["parts"]:
        data = app.landing.read_bytes(f"{PREFIX}/{part['name']}")
        assert hashlib.sha256(data).hexdigest() == part["sha256"], part["name"]
    assert verify_window(app.landing, PREFIX).ok


def test_a_reader_polling_during_replace_never_sees_a_mixed_or_partial_window(app: App) -> None:
    assert app.ingest().runtime_status == "Completed"
    app.stack.cloud.gateway.latency_ms = 3  # stretch the replace run so the reader gets many looks
    landing = app.landing
    done = threading.Event()
    outcome: list[Any] = []

    def replace() -> None:
        try:
            outcome.append(app.ingest(mode="replace"))
        finally:
            done.set()

    worker = threading.Thread(target=replace)
    worker.start()
    looks, generations, problems = 0, set(), []
    while not done.is_set():
        if not landing.exists(f"{PREFIX}/_SUCCESS"):
            problems.append("_SUCCESS disappeared during replace")
            continue
        manifest = landing.read_json(f"{PREFIX}/_manifest.json")
        assert manifest is not None
        folder = manifest["generationFolder"]
        for part in manifest["parts"]:
            if not part["name"].startswith(folder) or not landing.exists(f"{PREFIX}/{part['name']}"):
                problems.append(f"generation {manifest['generation']} lists unreadable {part['name']}")
        generations.add(manifest["generation"])
        looks += 1
    worker.join()
    assert outcome[0].runtime_status == "Completed"
    assert problems == []
    assert looks > 5 and 1 in generations


def test_a_second_writer_loses_instead_of_mixing_generations(app: App) -> None:
    assert app.ingest().runtime_status == "Completed"
    plan_input = {
        "source": "orders",
        "window": {"from": HOUR[0], "to": HOUR[1]},
        "mode": "replace",
        "dry_run": False,
    }
    plans = [plan_window(plan_input), plan_window(plan_input)]  # two writers plan against the same manifest
    manifest = app.landing.read_json(f"{PREFIX}/_manifest.json")
    assert manifest is not None

    def publish(plan: dict[str, Any]) -> dict[str, Any]:
        state = IngestState(
            source="orders",
            window=plan_input["window"],
            pipeline_run_id="writer",
            mode="replace",
            planned=True,
            prefix=plan["prefix"],
            generation=plan["generation"],
            folder=plan["folder"],
            previous_folder=plan["previous_folder"],
            manifest_etag=plan["manifest_etag"],
            parts=[{**p, "name": p["name"]} for p in manifest["parts"]],
        )
        return finalize(FinalizeInput(state=state, instance_id="writer").model_dump())

    assert publish(plans[0])["status"] == "landed"
    loser = publish(plans[1])
    assert "was published by another run meanwhile" in loser["error"]
    assert "instance writer" in loser["error"]


def test_a_failed_run_resumes_from_what_was_landed(app: App) -> None:
    app.write_sources(orders=orders_source(app.stack.cloud.gateway_url, output={"pages_per_part": 10}))
    gateway = app.stack.cloud.gateway
    gateway.inject(Fault("status", status=404, page=25), times=1)
    failed = app.ingest()
    assert failed.runtime_status == "Failed"
    assert part_names(app) == ["part-00000.jsonl.gz", "part-00001.jsonl.gz"]

    gateway.reset_observations()
    resumed = app.ingest()  # a Failed instance restarts under the same id
    assert resumed.runtime_status == "Completed", resumed.output
    first_pages = [r for r in gateway.requests if "next_token" not in r.query]
    assert first_pages == [], "the rerun went on from the landed parts' checkpoint, not from page 1"
    assert gateway.count(status=200) == 16
    ids = ids_in(app)
    assert set(ids) == gateway.expected_ids("/dev/orders", *HOUR) and max(ids.values()) == 1
    assert resumed.output["records"] == 3600 and len(resumed.output["parts"]) == 4


@pytest.mark.parametrize("ids", ["http_api", "none"])
def test_a_window_lands_and_resumes_whatever_request_ids_the_api_sends(app: App, ids: str) -> None:
    """HTTP APIs send apigw-requestid only; a proxy may send none: parts whose checkpoint holds no
    request id are read back all the same (a run that cannot read them never publishes)."""
    gateway = app.stack.cloud.gateway
    gateway.request_ids = ids  # type: ignore[assignment]
    gateway.inject(Fault("status", status=404, page=25), times=1)
    assert app.ingest().runtime_status == "Failed"
    gateway.reset_observations()
    resumed = app.ingest()
    assert resumed.runtime_status == "Completed", resumed.output
    assert gateway.count(status=200) == 16, "went on from the landed parts' checkpoints"
    assert set(ids_in(app)) == gateway.expected_ids("/dev/orders", *HOUR) and max(ids_in(app).values()) == 1
    manifest = app.landing.read_json(f"{PREFIX}/_manifest.json")
    assert manifest is not None
    request_ids = [part.get("first_request_id") for part in manifest["parts"]]
    assert all(request_ids) if ids == "http_api" else not any(request_ids), request_ids


def _manifest_write_answered(monkeypatch: pytest.MonkeyPatch, *, lands: bool, error: LandingError) -> None:
    """The next manifest write raises `error`, as the storage SDK does when its own retry of a
    write whose answer was lost meets that write (412), or when storage keeps failing (5xx);
    with `lands`, the write itself went through first."""
    write = Landing.write_json
    answered: list[str] = []

    def write_json(self: Landing, path: str, document: dict[str, Any], **kw: Any) -> str:
        if not path.endswith("/_manifest.json") or answered:
            return write(self, path, document, **kw)
        answered.append(path)
        if lands:
            write(self, path, document, **kw)
        raise error

    monkeypatch.setattr(Landing, "write_json", write_json)


@pytest.mark.parametrize(
    "lands", [True, False], ids=["answer lost, retry met it (412)", "storage failing (5xx)"]
)
def test_a_manifest_write_that_errs_never_costs_the_parts_it_lists(
    app: App, monkeypatch: pytest.MonkeyPatch, lands: bool
) -> None:
    lost = LandingError(f"{PREFIX}/_manifest.json was changed by another writer meanwhile", retryable=False)
    failing = LandingError("could not write _manifest.json: 503 Server Busy")
    _manifest_write_answered(monkeypatch, lands=lands, error=lost if lands else failing)
    instance = app.ingest()
    assert instance.runtime_status == "Completed", instance.output
    assert app.landing.exists(f"{PREFIX}/_SUCCESS")
    assert verify_window(app.landing, PREFIX).ok, "every part the manifest lists is there"
    ids = ids_in(app)
    assert set(ids) == app.stack.cloud.gateway.expected_ids("/dev/orders", *HOUR) and max(ids.values()) == 1


def test_a_rerun_goes_on_only_from_parts_that_chain(app: App) -> None:
    """An activity's first attempt cut its parts small (the pages were bigger then) and failed; its
    retry cut them anew and failed sooner, so the first attempt's later parts are still there. The
    rerun goes on from the retry's part only: going on from the stale ones repeats pages 2 and 3."""
    app.write_sources(
        orders=orders_source(
            app.stack.cloud.gateway_url,
            retry={"max_attempts": 2, "activity_attempts": 2},
            output={"pages_per_part": 3, "max_part_bytes": 50_000, "parts_per_activity": 8},
        )
    )
    gateway = app.stack.cloud.gateway
    gateway.inject(Fault("huge", size_bytes=60_000), times=5)  # attempt 1: pages 1-5, a part each
    gateway.inject(Fault("status", status=503, page=6), times=2)  # then it gives up at page 6
    gateway.inject(Fault("status", status=503, page=4), times=2)  # attempt 2: pages 1-3, gives up at 4
    failed = app.ingest()
    assert failed.runtime_status == "Failed"
    # The retry's part 0 (pages 1-3), then the first attempt's parts 1-3 (pages 2, 3 and 4) at least.
    assert part_names(app)[:4] == [f"part-0000{i}.jsonl.gz" for i in range(4)]

    gateway.reset_observations()
    resumed = app.ingest()
    assert resumed.runtime_status == "Completed", resumed.output
    assert gateway.count(status=200) == 33, "went on after the retry's part 0: pages 4-36"
    ids = ids_in(app)
    assert set(ids) == gateway.expected_ids("/dev/orders", *HOUR) and max(ids.values()) == 1
    assert resumed.output["records"] == 3600


def test_verify_command_recomputes_and_reports_tampering(app: App) -> None:
    args = ("--source", "orders", "--from", HOUR[0], "--to", HOUR[1])
    app.cli_json("ingest", *args)
    report = app.cli_json("verify", *args)
    assert report["ok"] and report["records"] == 3600
    app.landing._container.get_blob_client(f"{PREFIX}/part-00001.jsonl.gz").upload_blob(
        b"\x1f\x8b" + b"0" * 20, overwrite=True
    )
    result = app.cli("verify", *args)
    assert result.returncode == 1
    assert "part-00001.jsonl.gz sha256" in result.stderr


@pytest.mark.parametrize(
    ("tamper", "problem"),
    [
        ("totals.parts", "the manifest lists 4 parts, its totals say 5"),
        ("totals.bytes", "its totals say 1"),
        ("_SUCCESS records", "_SUCCESS says 3599 records, the manifest 3600"),
        ("_SUCCESS text", "_SUCCESS says no readable records"),
    ],
)
def test_verify_reports_totals_and_a_success_marker_that_do_not_describe_the_parts(
    app: App, tamper: str, problem: str
) -> None:
    assert app.ingest().runtime_status == "Completed"
    assert verify_window(app.landing, PREFIX).ok
    manifest = app.landing.read_json(f"{PREFIX}/_manifest.json")
    assert manifest is not None and len(manifest["parts"]) == 4
    blob = app.landing._container.get_blob_client
    if tamper.startswith("totals."):
        manifest["totals"][tamper.split(".")[1]] = 5 if tamper == "totals.parts" else 1
        blob(f"{PREFIX}/_manifest.json").upload_blob(json.dumps(manifest).encode(), overwrite=True)
    else:
        marker = b'{"manifest": "_manifest.json", "records": 3599}' if "records" in tamper else b"done"
        blob(f"{PREFIX}/_SUCCESS").upload_blob(marker, overwrite=True)
    report = verify_window(app.landing, PREFIX)
    assert not report.ok and any(problem in p for p in report.problems), report.problems


def test_missing_container_is_a_clear_error_unless_creation_is_allowed(app: App) -> None:
    app.set_env(LANDING_CREATE_CONTAINER="false", LANDING_CONTAINER="nosuchcontainer")
    instance = app.ingest()
    assert instance.runtime_status == "Failed"
    assert "landing container 'nosuchcontainer' does not exist" in instance.output
    runtime.reset()


@pytest.mark.parametrize("mode", ["skip-if-complete", "replace"])
def test_dry_run_lands_one_page_under_dryrun_only(app: App, mode: str) -> None:
    instance = app.ingest(dryRun=True, mode=mode)
    assert instance.runtime_status == "Completed", instance.output
    assert instance.output["prefix"] == f"_dryrun/{PREFIX}"
    assert instance.output["records"] == 100
    assert app.landing.list_names(PREFIX) == []
    assert app.stack.cloud.gateway.count(status=200) == 1
