"""Paths that may be URIs: a local path stays a ``pathlib.Path``, ``s3://bucket/key`` (or any URI
``pyarrow.fs.FileSystem.from_uri`` resolves) becomes a :class:`RemotePath`.

``RemotePath`` offers the part of ``pathlib`` the steps use (``name``, ``parent``, ``/``,
``exists``, ``is_file``, ``open("rb")``, ...), so that a call site changes only where it builds the
path (``as_path(x)`` instead of ``Path(x)``) and where pyarrow reads it (``open_input(p)``).

S3 settings come from the standard AWS variables: ``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY`` (and ``AWS_SESSION_TOKEN``), ``AWS_REGION`` (or
``AWS_DEFAULT_REGION``) and ``AWS_ENDPOINT_URL`` (or ``AWS_ENDPOINT_URL_S3``) for an
S3-compatible server; pyarrow does not read the endpoint variable itself, so it is passed here.

Errors name the URI: a missing object is a ``FileNotFoundError`` (as for a local file); a missing
bucket, refused credentials or an unreachable endpoint is a :class:`StorageError` (an InputError).
"""

from __future__ import annotations

import contextlib
import errno
import fnmatch
import io
import os
import re
import secrets
import shutil
from functools import lru_cache
from pathlib import Path, PurePosixPath
from types import SimpleNamespace
from typing import Iterator
from urllib.parse import urlsplit

import pyarrow.fs as pafs

from curate import cancel
from curate.errors import InputError

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+)://")
TMP_PREFIX = ".curate-tmp-"


class StorageError(InputError):
    """An object store refused or could not be reached; the message names the URI."""


def is_uri(p) -> bool:
    """True for a :class:`RemotePath` or a ``scheme://`` string other than ``file://``."""
    if isinstance(p, RemotePath):
        return True
    if not isinstance(p, str):
        return False
    m = _SCHEME.match(p)
    return bool(m) and m.group(1).lower() != "file"


def as_path(p: "str | os.PathLike | RemotePath") -> "Path | RemotePath":
    """``Path`` for a local path (or ``file://`` URI), :class:`RemotePath` for any other URI."""
    if isinstance(p, (Path, RemotePath)):
        return p
    s = os.fspath(p)
    if s.lower().startswith("file://"):
        return Path(urlsplit(s).path)
    return RemotePath(s) if is_uri(s) else Path(s)


def open_input(p):
    """What pyarrow's readers take: the local path unchanged, or an open random-access file."""
    if isinstance(p, RemotePath):
        return p.input_file()
    return p


def missing(p, what: str = "no such file or directory") -> str:
    """Why ``p`` (found not to exist) is missing, as the tail of an error line."""
    if isinstance(p, RemotePath) and not p.bucket_exists():
        return f"the bucket {p.bucket!r} does not exist (or is not visible with these credentials); check the URI"
    return what if not isinstance(p, RemotePath) else "no such object"


def rmtree(p) -> None:
    """Remove a directory (local) or every object under a prefix (remote); nothing if absent."""
    if isinstance(p, RemotePath):
        p.rmtree()
    else:
        shutil.rmtree(p, ignore_errors=True)


def _s3_options() -> tuple:
    env = os.environ.get
    endpoint = env("AWS_ENDPOINT_URL_S3") or env("AWS_ENDPOINT_URL") or ""
    region = env("AWS_REGION") or env("AWS_DEFAULT_REGION") or ""
    return (endpoint, region, env("AWS_ACCESS_KEY_ID") or "", env("AWS_SECRET_ACCESS_KEY") or "",
            env("AWS_SESSION_TOKEN") or "")


@lru_cache(maxsize=8)
def _s3(endpoint: str, region: str, key: str, secret: str, token: str) -> pafs.S3FileSystem:
    kw: dict = {"connect_timeout": 10, "request_timeout": 120,
                "retry_strategy": pafs.AwsStandardS3RetryStrategy(max_attempts=3)}
    if endpoint:
        u = urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}")
        kw.update(endpoint_override=u.netloc, scheme=u.scheme)
    if region:
        kw["region"] = region
    if key and secret:
        kw.update(access_key=key, secret_key=secret, session_token=token or None)
    return pafs.S3FileSystem(**kw)


@lru_cache(maxsize=64)
def _bucket_region(bucket: str) -> str:
    """AWS itself, no region given: the bucket's own (a request to another region is refused)."""
    try:
        return pafs.resolve_s3_region(bucket)
    except (OSError, ValueError):
        return "us-east-1"  # the request that follows fails with an error naming the URI


@lru_cache(maxsize=64)
def _from_uri(uri: str) -> tuple[pafs.FileSystem, str]:
    return pafs.FileSystem.from_uri(uri)


def _reason(e: Exception) -> str:
    msg = " ".join(str(e).split())
    if "NO_SUCH_BUCKET" in msg or "NoSuchBucket" in msg:
        return "the bucket does not exist; create it or check the URI"
    if any(k in msg for k in ("ACCESS_DENIED", "AccessDenied", "INVALID_ACCESS_KEY_ID", "SIGNATURE_DOES_NOT_MATCH",
                              "InvalidAccessKeyId", "SignatureDoesNotMatch", "Forbidden", "response code: 403")):
        return "access denied; check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY and the bucket's permissions"
    if "NETWORK_CONNECTION" in msg or "curlCode" in msg or "Could not connect" in msg or "resolve host" in msg:
        return "cannot reach the storage endpoint; check AWS_ENDPOINT_URL / AWS_REGION and the network"
    return f"storage error ({msg[:300]})"


def _glob_regex(pattern: str) -> re.Pattern:
    """``glob.glob(..., recursive=True)`` rules on a key: ``*`` and ``?`` stay within one
    level, ``**/`` spans any number of levels (none too), ``[...]`` is a character class."""
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:[^/]*/)*")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        elif pattern[i] == "[" and "]" in pattern[i + 2:]:
            j = pattern.index("]", i + 2)
            out.append(fnmatch.translate(pattern[i:j + 1])[4:-3])  # fnmatch's class, unwrapped
            i = j + 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out) + r"\Z", re.S)


class RemotePath:
    """An object (or prefix) in a ``pyarrow.fs`` filesystem, addressed by its URI.

    Only the URI is stored (picklable: shard tasks carry it to workers); the filesystem is
    built from the environment on first use in each process.
    """

    __slots__ = ("uri",)

    def __init__(self, uri: str):
        m = _SCHEME.match(uri)
        if not m:
            raise ValueError(f"not a URI: {uri!r}")
        rest = uri[m.end():].rstrip("/")
        self.uri = f"{m.group(1).lower()}://{rest}"

    # -- naming (pure) ---------------------------------------------------------------------
    @property
    def scheme(self) -> str:
        return self.uri.split("://", 1)[0]

    @property
    def _rest(self) -> str:
        return self.uri.split("://", 1)[1]

    @property
    def bucket(self) -> str:
        return self._rest.split("/", 1)[0]

    @property
    def key(self) -> str:
        parts = self._rest.split("/", 1)
        return parts[1] if len(parts) > 1 else ""

    @property
    def name(self) -> str:
        return PurePosixPath(self.key).name if self.key else ""

    @property
    def suffix(self) -> str:
        return PurePosixPath(self.name).suffix

    @property
    def stem(self) -> str:
        return PurePosixPath(self.name).stem

    @property
    def parent(self) -> "RemotePath":
        if not self.key:
            return self
        up = str(PurePosixPath(self.key).parent)
        return RemotePath(f"{self.scheme}://{self.bucket}" + ("" if up == "." else f"/{up}"))

    @property
    def parents(self) -> list["RemotePath"]:
        out, p = [], self
        while p.key:
            p = p.parent
            out.append(p)
        return out

    def with_name(self, name: str) -> "RemotePath":
        return self.parent / name

    def __truediv__(self, other) -> "RemotePath":
        tail = str(other).strip("/")
        return RemotePath(f"{self.uri}/{tail}") if tail else self

    def relative_to(self, other: "RemotePath") -> PurePosixPath:
        if not isinstance(other, RemotePath) or not (self == other or other in self.parents):
            raise ValueError(f"{self} is not under {other}")
        return PurePosixPath(self.uri[len(other.uri):].lstrip("/") or ".")

    def is_relative_to(self, other) -> bool:
        return isinstance(other, RemotePath) and (self == other or other in self.parents)

    def resolve(self) -> "RemotePath":
        return self

    absolute = resolve

    def as_posix(self) -> str:
        return self.uri

    def __str__(self) -> str:
        return self.uri

    def __repr__(self) -> str:
        return f"RemotePath({self.uri!r})"

    def __eq__(self, other) -> bool:
        return isinstance(other, RemotePath) and other.uri == self.uri

    def __hash__(self) -> int:
        return hash(self.uri)

    def __lt__(self, other: "RemotePath") -> bool:
        return self.uri < other.uri

    def __reduce__(self):
        return (RemotePath, (self.uri,))

    # -- the filesystem --------------------------------------------------------------------
    def _fs(self) -> tuple[pafs.FileSystem, str]:
        try:
            if self.scheme == "s3":
                endpoint, region, *creds = _s3_options()
                if not endpoint and not region:
                    region = _bucket_region(self.bucket)
                return _s3(endpoint, region, *creds), self._rest
            fs, _ = _from_uri(f"{self.scheme}://{self.bucket}")
            return fs, self._rest
        except (OSError, ValueError, TypeError) as e:
            raise StorageError(f"{self.uri}: cannot open this storage ({' '.join(str(e).split())[:200]})") from None

    @contextlib.contextmanager
    def _io(self) -> Iterator[None]:
        """pyarrow's errors as one line naming the URI (a missing object stays FileNotFoundError)."""
        try:
            yield
        except FileNotFoundError:
            raise FileNotFoundError(errno.ENOENT, "no such file or object", self.uri) from None
        except InputError:
            raise
        except OSError as e:
            raise StorageError(f"{self.uri}: {_reason(e)}") from None

    def info(self) -> pafs.FileInfo:
        fs, path = self._fs()
        with self._io():
            return fs.get_file_info(path)

    def exists(self) -> bool:
        return self.info().type != pafs.FileType.NotFound

    def is_file(self) -> bool:
        return self.info().type == pafs.FileType.File

    def is_dir(self) -> bool:
        return self.info().type == pafs.FileType.Directory

    def is_symlink(self) -> bool:
        return False

    def bucket_exists(self) -> bool:
        return RemotePath(f"{self.scheme}://{self.bucket}").info().type != pafs.FileType.NotFound

    def stat(self) -> SimpleNamespace:
        i = self.info()
        if i.type == pafs.FileType.NotFound:
            raise FileNotFoundError(errno.ENOENT, "no such file or object", self.uri)
        return SimpleNamespace(st_size=i.size or 0, st_mtime=i.mtime.timestamp() if i.mtime else 0.0)

    def files(self) -> list["RemotePath"]:
        """Every object under this prefix, recursively, sorted."""
        fs, path = self._fs()
        with self._io():
            infos = fs.get_file_info(pafs.FileSelector(path, recursive=True, allow_not_found=True))
        base = f"{self.scheme}://"
        return sorted(RemotePath(base + i.path) for i in infos if i.type == pafs.FileType.File)

    def glob(self, pattern: str) -> list["RemotePath"]:
        """Objects under this prefix whose path relative to it matches ``pattern`` (fnmatch; ``**`` too)."""
        rx = _glob_regex(pattern)
        return [f for f in self.files() if rx.match(f.relative_to(self).as_posix())]

    def input_file(self):
        fs, path = self._fs()
        with self._io():
            return fs.open_input_file(path)

    def open(self, mode: str = "r", encoding: str | None = None, newline: str | None = None):
        """Read-only, like ``Path.open``; writes go through :func:`curate.io.atomic.atomic_path`."""
        if mode not in ("r", "rb", "rt"):
            raise ValueError(f"{self.uri}: objects are opened read-only here (mode {mode!r})")
        fs, path = self._fs()
        with self._io():
            raw = io.BufferedReader(fs.open_input_stream(path), buffer_size=1 << 20)
        if "b" in mode:
            return raw
        return io.TextIOWrapper(raw, encoding=encoding or "utf-8", newline=newline)

    def read_bytes(self) -> bytes:
        with self.open("rb") as f:
            with self._io():
                return f.read()

    def read_text(self, encoding: str = "utf-8") -> str:
        return self.read_bytes().decode(encoding)

    def write_bytes(self, data: bytes) -> None:
        """One small object in one request: visible whole or not at all."""
        fs, path = self._fs()
        with self._io():
            with fs.open_output_stream(path) as f:
                f.write(data)

    def write_text(self, text: str, encoding: str = "utf-8") -> None:
        self.write_bytes(text.encode(encoding))

    def unlink(self, missing_ok: bool = False) -> None:
        fs, path = self._fs()
        try:
            with self._io():
                fs.delete_file(path)
        except FileNotFoundError:
            if not missing_ok:
                raise

    def rmtree(self) -> None:
        fs, path = self._fs()
        with self._io():
            if fs.get_file_info(path).type == pafs.FileType.Directory:
                fs.delete_dir(path)

    def mkdir(self, parents: bool = False, exist_ok: bool = False) -> None:
        """Nothing to do: prefixes exist as soon as an object is written under them."""

    # -- committing a file written locally -------------------------------------------------
    def staging(self) -> "RemotePath":
        """The prefix holding this object's temporaries: ``<parent>/.curate-tmp-<name>``."""
        return self.with_name(f"{TMP_PREFIX}{self.name}")

    def upload(self, local: Path) -> None:
        """Put the local file ``local`` at this URI so that no partial object is ever visible.

        The bytes go to a temporary object under :meth:`staging` first (an interrupted upload
        can leave only that); a server-side copy then creates the final object in one request
        (whole or absent), and the temporary is removed.
        """
        fs, path = self._fs()
        tmp = self.staging() / secrets.token_hex(8)
        _, tmp_path = tmp._fs()
        with self._io():
            pafs.copy_files(str(local), tmp_path, source_filesystem=pafs.LocalFileSystem(),
                            destination_filesystem=fs)
            cancel.check()  # a signal received during the upload (even if swallowed): no copy
            fs.copy_file(tmp_path, path)
        self.staging().rmtree()
