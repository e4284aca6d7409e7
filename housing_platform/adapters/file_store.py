"""Where the platform's files live: the state folder (embedded profile) or an S3 bucket (production).

Quarantined rows, plots, drift reports (HTML + JSON), the drift history page, the fallback baseline,
the golden holdout, the recorded search result and the model files between training steps are
written and read through a :class:`FileStore`, addressed by a *key*: a relative POSIX path such as
``reports/drift/2026-01-01.html``. The key is the file's path under the state folder in the embedded
profile (so its paths are what they always were) and its key under ``s3://<bucket>/<prefix>/`` in the
production one, so a second host finds what the first one wrote.

Files are produced by libraries that want a local path (matplotlib, Evidently, skops, Keras): write
to :meth:`FileStore.local_path` and :meth:`FileStore.publish` it. Locally that path *is* the file and
publishing does nothing; on S3 it is a scratch file under ``<state>/scratch/`` that is uploaded, and
nothing reads a scratch file back later: :meth:`FileStore.fetch` downloads what a location names.

Plain boto3 (installed with dagster-aws), like the S3 IO manager: ``s3fs`` is not installed and
fsspec alone has no S3 driver. Credentials come from boto3's own chain, never from configuration.
:func:`file_store_for` picks the store for the active profile; Dagster resources build theirs from
the same :attr:`~housing_platform.config.profiles.ProductionSettings.files_uri`.
"""

from __future__ import annotations

import shutil
from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlparse

from housing_platform.config.profiles import PRODUCTION, ProductionSettings, active_profile
from housing_platform.config.settings import HousingSettings
from housing_platform.scoring.integrity import sha256_of

S3_SCHEME = "s3"
SCRATCH_FOLDER = "scratch"  # under the state folder: files on their way to S3, never read back later
MISSING_OBJECT_CODES = {"NoSuchKey", "404", "NotFound"}
CONTENT_TYPES = {".json": "application/json", ".html": "text/html; charset=utf-8", ".csv": "text/csv",
                 ".png": "image/png", ".parquet": "application/vnd.apache.parquet"}


class FileStoreError(ValueError):
    """A key or location the store cannot use; the message names it and the rule."""


def checked_key(key: str) -> str:
    """``key`` as a relative POSIX path inside the store; FileStoreError for ``..``, absolute or empty keys."""
    path = PurePosixPath(key)
    if not key or path.is_absolute() or ".." in path.parts or str(path) in ("", "."):
        raise FileStoreError(f"file key must be a relative path without '..'; got {key!r}")
    return path.as_posix()


def _write_whole(path: Path, body: bytes) -> Path:
    """Write ``body`` to ``path`` through a partial file renamed into place: a reader never sees half of it."""
    partial = path.with_name(f".{path.name}.partial")
    partial.write_bytes(body)
    partial.replace(path)
    return path


class FileStore(ABC):
    """Files by key; see the module docstring. ``home`` is this host's state folder."""

    def __init__(self, home: str | Path):
        self.home = Path(home)

    @abstractmethod
    def uri(self, key: str) -> str:
        """What names the file in metadata and JSON values: a local path, or ``s3://bucket/prefix/key``."""

    @abstractmethod
    def local_path(self, key: str) -> Path:
        """Where to write the file for ``key`` on this host (its folder created); then :meth:`publish` it."""

    @abstractmethod
    def publish(self, key: str) -> str:
        """Make the file written at :meth:`local_path` the stored one; return its :meth:`uri`."""

    @abstractmethod
    def read_bytes(self, key: str) -> bytes | None:
        """The file's bytes, or None when there is none."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove the file if it exists."""

    def link(self, key: str) -> str:
        """A URL for ``key`` to put in a link: ``file://`` locally, the ``s3://`` URI on S3."""
        return self.uri(key)

    def local_folder(self, key: str) -> Path:
        """The local folder for the keys under ``key`` (created): write a library's files there, then publish them."""
        return self.local_path(f"{checked_key(key)}/_").parent

    def publish_folder(self, key: str, paths: Mapping[str, Path]) -> dict[str, str]:
        """Publish files written under :meth:`local_folder` ``(key)``; their uris, by the same names."""
        folder = self.local_folder(key)
        return {name: self.publish(f"{key}/{Path(path).relative_to(folder).as_posix()}")
                for name, path in paths.items()}

    def write_bytes(self, key: str, body: bytes) -> str:
        """Store ``body`` under ``key`` (readers never see half a file); return its uri."""
        _write_whole(self.local_path(key), body)
        return self.publish(key)

    def write_text(self, key: str, text: str) -> str:
        return self.write_bytes(key, text.encode("utf-8"))

    def read_text(self, key: str) -> str | None:
        body = self.read_bytes(key)
        return None if body is None else body.decode("utf-8")

    def exists(self, key: str) -> bool:
        return self.read_bytes(key) is not None

    def key_of(self, location: str | Path) -> str | None:
        """The key a location returned by :meth:`uri` names, or None when it is not in this store."""
        return None

    def fetch(self, location: str | Path, sha256: str | None = None) -> Path:
        """A local file with the content ``location`` names (a :meth:`uri` of this store, or a local path).

        FileNotFoundError naming the location when there is none; with ``sha256`` (recorded when the file
        was written), FileStoreError naming the location and both hashes when the content differs.
        """
        path = self._fetch(location)
        if sha256 is not None and (found := sha256_of(path)) != sha256:
            raise FileStoreError(f"{location}: sha256 {found} differs from {sha256}, recorded when it was written: "
                                 "the file was changed or replaced since")
        return path

    def _fetch(self, location: str | Path) -> Path:
        path = Path(location)
        if not path.is_file():
            raise FileNotFoundError(f"no file at {location}")
        return path


class LocalFileStore(FileStore):
    """Files in the state folder, at ``<home>/<key>``: the embedded profile."""

    def uri(self, key: str) -> str:
        return str(self.home / checked_key(key))

    def local_path(self, key: str) -> Path:
        path = self.home / checked_key(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def publish(self, key: str) -> str:
        return self.uri(key)

    def link(self, key: str) -> str:
        return (self.home / checked_key(key)).as_uri()

    def read_bytes(self, key: str) -> bytes | None:
        path = self.home / checked_key(key)
        return path.read_bytes() if path.is_file() else None

    def delete(self, key: str) -> None:
        (self.home / checked_key(key)).unlink(missing_ok=True)

    def key_of(self, location: str | Path) -> str | None:
        try:
            return Path(location).resolve().relative_to(self.home.resolve()).as_posix()
        except ValueError:
            return None

    def __repr__(self) -> str:
        return f"LocalFileStore({str(self.home)!r})"


class S3FileStore(FileStore):
    """Files as objects ``s3://<bucket>/<prefix>/<key>``: the production profile (scratch under ``<home>/scratch``)."""

    def __init__(self, home: str | Path, bucket: str, prefix: str = "", *, endpoint_url: str | None = None,
                 region: str | None = None, client: Any = None):
        super().__init__(home)
        if not bucket or "/" in bucket:
            raise FileStoreError(f"bucket must be a name without slashes; got {bucket!r}")
        self.bucket, self.prefix = bucket, prefix.strip("/")
        self.endpoint_url, self.region = endpoint_url, region
        self._client = client

    @property
    def root(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"

    def client(self) -> Any:
        if self._client is None:
            import boto3

            self._client = boto3.client("s3", endpoint_url=self.endpoint_url, region_name=self.region)
        return self._client

    def object_key(self, key: str) -> str:
        key = checked_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{self.object_key(key)}"

    def local_path(self, key: str) -> Path:
        path = self.home / SCRATCH_FOLDER / checked_key(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def publish(self, key: str) -> str:
        with self.local_path(key).open("rb") as body:
            return self._put(key, body)

    def write_bytes(self, key: str, body: bytes) -> str:
        return self._put(key, body)  # one PUT: S3 never shows half an object; nothing is staged locally

    def _put(self, key: str, body) -> str:
        suffix = PurePosixPath(key).suffix
        extra = {"ContentType": CONTENT_TYPES[suffix]} if suffix in CONTENT_TYPES else {}
        self.client().put_object(Bucket=self.bucket, Key=self.object_key(key), Body=body, **extra)
        return self.uri(key)

    def read_bytes(self, key: str) -> bytes | None:
        from botocore.exceptions import ClientError

        try:
            return self.client().get_object(Bucket=self.bucket, Key=self.object_key(key))["Body"].read()
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in MISSING_OBJECT_CODES:
                return None
            raise

    def delete(self, key: str) -> None:
        self.client().delete_object(Bucket=self.bucket, Key=self.object_key(key))  # a missing key is no error

    def keys(self, under: str) -> list[str]:
        """The keys stored under the folder ``under`` (sorted)."""
        start = self.object_key(under).rstrip("/") + "/"
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=start)
        cut = len(self.prefix) + 1 if self.prefix else 0
        return sorted(item["Key"][cut:] for page in pages for item in page.get("Contents", []))

    def key_of(self, location: str | Path) -> str | None:
        parsed = urlparse(str(location))
        if parsed.scheme != S3_SCHEME or parsed.netloc != self.bucket:
            return None
        key = parsed.path.lstrip("/")
        if self.prefix:
            if not key.startswith(self.prefix + "/"):
                return None
            key = key[len(self.prefix) + 1:]
        return key

    def _fetch(self, location: str | Path) -> Path:
        """Download the object ``location`` names into the scratch folder (a local path is returned as is)."""
        if urlparse(str(location)).scheme != S3_SCHEME:
            return super()._fetch(location)
        key = self.key_of(location)
        if key is None:
            raise FileStoreError(f"{location} is not in this platform's bucket ({self.root})")
        body = self.read_bytes(key)
        if body is None:
            raise FileNotFoundError(f"no object at {location}")
        return _write_whole(self.local_path(key), body)

    def __repr__(self) -> str:
        return f"S3FileStore({self.root!r})"


def open_file_store(root: str, home: str | Path, *, endpoint_url: str | None = None,
                    region: str | None = None) -> FileStore:
    """The store at ``root``: ``s3://bucket[/prefix]`` or a local folder (empty: the state folder ``home``)."""
    parsed = urlparse(root)
    if parsed.scheme == S3_SCHEME:
        return S3FileStore(home, parsed.netloc, parsed.path, endpoint_url=endpoint_url, region=region)
    if parsed.scheme not in ("", "file"):
        raise FileStoreError(f"file store root must be a folder or s3://bucket/prefix; got {root!r}")
    return LocalFileStore(Path(parsed.path) if parsed.scheme == "file" else Path(root or home))


def file_store_for(settings: HousingSettings, environ: Mapping[str, str] | None = None) -> FileStore:
    """The file store of the active profile: the state folder, or ``ProductionSettings.files_uri`` on S3."""
    if active_profile(environ) != PRODUCTION:
        return LocalFileStore(settings.home)
    production = ProductionSettings.from_env(settings, environ)
    return open_file_store(production.files_uri, settings.home, endpoint_url=production.s3_endpoint_url,
                           region=production.aws_region)


def copy_into(store: FileStore, key: str, source: str | Path) -> str:
    """Store the local file ``source`` under ``key`` (no copy when it already is the local file); its uri."""
    target = store.local_path(key)
    if Path(source).resolve() != target.resolve():
        shutil.copyfile(source, target)
    return store.publish(key)
