"""codebegen_storage: CodebeGen's backend saving generations to codebegen-storage.

    from codebegen_storage import StorageManager

    storage_manager = StorageManager("http://localhost:54321/functions/v1", service_key)
    result = await storage_manager.save_generation(project_id, generation_id, version, files, metadata)

Standard library only (Python 3.10+). See README.md.
"""

from ._version import __version__
from .errors import (
    BadRequest,
    ChecksumMismatch,
    Conflict,
    Forbidden,
    GenerationConflict,
    NetworkError,
    NotFound,
    PayloadTooLarge,
    ServerError,
    ServiceUnavailable,
    StorageError,
    Unauthorized,
    VersionConflict,
)
from .manager import GenerationInfo, GenerationSummary, Id, StorageInfo, StorageManager

__all__ = [
    "__version__",
    "StorageManager",
    "GenerationInfo",
    "GenerationSummary",
    "StorageInfo",
    "Id",
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
]
