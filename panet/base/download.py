"""Fetching a published file where the network allows: torchvision's ImageNet weights.

`download(url, path)` streams `url` into a temporary file beside `path` with progress, checks
the announced length and the SHA-256 prefix in the file's name (torchvision's `<name>-<hex>.pth`,
as torch.hub checks it), and only then renames it to `path`. Every failure is one
`DownloadError` line.
"""

from __future__ import annotations

import hashlib
import http.client
import re
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO, Optional, Tuple

from panet.base.errors import OneLineError, one_line
from panet.base.files import atomic_write, format_size
from panet.base.monitor import Progress

CHUNK_BYTES = 2 ** 20  # one progress step
TIMEOUT_SECONDS = 30  # to connect, and between two reads
NAMED_DIGEST = re.compile(r"-([0-9a-f]{6,})\.[^.]+$")  # vgg16-397923af.pth -> 397923af


class DownloadError(OneLineError):
    """A file that could not be fetched, or came wrong; nothing was kept."""


def named_digest(path: Path) -> Optional[str]:
    """The SHA-256 prefix a file's name gives (torchvision's `<name>-<hex>.<suffix>`), or None."""
    found = NAMED_DIGEST.search(Path(path).name)
    return found.group(1) if found else None


def download(url: str, path: Path) -> Path:
    """Fetch `url` into `path` (module docstring); returns `path`. Raises DownloadError, `path`
    as it was, when the transfer fails, stops short, or does not match the named digest."""
    path = Path(path)
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_SECONDS) as response, \
                atomic_write(path) as out:
            length = (response.headers.get("Content-Length") or "").strip()
            size = int(length) if length.isdigit() else 0  # 0: not announced
            found, received = _copy(response, out, size, path.name)
            if size and received != size:
                raise DownloadError(f"the transfer of {url} stopped after {format_size(received)}"
                                    f" of {format_size(size)}; nothing was kept: try again")
            expected = named_digest(path)
            if expected and not found.startswith(expected):
                raise DownloadError(f"{url} came with SHA-256 {found[:16]}..., not the "
                                    f"{expected}... its name gives: nothing was kept (a proxy's "
                                    "error page, or a corrupted transfer): try again")
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as error:
        raise DownloadError(f"cannot download {url} ({_reason(error)})") from None
    return path


def _copy(response, out: IO[bytes], size: int, name: str) -> Tuple[str, int]:
    """Copy `response` into `out`, with progress when `size` is known; returns (hex SHA-256,
    bytes received)."""
    digest, received = hashlib.sha256(), 0
    steps = -(-size // CHUNK_BYTES)
    with Progress(max(1, steps), desc=f"download {name} (MiB)", every=steps // 10,
                  enabled=size > 0) as progress:
        for chunk in iter(lambda: response.read(CHUNK_BYTES), b""):
            out.write(chunk)
            digest.update(chunk)
            received += len(chunk)
            progress.update()
    return digest.hexdigest(), received


def _reason(error: Exception) -> str:
    """Why a transfer failed: 'HTTP Error 404: Not Found', 'timed out', ..."""
    if isinstance(error, urllib.error.HTTPError):
        return f"HTTP Error {error.code}: {error.reason}"
    reason = getattr(error, "reason", None) if isinstance(error, urllib.error.URLError) else None
    return one_line(reason if reason is not None else error) or type(error).__name__
