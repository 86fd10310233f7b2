"""The exceptions a :class:`~codebegen_storage.StorageManager` raises.

Every failure of the API is a :class:`StorageError` carrying the API's error ``code`` (branch on it), the HTTP
``status`` (``None`` when no answer came back) and its ``message`` (show it). The subclasses group the codes of
docs/API.md "Errors", so ``except NotFound`` and ``except Conflict`` read the way the API means them.
"""

from __future__ import annotations

from typing import Optional

__all__ = [
    "StorageError",
    "BadRequest",
    "Unauthorized",
    "Forbidden",
    "NotFound",
    "Conflict",
    "VersionConflict",
    "GenerationConflict",
    "PayloadTooLarge",
    "ServerError",
    "ServiceUnavailable",
    "NetworkError",
    "ChecksumMismatch",
    "error_for",
]


class StorageError(Exception):
    """A request to the storage API failed.

    Attributes:
        code: the API's error code (``generation_not_found``, ``version_conflict``, …), or one of this client's own:
            ``network_error`` (no answer), ``unexpected_response`` (an answer that is not the API's),
            ``checksum_mismatch`` (downloaded bytes that do not match their sha256).
        status: the HTTP status, or ``None`` when no answer came back.
        message: the API's message, for people.
        attempts: how many times the request was sent (more than one when 5xx or network errors were retried).
    """

    code: str
    status: Optional[int]
    message: str
    attempts: int

    def __init__(self, code: str, message: str, status: Optional[int] = None, *, attempts: int = 1) -> None:
        super().__init__(code, message, status)
        self.code = code
        self.status = status
        self.message = message
        self.attempts = attempts

    @property
    def retryable(self) -> bool:
        """Whether sending the same request again may succeed (5xx and network errors; never a 4xx)."""
        return self.status is None or self.status >= 500

    def __str__(self) -> str:
        where = f"HTTP {self.status}" if self.status is not None else "no answer"
        tries = f" (after {self.attempts} attempts)" if self.attempts > 1 else ""
        return f"{self.code}: {self.message} [{where}{tries}]"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, status={self.status!r}, message={self.message!r}, attempts={self.attempts})"

    def __reduce__(self) -> tuple[object, ...]:
        # Picklable (multiprocessing, task queues) whatever a subclass's __init__ takes.
        return (_rebuild, (type(self), self.code, self.message, self.status, self.attempts))


class BadRequest(StorageError):
    """400 ``invalid_request`` / ``invalid_json`` / ``invalid_path``, 415 ``unsupported_media_type``: fix the request."""


class Unauthorized(StorageError):
    """401: a missing, wrong or expired service key or token, or an expired or altered download link."""


class Forbidden(StorageError):
    """403 ``forbidden``."""


class NotFound(StorageError):
    """404 ``generation_not_found`` / ``project_not_found`` (missing, or someone else's), or ``not_found`` (route)."""


class Conflict(StorageError):
    """409: the save cannot be stored as asked."""


class VersionConflict(Conflict):
    """409 ``version_conflict``: that version of the project exists, or existed (versions are never reused)."""


class GenerationConflict(Conflict):
    """409 ``generation_conflict``: the generation id is taken, holds other content, or the project has another owner."""


class PayloadTooLarge(StorageError):
    """413 ``payload_too_large``: over a file, generation, metadata or request limit."""


class ServerError(StorageError):
    """A 5xx answer (retried before it is raised)."""


class ServiceUnavailable(ServerError):
    """503 (``storage_unavailable``, ``cloud_unavailable``, ``auth_unavailable``): send it again later."""


class NetworkError(StorageError):
    """No answer: the connection was refused, reset or timed out (retried before it is raised)."""

    def __init__(self, message: str, *, attempts: int = 1) -> None:
        super().__init__("network_error", message, None, attempts=attempts)


class ChecksumMismatch(StorageError):
    """Downloaded bytes whose sha256 is not the one the API recorded for the generation."""


def _rebuild(cls: type[StorageError], code: str, message: str, status: Optional[int], attempts: int) -> StorageError:
    err = StorageError.__new__(cls)
    StorageError.__init__(err, code, message, status, attempts=attempts)
    return err


_BY_CODE: dict[str, type[StorageError]] = {
    "version_conflict": VersionConflict,
    "generation_conflict": GenerationConflict,
}

_BY_STATUS: dict[int, type[StorageError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    415: BadRequest,
    503: ServiceUnavailable,
}


def error_for(status: int, code: str, message: str, *, attempts: int = 1) -> StorageError:
    """The exception for an error answer: by its code first, then by its status."""
    cls = _BY_CODE.get(code) or _BY_STATUS.get(status) or (ServerError if status >= 500 else StorageError)
    return cls(code, message, status, attempts=attempts)
