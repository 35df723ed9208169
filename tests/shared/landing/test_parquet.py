"""Parquet output: a window lands as typed columns, exactly once, and the schema policy holds."""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from localcloud import Fault
from localcloud.datasets import Dataset
from localcloud.stack import orders_source
from shared.errors import LandingError
from shared.ingest.activities import _with_columns
from shared.landing import parquet
from shared.landing.parquet import ParquetEncoder, merge_schemas
from shared.landing.parts import Checkpoint
from shared.landing.verify import read_records, verify_window

from fixtures import HOUR, App

PREFIX = "dev/orders/20240101T000000Z_20240101T010000Z"


def encode(*pages: list[dict[str, object]]) -> tuple[pq.ParquetFile, dict[str, str]]:
    out = bytearray()
    encoder = ParquetEncoder(out.extend)
    for number, records in enumerate(pages, start=1):
        encoder.write(records, page=number)
    encoder.finish()
    return pq.ParquetFile(io.BytesIO(bytes(out))), encoder.schema


def parquet_orders(app: App, **output: object) -> None:
    app.write_sources(
        orders=orders_source(app.stack.cloud.gateway_url, output={"format": "parquet", **output})
    )


def test_a_parquet_window_lands_and_reads_back_exactly_once_with_its_types(app: App) -> None:
    parquet_orders(app)
    instance = app.ingest()
    assert instance.runtime_status == "Completed", instance.output
    assert instance.output["parts"][0] == f"{PREFIX}/part-00000.parquet"
    manifest = app.landing.read_json(f"{PREFIX}/_manifest.json")
    assert manifest is not None and manifest["format"] == "parquet"
    expected = {
        "id": "string",
        "ts": "string",
        "customer": "string",
        "amount": "double",
        "currency": "string",
        "status": "string",
    }
    assert manifest["columns"] == expected
    assert all(part["columns"] == expected for part in manifest["parts"])

    report = verify_window(app.landing, PREFIX)
    assert report.ok, report.problems
    assert report.records == 3600

    ids = [record["id"] for record in read_records(app.landing, PREFIX)]
    gateway = app.stack.cloud.gateway
    assert len(ids) == len(set(ids)) == 3600
    assert set(ids) == gateway.expected_ids("/dev/orders", *HOUR)

    first = pq.ParquetFile(io.BytesIO(app.landing.read_bytes(f"{PREFIX}/part-00000.parquet")))
    assert first.schema_arrow.field("amount").type == pa.float64()
    assert first.metadata.row_group(0).column(0).compression == "SNAPPY"  # what every reader reads
    blob = app.landing._container.get_blob_client(f"{PREFIX}/part-00000.parquet").get_blob_properties()
    assert blob.content_settings.content_type == "application/vnd.apache.parquet"


@dataclass(frozen=True)
class Typed(Dataset):
    """Orders with every JSON type, a column null for two pages, int -> double drift on page 3
    and a field that appears in the third part only (pages of 100 records, parts of 10 pages)."""

    def record(self, index: int) -> dict[str, Any]:
        i = index % 3600  # the position in its hour: the test window is one hour
        record: dict[str, Any] = {
            **super().record(index),
            "quantity": i % 7,
            "paid": i % 2 == 0,
            "lines": [{"sku": f"s{i % 5}", "n": 1}],
            "discount": None if i < 150 else i / 4,
            "score": i if i < 250 else i + 0.5,
        }
        if i >= 2000:
            record["late"] = i
        return record


@dataclass(frozen=True)
class Drifting(Dataset):
    """A field that is an integer for five pages, then a string."""

    def record(self, index: int) -> dict[str, Any]:
        i = index % 3600
        return {**super().record(index), "code": i if i < 500 else f"C{i}"}


def test_types_nulls_nesting_and_drift_land_as_the_policy_says(app: App) -> None:
    app.stack.cloud.gateway.add_dataset("/dev/typed", Typed(name="typed"))
    app.write_sources(
        orders=orders_source(app.stack.cloud.gateway_url, path="/typed", output={"format": "parquet"})
    )
    instance = app.ingest()
    assert instance.runtime_status == "Completed", instance.output
    manifest = app.landing.read_json(f"{PREFIX}/_manifest.json")
    assert manifest is not None
    typed = {"quantity": "int64", "paid": "bool", "lines": "json", "discount": "double", "score": "double"}
    assert manifest["columns"] == {**manifest["parts"][0]["columns"], "late": "int64"}
    assert typed.items() <= manifest["columns"].items()
    assert "late" not in manifest["parts"][1]["columns"]
    assert manifest["parts"][2]["columns"]["late"] == "int64"

    first = pq.read_table(io.BytesIO(app.landing.read_bytes(f"{PREFIX}/part-00000.parquet")))
    assert first.schema.field("quantity").type == pa.int64() and first.schema.field("paid").type == pa.bool_()
    assert first.schema.field("lines").metadata == {b"json": b"true"}
    rows = first.to_pylist()
    assert rows[10] | {"id": None, "ts": None, "customer": None, "amount": None, "status": None} == {
        "id": None, "ts": None, "customer": None, "amount": None, "status": None, "currency": "EUR",
        "quantity": 3, "paid": True, "lines": '[{"sku":"s0","n":1}]', "discount": None, "score": 10.0,
    }  # fmt: skip
    assert rows[150]["discount"] == 37.5 and rows[251]["score"] == 251.5
    ids = [record["id"] for record in read_records(app.landing, PREFIX)]
    assert len(ids) == len(set(ids)) == 3600


def test_drift_that_would_change_values_fails_the_run_naming_field_and_pages(app: App) -> None:
    app.stack.cloud.gateway.add_dataset("/dev/drifting", Drifting(name="drifting"))
    app.write_sources(
        orders=orders_source(app.stack.cloud.gateway_url, path="/drifting", output={"format": "parquet"})
    )
    instance = app.ingest()
    assert instance.runtime_status == "Failed"
    expected = "field 'code' changes type from int64 to string (on page 1: int64, on page 6)"
    assert expected in str(instance.output)
    assert not app.landing.exists(f"{PREFIX}/_SUCCESS")


def test_a_failed_parquet_run_resumes_from_its_parts_without_duplicates(app: App) -> None:
    parquet_orders(app, pages_per_part=10)
    gateway = app.stack.cloud.gateway
    gateway.inject(Fault("status", status=404, page=25), times=1)
    assert app.ingest().runtime_status == "Failed"
    landed = sorted(n.rsplit("/", 1)[-1] for n in app.landing.list_names(PREFIX) if "part-" in n)
    assert landed == ["part-00000.parquet", "part-00001.parquet"]

    gateway.reset_observations()
    resumed = app.ingest()
    assert resumed.runtime_status == "Completed", resumed.output
    assert [r for r in gateway.requests if "next_token" not in r.query] == [], "resumed, not restarted"
    ids = [record["id"] for record in read_records(app.landing, PREFIX)]
    assert len(ids) == len(set(ids)) == 3600


def test_verify_reads_parquet_and_reports_a_tampered_part(app: App) -> None:
    parquet_orders(app)
    assert app.ingest().runtime_status == "Completed"
    app.landing._container.get_blob_client(f"{PREFIX}/part-00001.parquet").upload_blob(
        b"PAR1" + b"0" * 20, overwrite=True
    )
    report = verify_window(app.landing, PREFIX)
    assert not report.ok
    assert any("part-00001.parquet sha256" in problem for problem in report.problems)
    assert any("part-00001.parquet is not readable Parquet" in problem for problem in report.problems)


def test_promotable_drift_nulls_and_nested_values_follow_the_policy() -> None:
    file, schema = encode(
        [{"n": 1, "later": None, "tags": ["a"], "flag": True}],
        [{"n": 2.5, "later": "x", "tags": {"k": [1, 2]}, "new": 7}],
    )
    assert schema == {"n": "double", "later": "string", "tags": "json", "flag": "bool", "new": "int64"}
    table = file.read()
    assert table.schema.field("n").type == pa.float64()
    assert table.schema.field("later").type == pa.string()
    assert table.schema.field("tags").metadata == {b"json": b"true"}
    assert table.to_pylist() == [
        {"n": 1.0, "later": None, "tags": '["a"]', "flag": True, "new": None},
        {"n": 2.5, "later": "x", "tags": '{"k":[1,2]}', "flag": None, "new": 7},
    ]


def test_empty_objects_land_as_rows_of_nulls_not_dropped() -> None:
    file, schema = encode([{"n": 1}], [{}, {}], [{"n": 2}, {}])
    assert schema == {"n": "int64"}
    assert file.read().to_pylist() == [{"n": 1}, {"n": None}, {"n": None}, {"n": 2}, {"n": None}]


def test_a_part_of_empty_objects_only_fails_instead_of_landing_no_rows() -> None:
    with pytest.raises(LandingError, match=r"empty object.*use output.format") as raised:
        encode([{}, {}], [{}])
    assert raised.value.retryable is False


def test_non_promotable_drift_fails_naming_the_field_and_both_pages() -> None:
    with pytest.raises(LandingError) as raised:
        encode([{"n": 1}], [{"n": None}], [{"n": "one"}])
    message = str(raised.value)
    assert "'n'" in message and "int64 to string" in message
    assert "page 1" in message and "page 3" in message
    assert raised.value.retryable is False


def test_values_parquet_cannot_hold_exactly_fail_instead_of_changing() -> None:
    with pytest.raises(LandingError, match=r"'id' on page 1 holds an integer beyond 64 bits"):
        encode([{"id": 2**70}])
    with pytest.raises(LandingError, match=r"'n' cannot be promoted to double"):
        encode([{"n": 2**53 + 1}], [{"n": 0.5}])  # 2**53 + 1 has no exact double
    with pytest.raises(LandingError, match=r"record 0 on page 1 is a JSON list"):
        encode([[1, 2]])  # type: ignore[list-item]


def test_a_source_may_choose_zstd(app: App) -> None:
    parquet_orders(app, parquet_compression="zstd")
    assert app.ingest().runtime_status == "Completed"
    part = pq.ParquetFile(io.BytesIO(app.landing.read_bytes(f"{PREFIX}/part-00000.parquet")))
    assert part.metadata.row_group(0).column(0).compression == "ZSTD"
    assert verify_window(app.landing, PREFIX).ok


def test_row_groups_end_at_the_row_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parquet, "ROW_GROUP_ROWS", 250)
    file, _ = encode(*[[{"i": page * 100 + i} for i in range(100)] for page in range(10)])
    assert file.metadata.num_row_groups == 4  # 300 rows per group (pages of 100), then the rest
    assert file.metadata.num_rows == 1000


def test_the_window_schema_merges_parts_by_the_same_rules() -> None:
    assert merge_schemas([("p0", {"a": "int64", "b": "null"}), ("p1", {"a": "double", "b": "bool"})]) == {
        "a": "double",
        "b": "bool",
    }
    with pytest.raises(LandingError, match=r"'a' changes type from int64 to string between p0 and p1"):
        merge_schemas([("p0", {"a": "int64"}), ("p1", {"a": "string"})])


def test_a_wide_schema_stays_in_the_footer_and_the_manifest_still_gets_it(app: App) -> None:
    wide = [{f"a_rather_long_field_name_{i:03d}": i for i in range(400)} for _ in range(3)]
    app.landing._container.create_container()
    writer = app.landing.part_writer(PREFIX, "part-00000.parquet", {"source": "orders"}, "parquet")
    writer.write(wide, "req-1", page=1)
    committed = writer.commit(Checkpoint(window={"from": HOUR[0], "to": HOUR[1]}, pages_after=1))
    assert committed.columns is not None and len(committed.columns) == 400

    blob = app.landing._container.get_blob_client(f"{PREFIX}/part-00000.parquet").get_blob_properties()
    assert sum(len(k) + len(v) for k, v in blob.metadata.items()) <= 8 * 1024  # Azure's limit
    ((name, checkpoint),) = app.landing.landed_parts(PREFIX, "")
    assert name == "part-00000.parquet"
    assert checkpoint is not None and checkpoint.part is not None
    assert checkpoint.part.columns is None and checkpoint.part.records == 3  # the rest resumes as usual

    (filled,) = _with_columns(app.landing, PREFIX, [checkpoint.part])
    assert filled.columns == committed.columns
