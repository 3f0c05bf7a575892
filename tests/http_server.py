"""A tiny web server for the download tests (tests/test_download.py): run as a script, it listens
on a free port of 127.0.0.1, prints the port on its first line and serves until killed.

    /<GOOD_NAME>       GOOD_BYTES, whose SHA-256 starts with the hex in the name
    /<WRONG_NAME>      bytes whose SHA-256 does not match the hex in the name
    /<TRUNCATED_NAME>  a Content-Length larger than the body, then the connection closed
    anything else      404
"""

from __future__ import annotations

import hashlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def digest_name(stem: str, data: bytes) -> str:
    """torchvision's file-name form: `<stem>-<first 8 hex of the SHA-256 of data>.pth`."""
    return f"{stem}-{hashlib.sha256(data).hexdigest()[:8]}.pth"


GOOD_BYTES = b"tiny weights\n" * 100
GOOD_NAME = digest_name("tiny", GOOD_BYTES)
WRONG_NAME = digest_name("wrong", b"other bytes")
TRUNCATED_NAME = digest_name("cut", GOOD_BYTES)
TRUNCATED_SENT = 100  # bytes of GOOD_BYTES sent before the connection is closed


class Handler(BaseHTTPRequestHandler):
    """The four answers of the module docstring."""

    def do_GET(self) -> None:
        name = self.path.lstrip("/")
        if name == GOOD_NAME:
            self._send(GOOD_BYTES, len(GOOD_BYTES))
        elif name == WRONG_NAME:
            self._send(GOOD_BYTES, len(GOOD_BYTES))
        elif name == TRUNCATED_NAME:
            self._send(GOOD_BYTES[:TRUNCATED_SENT], len(GOOD_BYTES))
        else:
            self.send_error(404)

    def _send(self, body: bytes, announced: int) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(announced))
        self.end_headers()
        self.wfile.write(body)
        self.close_connection = True

    def log_message(self, format, *args) -> None:
        """Silent: the tests read only the port line."""


def main() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
