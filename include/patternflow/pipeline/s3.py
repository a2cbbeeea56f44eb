"""The ``ObjectStore`` on an S3 bucket, through a boto3 S3 client.

The client decides where S3 is (AWS, MinIO, the embedded server): in the DAGs it comes from the
Amazon provider's ``S3Hook`` and the ``aws_default`` connection, in the command line from an
endpoint URL. Every object written here carries its write time (ms) as metadata, so that lag is
measured to the millisecond rather than to S3's one-second ``Last-Modified``.

An object written from pieces (``put_stream``) larger than a part goes up as a multipart upload,
one part held at a time, so reference data of any size is copied to the bucket in bounded memory.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

from patternflow.engine.store import StoredObject, WriteConflict

log = logging.getLogger(__name__)

WRITTEN_AT = "written-at"
_CONFLICTS = ("PreconditionFailed", "412", "ConditionalRequestConflict", "409")
"""What S3 answers a conditional write whose condition no longer holds (or that raced another)."""
PART_BYTES = 16 << 20
"""The size of a multipart upload's parts (S3 wants at least 5 MiB for all but the last)."""


class S3Store:
    """An ``ObjectStore`` on one bucket."""

    def __init__(self, client: Any, bucket: str, part_bytes: int = PART_BYTES) -> None:
        self.client = client
        self.bucket = bucket
        self.part_bytes = part_bytes

    def get(self, key: str) -> bytes:
        return self.fetch(key).data

    def fetch(self, key: str) -> StoredObject:
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=key)
        except self.client.exceptions.NoSuchKey:
            raise KeyError(key) from None
        written = response.get("Metadata", {}).get(WRITTEN_AT)
        moment = datetime.fromisoformat(written) if written else response["LastModified"]
        return StoredObject(response["Body"].read(), moment.timestamp(), response.get("ETag", ""))

    def put(self, key: str, data: bytes) -> None:
        self._put(key, data)

    def put_stream(self, key: str, pieces: Iterable[bytes]) -> None:
        """One PUT for an object of at most one part; a multipart upload, a part at a time, for a
        larger one (aborted on any error, so that no object and no stray parts are left)."""
        parts = _parts(pieces, self.part_bytes)
        first = next(parts, b"")
        second = next(parts, None)
        if second is None:
            self._put(key, first)
            return
        written = datetime.now(UTC).isoformat(timespec="milliseconds")
        upload = self.client.create_multipart_upload(Bucket=self.bucket, Key=key, Metadata={WRITTEN_AT: written})["UploadId"]
        try:
            done = [self._upload_part(key, upload, number, part) for number, part in enumerate(_chain(first, second, parts), 1)]
            self.client.complete_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload, MultipartUpload={"Parts": done})
        except BaseException:
            try:
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload)
            except Exception as abort_error:  # the upload's own error is the one to raise
                log.error(
                    "s3://%s/%s: aborting the failed multipart upload %s failed too (%s); its parts stay until a "
                    "lifecycle rule or a later abort removes them",
                    self.bucket,
                    key,
                    upload,
                    abort_error,
                )
            raise

    def _upload_part(self, key: str, upload: str, number: int, data: bytes) -> dict[str, Any]:
        response = self.client.upload_part(Bucket=self.bucket, Key=key, UploadId=upload, PartNumber=number, Body=data)
        return {"ETag": response["ETag"], "PartNumber": number}

    def replace(self, key: str, data: bytes, expected: str | None) -> str:
        """An S3 conditional write: If-Match the ETag read, or If-None-Match * for a new object.
        (A store that ignores these headers makes it a plain PUT.)"""
        condition = {"IfMatch": expected} if expected is not None else {"IfNoneMatch": "*"}
        try:
            return self._put(key, data, **condition)
        except self.client.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in _CONFLICTS:
                raise WriteConflict(f"s3://{self.bucket}/{key} changed since it was read (expected {expected})") from None
            raise

    def _put(self, key: str, data: bytes, **condition: str) -> str:
        written = datetime.now(UTC).isoformat(timespec="milliseconds")
        response = self.client.put_object(Bucket=self.bucket, Key=key, Body=data, Metadata={WRITTEN_AT: written}, **condition)
        return response.get("ETag", "")

    def exists(self, key: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=key)
        except self.client.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        return True

    def list(self, prefix: str) -> list[str]:
        keys: list[str] = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            keys.extend(item["Key"] for item in page.get("Contents", ()))
        return sorted(keys)

    def digests(self, prefix: str) -> dict[str, str]:
        """MD5 of each object under ``prefix``, from the listing's ETags (none for multipart uploads)."""
        found: dict[str, str] = {}
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            for item in page.get("Contents", ()):
                etag = item.get("ETag", "").strip('"')
                if etag and "-" not in etag:
                    found[item["Key"]] = etag
        return found

    def delete(self, keys: list[str]) -> None:
        """Delete ``keys``; ``PermissionError`` naming the keys S3 refused (DeleteObjects answers
        a refusal, such as AccessDenied, per key in a successful response, not as an error)."""
        refused = []
        for start in range(0, len(keys), 1000):  # DeleteObjects takes at most 1,000 keys
            batch = [{"Key": key} for key in keys[start : start + 1000]]
            response = self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})
            refused += [f"{error.get('Key')} ({error.get('Code')})" for error in response.get("Errors", ())]
        if refused:
            raise PermissionError(f"s3://{self.bucket}: not deleted: {', '.join(refused)}")

    def read_range(self, key: str, start: int, end: int) -> bytes:
        """Bytes [start, end) of an object."""
        if end <= start:
            return b""
        response = self.client.get_object(Bucket=self.bucket, Key=key, Range=f"bytes={start}-{end - 1}")
        return response["Body"].read()

    def size(self, key: str) -> int:
        try:
            return int(self.client.head_object(Bucket=self.bucket, Key=key)["ContentLength"])
        except self.client.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                raise KeyError(key) from None
            raise


def _parts(pieces: Iterable[bytes], size: int) -> Iterator[bytes]:
    """The pieces joined into parts of at least ``size`` bytes, the last one possibly smaller."""
    buffer = bytearray()
    for piece in pieces:
        buffer += piece
        if len(buffer) >= size:
            yield bytes(buffer)
            buffer.clear()
    if buffer:
        yield bytes(buffer)


def _chain(first: bytes, second: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    yield first
    yield second
    yield from rest


def endpoint_client(
    endpoint_url: str | None, region: str = "us-east-1", access_key: str | None = None, secret_key: str | None = None
) -> Any:
    """A boto3 S3 client for the command line (the DAGs take theirs from the Airflow connection)."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        region_name=region,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        config=Config(retries={"max_attempts": 5, "mode": "standard"}, s3={"addressing_style": "path"}),
    )
