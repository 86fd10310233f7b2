"""`StorageManager`: CodebeGen's backend calling the codebegen-storage ``generations`` API.

Standard library only: each request is a blocking ``urllib.request`` call run in a worker thread
(``asyncio.to_thread``), so the event loop of a FastAPI app never waits on the network.
"""

from __future__ import annotations

import asyncio
import email.message
import hashlib
import http.client
import json
import logging
import random
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass
from typing import Any, AsyncIterator, Dict, List, Mapping, Optional, Tuple, TypedDict, Union, cast

from ._version import __version__
from .errors import ChecksumMismatch, NetworkError, NotFound, StorageError, error_for

__all__ = ["StorageManager", "StorageInfo", "GenerationSummary", "GenerationInfo", "Id"]

log = logging.getLogger("codebegen_storage")

#: A project, generation or user id: a UUID, as a string or a :class:`uuid.UUID`.
Id = Union[str, uuid.UUID]


class StorageInfo(TypedDict):
    """Where a generation's bytes are (the ``storage`` object of every answer)."""

    #: ``{project_id}/generations/v{version}__{generation_id}``, relative to the server's ``STORAGE_PATH``.
    local_path: str
    cloud_enabled: bool
    #: True once the archive is verified in the Supabase Storage bucket.
    uploaded: bool
    #: ``local`` | ``pending`` | ``uploaded`` | ``failed`` | ``lost`` (docs/API.md).
    status: str


class GenerationSummary(TypedDict):
    """A generation as listed (no download URL)."""

    generation_id: str
    project_id: str
    version: int
    file_count: int
    total_size_bytes: int
    #: sha256 (hex) of the exact ``tar.gz`` bytes the download serves.
    sha256: str
    archive_size_bytes: int
    #: ISO 8601, UTC.
    created_at: str
    storage: StorageInfo


class GenerationInfo(GenerationSummary):
    """A saved or fetched generation: the answer shape CodebeGen's storage design promised, and more.

    ``generation_id``, ``download_url``, ``expires_in`` and ``storage {local_path, cloud_enabled, uploaded}`` are
    the promised keys; the others come from the API.
    """

    #: A signed link that downloads the ``tar.gz`` without any header (a Supabase signed URL once uploaded).
    download_url: str
    #: Seconds the link stays valid.
    expires_in: int


@dataclass(frozen=True)
class _Answer:
    status: int
    headers: email.message.Message
    body: bytes


# What a dropped, refused, reset or timed-out connection raises from urllib / http.client (URLError and
# TimeoutError are OSErrors; RemoteDisconnected and IncompleteRead are HTTPExceptions).
_NETWORK_ERRORS = (OSError, http.client.HTTPException)


class StorageManager:
    """An async client of the ``generations`` API for a backend holding the service key.

    Args:
        base_url: the functions URL: ``http://localhost:54321/functions/v1`` locally,
            ``https://<project-ref>.supabase.co/functions/v1`` on Supabase (a URL ending in ``/generations`` is
            taken as the API itself).
        service_key: the project's service key (``sb_secret_…``) or a ``service_role`` JWT; sent as
            ``Authorization: Bearer``, and never on a redirect.
        timeout: seconds each socket operation (connect, each read) may take.
        retries: how many times a request that got a 5xx or no answer is sent again (0: never). A 4xx is never
            retried. Saves are safe to repeat: a save is idempotent by ``generation_id``.
        backoff: the first retry's delay in seconds; it doubles each time, with jitter, up to ``max_backoff``.
        max_backoff: the longest delay between two attempts.

    Every method raises a :class:`~codebegen_storage.StorageError` subclass carrying the API's ``code``.
    """

    def __init__(
        self,
        base_url: str,
        service_key: str,
        *,
        timeout: float = 30.0,
        retries: int = 3,
        backoff: float = 0.5,
        max_backoff: float = 8.0,
    ) -> None:
        parsed = urllib.parse.urlsplit(base_url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError(f"base_url must be an absolute http(s) URL, e.g. http://localhost:54321/functions/v1; got {base_url!r}")
        if not isinstance(service_key, str) or not service_key.strip():
            raise ValueError("service_key must be the service key (a non-empty string)")
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ValueError(f"retries must be a whole number >= 0, got {retries!r}")
        if timeout <= 0 or backoff < 0 or max_backoff < 0:
            raise ValueError("timeout must be > 0, backoff and max_backoff >= 0")
        base = base_url.rstrip("/")
        self.endpoint: str = base if base.endswith("/generations") else f"{base}/generations"
        self.timeout = float(timeout)
        self.retries = retries
        self.backoff = float(backoff)
        self.max_backoff = float(max_backoff)
        self._key = service_key.strip()
        # Honours the usual proxy environment variables, as urllib does.
        self._opener = urllib.request.build_opener()

    def __repr__(self) -> str:  # never the key
        return f"StorageManager({self.endpoint!r}, retries={self.retries}, timeout={self.timeout})"

    # ------------------------------------------------------------------ the API

    async def save_generation(
        self,
        project_id: Id,
        generation_id: Optional[Id],
        version: Optional[int],
        files: Mapping[str, str],
        metadata: Optional[Mapping[str, Any]] = None,
        *,
        owner_id: Optional[Id] = None,
    ) -> GenerationInfo:
        """Saves a generation: the arguments of CodebeGen's ``FileManager.save_generation_files_hierarchical``.

        Args:
            project_id: the project; created by its first save.
            generation_id: the generation's id. ``None``: one is made here, before the first attempt, so that a
                retry is still a replay of the same save.
            version: the version number, or ``None`` for the project's next (concurrent saves get distinct ones).
            files: relative path -> UTF-8 text content.
            metadata: a JSON object stored in ``manifest.json`` (e.g. ``{"prompt": …}``).
            owner_id: the user the project belongs to. Needed for a project's first generation only: later saves
                into it are its owner's; naming another owner there is a :class:`GenerationConflict`.

        Returns:
            The saved generation (:class:`GenerationInfo`), with ``download_url``, ``expires_in`` and ``storage``.
            Sending the same generation again answers the same.

        Raises:
            BadRequest: an invalid field or path, or ``owner_id`` missing for a project's first generation.
            VersionConflict: that version exists or existed.
            GenerationConflict: the id holds other content, or the project belongs to another owner.
            PayloadTooLarge: over the server's limits.
            ServerError, NetworkError: still failing after the retries (the save can be sent again as is).
        """
        body: Dict[str, Any] = {
            "project_id": _id(project_id, "project_id"),
            "generation_id": _id(generation_id, "generation_id") if generation_id is not None else str(uuid.uuid4()),
            "files": _files(files),
        }
        if version is not None:
            if isinstance(version, bool) or not isinstance(version, int):
                raise TypeError(f"version must be an int or None, got {type(version).__name__}")
            body["version"] = version
        if metadata is not None:
            if not isinstance(metadata, Mapping):
                raise TypeError(f"metadata must be a dict or None, got {type(metadata).__name__}")
            body["metadata"] = dict(metadata)
        if owner_id is not None:
            body["owner_id"] = _id(owner_id, "owner_id")
        answer = await self._request("POST", "", payload=body, ok=(201,))
        return cast(GenerationInfo, _json(answer))

    async def get_generation(self, generation_id: Id) -> GenerationInfo:
        """One generation, with a freshly signed ``download_url``. Raises :class:`NotFound` if it does not exist."""
        answer = await self._request("GET", f"/{_path_id(generation_id)}")
        return cast(GenerationInfo, _json(answer))

    async def get_download_url(self, generation_id: Id) -> str:
        """A freshly signed link to the generation's ``tar.gz`` (valid ``expires_in`` seconds, no header needed)."""
        return (await self.get_generation(generation_id))["download_url"]

    async def iter_project_generations(self, project_id: Id, *, page_size: int = 100) -> AsyncIterator[GenerationSummary]:
        """The project's generations, newest version first, fetched a page at a time (``page_size`` 1–100)."""
        if isinstance(page_size, bool) or not isinstance(page_size, int) or not 1 <= page_size <= 100:
            raise ValueError(f"page_size must be 1 to 100, got {page_size!r}")
        query: Dict[str, str] = {"project_id": _id(project_id, "project_id"), "limit": str(page_size)}
        while True:
            page = _json(await self._request("GET", "", query=query))
            for item in page.get("items", []):
                yield cast(GenerationSummary, item)
            cursor = page.get("next_cursor")
            if not cursor:
                return
            query["cursor"] = cursor

    async def list_project_generations(self, project_id: Id, *, page_size: int = 100) -> List[GenerationSummary]:
        """Every generation of the project (all pages), newest version first. :class:`NotFound` for no such project."""
        return [g async for g in self.iter_project_generations(project_id, page_size=page_size)]

    async def delete_generation(self, generation_id: Id) -> None:
        """Deletes the generation and every copy of it. :class:`NotFound` if there was none.

        If an attempt got no answer (or a 5xx) and the retry then answers 404, the first attempt did the delete:
        that counts as deleted, not as :class:`NotFound`.
        """
        try:
            await self._request("DELETE", f"/{_path_id(generation_id)}", ok=(204,))
        except NotFound as err:
            if err.attempts > 1 and err.code == "generation_not_found":
                log.info("delete of %s: gone after a retried attempt, counted as deleted", generation_id)
                return
            raise

    async def download_archive(self, generation_id: Id) -> bytes:
        """The generation's ``tar.gz`` bytes, checked against the sha256 the API recorded."""
        answer = await self._request("GET", f"/{_path_id(generation_id)}/download", accept="application/gzip")
        expected = answer.headers.get("x-checksum-sha256")
        actual = hashlib.sha256(answer.body).hexdigest()
        if expected and expected.lower() != actual:
            raise ChecksumMismatch("checksum_mismatch", f"downloaded {len(answer.body)} bytes with sha256 {actual}, the API recorded {expected}", answer.status)
        return answer.body

    async def health(self) -> Dict[str, Any]:
        """The API's health report (``status`` ``ok`` or ``degraded``; a degraded one is returned, not raised)."""
        return _json(await self._request("GET", "/health", ok=(200, 503)))

    # ------------------------------------------------------------------ transport

    async def _request(
        self,
        method: str,
        path: str,
        *,
        query: Optional[Mapping[str, str]] = None,
        payload: Optional[Mapping[str, Any]] = None,
        ok: Tuple[int, ...] = (200,),
        accept: str = "application/json",
    ) -> _Answer:
        url = self.endpoint + path + (f"?{urllib.parse.urlencode(query)}" if query else "")
        headers = {"Accept": accept, "User-Agent": f"codebegen-storage-python/{__version__}"}
        data: Optional[bytes] = None
        if payload is not None:
            data = _encode(payload)
            headers["Content-Type"] = "application/json"
        attempt = 0
        while True:
            attempt += 1
            retry_after: Optional[float] = None
            try:
                answer = await asyncio.to_thread(self._exchange, method, url, data, headers)
            except _NETWORK_ERRORS as exc:
                reason = _describe(exc)
                failure: StorageError = NetworkError(f"{method} {self.endpoint}{path}: {reason}", attempts=attempt)
                cause: Optional[BaseException] = exc
            else:
                if answer.status in ok:
                    return answer
                failure = _error(answer, attempt)
                reason = f"HTTP {answer.status} {failure.code}: {failure.message}"
                cause = None
                retry_after = _retry_after(answer)
            if not failure.retryable or attempt > self.retries:
                raise failure from cause
            delay = self._delay(attempt, retry_after)
            log.warning("%s %s%s: %s; retry %d of %d in %.2fs", method, self.endpoint, path, reason, attempt, self.retries, delay)
            await asyncio.sleep(delay)

    def _delay(self, attempt: int, retry_after: Optional[float]) -> float:
        """Exponential backoff with jitter: half the step fixed, half random; at least a server's Retry-After."""
        step = min(self.max_backoff, self.backoff * 2.0 ** (attempt - 1))
        delay = step / 2 + random.uniform(0, step / 2)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.max_backoff))
        return delay

    def _exchange(self, method: str, url: str, data: Optional[bytes], headers: Mapping[str, str]) -> _Answer:
        """One blocking HTTP exchange (run in a worker thread). An HTTP error status is an answer, not an exception."""
        req = urllib.request.Request(url, data=data, method=method)
        for name, value in headers.items():
            req.add_header(name, value)
        # Unredirected: the key is never sent on to wherever a redirect points.
        req.add_unredirected_header("Authorization", f"Bearer {self._key}")
        try:
            with self._opener.open(req, timeout=self.timeout) as res:
                return _Answer(res.status, res.headers, res.read())
        except urllib.error.HTTPError as err:
            try:
                body = err.read()
            finally:
                err.close()
            return _Answer(err.code, err.headers, body)


# ---------------------------------------------------------------------- helpers


def _id(value: Id, field: str) -> str:
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, str):
        return value
    raise TypeError(f"{field} must be a UUID (str or uuid.UUID), got {type(value).__name__}")


def _path_id(value: Id) -> str:
    return urllib.parse.quote(_id(value, "generation_id"), safe="")


def _files(files: Mapping[str, str]) -> Dict[str, str]:
    if not isinstance(files, Mapping):
        raise TypeError(f"files must be a dict of path -> str content, got {type(files).__name__}")
    out: Dict[str, str] = {}
    for path, content in files.items():
        if not isinstance(path, str):
            raise TypeError(f"files: a path must be a str, got {type(path).__name__} {path!r}")
        if not isinstance(content, str):
            raise TypeError(f"files[{path!r}]: content must be a str (UTF-8 text), got {type(content).__name__}")
        out[path] = content
    return out


def _encode(payload: Mapping[str, Any]) -> bytes:
    """UTF-8 JSON. What JSON cannot carry as sent (NaN, infinities, unpaired surrogates) is refused here."""
    try:
        return json.dumps(payload, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode("utf-8")
    except UnicodeEncodeError as err:
        raise ValueError(f"cannot be sent as UTF-8 JSON (an unpaired surrogate?): {err}") from err
    except (TypeError, ValueError) as err:
        raise ValueError(f"cannot be sent as JSON: {err}") from err


def _json(answer: _Answer) -> Dict[str, Any]:
    try:
        value = json.loads(answer.body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        value = None
    if not isinstance(value, dict):
        raise StorageError("unexpected_response", f"HTTP {answer.status} with a body that is not a JSON object: {_snippet(answer.body)}", answer.status)
    return value


def _error(answer: _Answer, attempts: int) -> StorageError:
    """The exception for an error answer: the API's ``{"error": {"code", "message"}}``, or a description of it."""
    try:
        err = json.loads(answer.body.decode("utf-8")).get("error")
        code, message = err["code"], err["message"]
        if isinstance(code, str) and isinstance(message, str):
            return error_for(answer.status, code, message, attempts=attempts)
    except (UnicodeDecodeError, ValueError, AttributeError, KeyError, TypeError):
        pass
    return error_for(answer.status, "unexpected_response", f"HTTP {answer.status} that is not an API error: {_snippet(answer.body)}", attempts=attempts)


def _retry_after(answer: _Answer) -> Optional[float]:
    value = answer.headers.get("retry-after")
    try:
        return max(0.0, float(str(value))) if value is not None else None
    except ValueError:
        return None


def _describe(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.URLError) and not isinstance(exc, urllib.error.HTTPError):
        reason = exc.reason
        return f"{type(reason).__name__}: {reason}" if isinstance(reason, BaseException) else str(reason)
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _snippet(body: bytes, limit: int = 200) -> str:
    text = body[:limit].decode("utf-8", errors="replace")
    return repr(text + ("…" if len(body) > limit else ""))
