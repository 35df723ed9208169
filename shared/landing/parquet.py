"""Parquet out: one file per part, its schema inferred from the records (pyarrow).

Schema policy (README "Output formats" repeats it for operators):

* Columns are the records' top-level keys, in the order first seen in the part. A record
  without a key has null there. Records must be JSON objects.
* Scalars keep their JSON type: boolean -> bool, integer -> int64, number -> double, string ->
  string. An integer beyond 64 bits or a string with a lone surrogate cannot be held exactly and
  fails (jsonl.gz keeps both).
* Nested objects and arrays are written as their JSON text in a string column (type "json" in
  the manifest, field metadata ``json=true`` in the file): nested shapes drift between pages far
  more often than top-level ones, and a struct column cannot take a new nested key once
  written. Spark's from_json, Synapse's OPENJSON and ADF's parse transform read them back.
* A column that is null everywhere so far has type "null" and takes the first type a later page
  gives it.
* Drift between pages is promoted only where no value changes: null -> anything, int64 ->
  double (an integer beyond 2**53 then fails, as it would lose digits). Anything else (int64 vs
  string, bool vs int64, json vs a scalar) fails naming the field and both pages: silently
  turning a column into strings would hand downstream readers a different table than yesterday.

Streaming and memory: the part's file schema is only known once its last page is in, so pages
are spooled to an anonymous temporary file as Arrow IPC (decoded Arrow bytes, bounded by the
part's max_part_bytes); `finish` reads them back a row group at a time, casts them to the final
schema and writes each row group through the writer's bounded block buffer. Memory is one row
group (ROW_GROUP_BYTES of decoded data), not the part.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from typing import IO, Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from shared.errors import LandingError

#: Codecs a source may choose (output.parquet_compression). snappy, the default, is what every
#: reader reads (ADF's Copy documents none/gzip/snappy/lzo); zstd is half the size on the
#: emulator's records (bench/RESULTS.md) for readers known to take it (Spark, Fabric, DuckDB).
COMPRESSION_LEVELS: dict[str, int | None] = {"snappy": None, "zstd": 3}
#: A row group ends at this much decoded (Arrow) data or ROW_GROUP_ROWS rows: 64 MiB decoded is
#: typically 100k-1M rows and 5-20 MiB on disk, which Spark/Synapse split on and DuckDB
#: parallelises over, while keeping the writer's memory to one row group.
ROW_GROUP_BYTES = 64 * 1024 * 1024
ROW_GROUP_ROWS = 1_000_000

#: The file's key-value metadata holding the part's columns as the manifest records them.
FOOTER_KEY = "apigw-adf-bridge.schema"

#: Type names as the manifest records them.
NULL, BOOL, INT, DOUBLE, STRING, JSON = "null", "bool", "int64", "double", "string", "json"
_ARROW = {
    NULL: pa.null(),
    BOOL: pa.bool_(),
    INT: pa.int64(),
    DOUBLE: pa.float64(),
    STRING: pa.string(),
    JSON: pa.string(),
}
_exact_json = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=True).encode


def merge_type(field: str, have: str, new: str, where: str) -> str:
    """The type a column takes when `new` meets `have`; raises for drift that would change values."""
    if have == new or new == NULL:
        return have
    if have == NULL:
        return new
    if {have, new} == {INT, DOUBLE}:
        return DOUBLE
    raise LandingError(
        f"field {field!r} changes type from {have} to {new} {where}; Parquet output promotes only "
        'null -> any and int64 -> double (use output.format = "jsonl.gz" for this source)',
        retryable=False,
    )


def merge_schemas(schemas: list[tuple[str, dict[str, str]]]) -> dict[str, str]:
    """One schema for a window from its parts' (name, schema) pairs, by the same promotion rules."""
    merged: dict[str, str] = {}
    seen_in: dict[str, str] = {}
    for part, schema in schemas:
        for field, kind in schema.items():
            if field not in merged:
                merged[field], seen_in[field] = kind, part
                continue
            promoted = merge_type(field, merged[field], kind, f"between {seen_in[field]} and {part}")
            if promoted != merged[field]:
                merged[field], seen_in[field] = promoted, part
    return merged


class ParquetEncoder:
    """Pages in, one Parquet file out through `sink` (the part writer's block buffer)."""

    extension = "parquet"
    content_type = "application/vnd.apache.parquet"
    # The file is written whole at finish (at commit: on the activity's commit stage while the
    # next part is fetched, or inline for its last part): few, large blocks.
    block_bytes = 4 * 1024 * 1024

    def __init__(self, sink: Callable[[bytes], None], compression: str = "snappy") -> None:
        self._compression = compression
        self._sink = _Sink(sink)
        self._spool: IO[bytes] = tempfile.TemporaryFile(prefix="part-", suffix=".arrows")  # noqa: SIM115 - closed in finish
        self._pages: list[tuple[int, int]] = []  # (offset, length) of each page's IPC stream
        self._schema: dict[str, str] = {}
        self._first_seen: dict[str, str] = {}  # where each column got its current type, for errors
        self.decoded_bytes = 0

    @property
    def schema(self) -> dict[str, str]:
        """Column name -> type name, as the manifest records it."""
        return dict(self._schema)

    def write(self, records: list[Any], *, page: int | None, texts: list[bytes] | None = None) -> int:
        """Decode a page into a record batch, merge its schema and spool it; returns its decoded size
        (`texts`, the records' JSON, is not needed: columns are built from the records)."""
        where = f"on page {page}" if page is not None else "in this part"
        batch, kinds = _batch(records, where)
        for field, kind in kinds.items():
            if field not in self._schema:
                self._schema[field], self._first_seen[field] = kind, where
                continue
            have = self._schema[field]
            promoted = merge_type(field, have, kind, f"({self._first_seen[field]}: {have}, {where})")
            if promoted != self._schema[field]:
                self._schema[field], self._first_seen[field] = promoted, where
        stream = pa.BufferOutputStream()
        with pa.ipc.new_stream(stream, batch.schema) as ipc:
            ipc.write_batch(batch)
        data = stream.getvalue()
        self._pages.append((self._spool.tell(), data.size))
        self._spool.write(data)
        self.decoded_bytes += batch.nbytes
        return int(batch.nbytes)

    def close(self) -> None:
        """Nothing runs in the background here."""

    def finish(self) -> None:
        """Write the file: row groups of the spooled pages cast to the part's final schema."""
        if self._pages and not self._schema:
            # A Parquet file without a column holds no rows: those records would be lost, not landed.
            raise LandingError(
                "every record of this part is an empty object ({}), which Parquet cannot hold without "
                'a column (use output.format = "jsonl.gz")',
                retryable=False,
            )
        schema = pa.schema(
            [
                pa.field(name, _ARROW[kind], metadata={"json": "true"} if kind == JSON else None)
                for name, kind in self._schema.items()
            ],
            metadata={FOOTER_KEY: json.dumps(self._schema)},
        )
        try:
            writer = pq.ParquetWriter(
                self._sink,
                schema,
                compression=self._compression,
                compression_level=COMPRESSION_LEVELS[self._compression],
                # Statistics and dictionary pages as pyarrow defaults them: what pushdown reads.
            )
            pending: list[pa.RecordBatch] = []
            rows = size = 0
            for offset, length in self._pages:
                self._spool.seek(offset)
                with pa.ipc.open_stream(self._spool.read(length)) as reader:
                    for batch in reader:
                        pending.append(_conform(batch, schema, self._first_seen))
                        rows += batch.num_rows
                        size += batch.nbytes
                if rows >= ROW_GROUP_ROWS or size >= ROW_GROUP_BYTES:
                    _write_group(writer, pending, schema)
                    pending, rows, size = [], 0, 0
            if pending:
                _write_group(writer, pending, schema)
            writer.close()
        finally:
            self._spool.close()


def footer_columns(read_tail: Callable[[int], bytes]) -> dict[str, str]:
    """A part's columns from its footer alone: `read_tail(n)` gives the file's last n bytes."""
    end = read_tail(8)
    if len(end) < 8 or end[4:] != b"PAR1":
        raise LandingError("not a Parquet file (no PAR1 footer)", retryable=False)
    footer = read_tail(int.from_bytes(end[:4], "little") + 8)
    metadata = pq.read_metadata(pa.BufferReader(footer)).schema.to_arrow_schema().metadata or {}
    columns: dict[str, str] = json.loads(metadata[FOOTER_KEY.encode()])
    return columns


def _write_group(writer: pq.ParquetWriter, batches: list[pa.RecordBatch], schema: pa.Schema) -> None:
    table = pa.Table.from_batches(batches, schema=schema)
    writer.write_table(table, row_group_size=max(table.num_rows, 1))  # one row group per call


def _conform(batch: pa.RecordBatch, schema: pa.Schema, seen: dict[str, str]) -> pa.RecordBatch:
    """A spooled page as the final schema: missing columns null, promoted ones cast (exactly)."""
    columns = []
    for field in schema:
        index = batch.schema.get_field_index(field.name)
        if index < 0:
            columns.append(pa.nulls(batch.num_rows, field.type))
            continue
        column = batch.column(index)
        if column.type != field.type:
            try:
                column = column.cast(field.type, safe=True)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise LandingError(
                    f"field {field.name!r} cannot be promoted to {field.type} ({seen.get(field.name, '')}): "
                    f"{str(exc).splitlines()[0]}",
                    retryable=False,
                ) from None
        columns.append(column)
    return pa.RecordBatch.from_arrays(columns, schema=schema)


def _batch(records: list[Any], where: str) -> tuple[pa.RecordBatch, dict[str, str]]:
    """A page's records as columns, and each column's type name."""
    fields: dict[str, None] = {}
    for number, record in enumerate(records):
        if not isinstance(record, dict):
            raise LandingError(
                f"record {number} {where} is a JSON {type(record).__name__}, not an object; Parquet "
                'output needs one object per record (use output.format = "jsonl.gz")',
                retryable=False,
            )
        fields.update(dict.fromkeys(record))
    arrays: list[pa.Array] = []
    kinds: dict[str, str] = {}
    for field in fields:
        values = [record.get(field) for record in records]
        kind, array = _column(field, values, where)
        kinds[field] = kind
        arrays.append(array)
    if not fields:  # only empty objects: no column, but as many rows (from_arrays would make none)
        return pa.RecordBatch.from_struct_array(pa.array([{}] * len(records), pa.struct([]))), kinds
    return pa.RecordBatch.from_arrays(arrays, names=list(fields)), kinds


def _column(field: str, values: list[Any], where: str) -> tuple[str, pa.Array]:
    if any(isinstance(value, dict | list) for value in values):
        texts = [None if value is None else _json_text(value) for value in values]
        return JSON, pa.array(texts, pa.string())
    try:
        array = pa.array(values)
    except OverflowError:
        raise LandingError(
            f"field {field!r} {where} holds an integer beyond 64 bits, which Parquet int64 cannot hold "
            "(jsonl.gz keeps it exactly)",
            retryable=False,
        ) from None
    except UnicodeEncodeError:
        raise LandingError(
            f"field {field!r} {where} holds a string with a lone surrogate, which Parquet (UTF-8) "
            "cannot hold (jsonl.gz keeps it as its escape)",
            retryable=False,
        ) from None
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise LandingError(
            f"field {field!r} {where} mixes types ({str(exc).splitlines()[0]}); Parquet output "
            "promotes only null -> any and int64 -> double",
            retryable=False,
        ) from None
    kind = {
        pa.null(): NULL,
        pa.bool_(): BOOL,
        pa.int64(): INT,
        pa.float64(): DOUBLE,
        pa.string(): STRING,
    }.get(array.type)
    if kind is None:  # e.g. bytes cannot come from JSON; refuse rather than guess
        raise LandingError(f"field {field!r} {where} has type {array.type}, not a JSON type", retryable=False)
    return kind, array


def _json_text(value: Any) -> str:
    try:
        return orjson.dumps(value).decode()
    except TypeError:  # an integer beyond 64 bits or a lone surrogate: orjson refuses
        pass
    text = _exact_json(value)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: keep it as JSON's own escape
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=True, allow_nan=True)
    return text


class _Sink:
    """The file object pyarrow writes to: bytes go straight on to the part writer's buffer."""

    def __init__(self, emit: Callable[[bytes], None]) -> None:
        self._emit = emit
        self._position = 0
        self.closed = False

    def write(self, data: bytes | memoryview) -> int:
        chunk = bytes(data)
        self._emit(chunk)
        self._position += len(chunk)
        return len(chunk)

    def tell(self) -> int:
        return self._position

    def flush(self) -> None:
        pass

    def writable(self) -> bool:
        return True

    def close(self) -> None:
        self.closed = True
