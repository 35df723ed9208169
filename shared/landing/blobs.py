"""Landing in Blob Storage: one container's view of landed windows.

Parts (shared.landing.parts) first, then `_manifest.json`, then `_SUCCESS`, last: a reader that
waits for `_SUCCESS` and reads the parts the manifest lists never sees a partial window. Where
each blob goes is decided by the layout rules (shared.ingest.layout), not here.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.storage.blob import BlobServiceClient, ContentSettings

from shared.errors import LandingError
from shared.landing.parts import Checkpoint, Format, PartWriter
from shared.landing.storage import storage_errors

MANIFEST = "_manifest.json"
SUCCESS = "_SUCCESS"


class Landing:
    """One container's view of landed windows."""

    def __init__(self, service: BlobServiceClient, container: str, *, create_container: bool = False) -> None:
        self._container = service.get_container_client(container)
        self._create = create_container
        self._checked = False

    @property
    def container_name(self) -> str:
        return str(self._container.container_name)

    def ensure_container(self) -> None:
        """Fail clearly (or create it, when allowed) if the landing container is missing."""
        if self._checked:
            return
        with storage_errors(f"reach landing container {self.container_name!r}"):
            if not self._container.exists():
                if not self._create:
                    raise LandingError(
                        f"landing container {self.container_name!r} does not exist; create it or set "
                        "LANDING_CREATE_CONTAINER=true"
                    )
                with contextlib.suppress(ResourceExistsError):  # another worker won the race
                    self._container.create_container()
        self._checked = True

    def part_writer(
        self,
        prefix: str,
        name: str,
        metadata: dict[str, str],
        output_format: Format = "jsonl.gz",
        compression: str | None = None,
    ) -> PartWriter:
        self.ensure_container()
        return PartWriter(self._container, prefix, name, metadata, output_format, compression)

    def landed_parts(self, prefix: str, folder: str) -> list[tuple[str, Checkpoint | None]]:
        """Committed parts directly in a generation folder, by name, with their checkpoints."""
        start = f"{prefix}/{folder}"
        with storage_errors(f"list {start}"):
            blobs = list(self._container.list_blobs(name_starts_with=start + "part-", include=["metadata"]))
        parts = []
        for blob in sorted(blobs, key=lambda b: b.name):
            relative = blob.name[len(prefix) + 1 :]
            if relative.count("/") != folder.count("/"):
                continue
            raw = (blob.metadata or {}).get("checkpoint")
            parts.append((relative, Checkpoint.decode(raw) if raw else None))
        return parts

    def write_json(
        self, path: str, document: dict[str, Any], *, etag: str | None = None, new: bool = False
    ) -> str:
        """Write a JSON blob; with `etag` only over that version, with `new` only if absent.

        Returns the new ETag. A lost condition means another writer got there first.
        """
        condition: dict[str, Any] = {}
        if etag is not None:
            condition = {"etag": etag, "match_condition": MatchConditions.IfNotModified}
        elif new:
            condition = {"match_condition": MatchConditions.IfMissing}
        try:
            return self._upload(
                path, json.dumps(document, indent=2, sort_keys=True).encode(), "application/json", **condition
            )
        except ResourceModifiedError:
            raise LandingError(
                f"{path} was changed by another writer meanwhile; not overwriting it", retryable=False
            ) from None
        except ResourceExistsError:
            raise LandingError(
                f"{path} was created by another writer meanwhile; not overwriting it", retryable=False
            ) from None

    def create_json(self, path: str, document: dict[str, Any]) -> bool:
        """Create a JSON blob only if it is absent: True if this call created it."""
        try:
            self._upload(
                path,
                json.dumps(document, sort_keys=True).encode(),
                "application/json",
                match_condition=MatchConditions.IfMissing,
            )
        except ResourceExistsError:
            return False
        return True

    def read_json_versioned(self, path: str) -> tuple[dict[str, Any] | None, str | None]:
        """A JSON blob and its ETag, or (None, None) if absent."""
        try:
            with storage_errors(f"read {path}", missing_ok=True):
                downloader = self._container.get_blob_client(path).download_blob()
                data = downloader.readall()
        except ResourceNotFoundError:
            return None, None
        document = json.loads(data)
        return (document if isinstance(document, dict) else None), downloader.properties.etag

    def write_success(self, prefix: str, document: dict[str, Any]) -> None:
        """The success marker; written after the manifest, it is what downstream steps wait for."""
        self._upload(f"{prefix}/{SUCCESS}", json.dumps(document, sort_keys=True).encode(), "application/json")

    def read_json(self, path: str) -> dict[str, Any] | None:
        return self.read_json_versioned(path)[0]

    def exists(self, path: str) -> bool:
        with storage_errors(f"check {path}"):
            return bool(self._container.get_blob_client(path).exists())

    def list_names(self, prefix: str) -> list[str]:
        try:
            with storage_errors(f"list {prefix}", missing_ok=True):
                return [
                    blob.name
                    for blob in self._container.list_blobs(name_starts_with=prefix.rstrip("/") + "/")
                ]
        except ResourceNotFoundError:  # no container yet: nothing landed
            return []

    def read_bytes(self, path: str) -> bytes:
        with storage_errors(f"read {path}"):
            return bytes(self._container.get_blob_client(path).download_blob().readall())

    def read_tail(self, path: str, length: int) -> bytes:
        """The last `length` bytes of a blob (all of it when shorter): a Parquet footer."""
        with storage_errors(f"read the end of {path}"):
            blob = self._container.get_blob_client(path)
            size = int(blob.get_blob_properties().size)
            offset = max(0, size - length)
            return bytes(blob.download_blob(offset=offset, length=size - offset).readall())

    def delete(self, path: str) -> None:
        with contextlib.suppress(ResourceNotFoundError), storage_errors(f"delete {path}", missing_ok=True):
            self._container.get_blob_client(path).delete_blob()

    def _upload(self, path: str, data: bytes, content_type: str, **condition: Any) -> str:
        self.ensure_container()
        with storage_errors(f"write {path}"):
            result = self._container.get_blob_client(path).upload_blob(
                data, overwrite=True, content_settings=ContentSettings(content_type=content_type), **condition
            )
        return str(result.get("etag", ""))
