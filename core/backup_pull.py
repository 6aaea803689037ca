"""A backup file copied from a node to the run directory: the output of `sha256sum FILE &&
base64 FILE` (the recipe's pull-* actions) written back to bytes and checked against the sum
the node computed before sending them."""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
from pathlib import Path

_SUM_LINE = re.compile(r"^([0-9a-f]{64})\s+\*?(.+)$")


class BackupReceiver:
    """Takes a pull step's stdout lines; `finish()` says what arrived, or what went wrong."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.remote: str | None = None
        self.expected: str | None = None
        self.local: Path | None = None
        self._file: int | None = None
        self._hash = hashlib.sha256()
        self._pending = ""  # base64 characters not yet decoded (a multiple of 4 is decoded)
        self.size = 0
        self.problem = ""

    def line(self, text: str) -> None:
        if self.problem:
            return
        if self.expected is None:
            found = _SUM_LINE.match(text.strip())
            if found is None:
                self.problem = f"expected a sha256sum line first, got {text[:80]!r}"
                return
            self.expected, self.remote = found.group(1), found.group(2)
            self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            self.local = self.folder / Path(self.remote).name
            self._file = os.open(self.local, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            return
        self._pending += text.strip()
        cut = len(self._pending) - len(self._pending) % 4
        try:
            data = base64.b64decode(self._pending[:cut], validate=True)
        except binascii.Error:
            self.problem = "the copy is not base64: the node sent something else"
            return
        self._pending = self._pending[cut:]
        self._write(data)

    def _write(self, data: bytes) -> None:
        assert self._file is not None
        self._hash.update(data)
        self.size += len(data)
        view = memoryview(data)
        while view:
            view = view[os.write(self._file, view) :]

    def finish(self) -> str:
        """ "" when the file arrived whole and its sha256 is the node's, else why not."""
        if self._file is not None:
            os.fsync(self._file)
            os.close(self._file)
            self._file = None
        if self.problem:
            return self.problem
        if self.expected is None:
            return "the node sent nothing: no sha256sum line"
        if self._pending:
            return "the copy ended in the middle of a base64 block"
        got = self._hash.hexdigest()
        if got != self.expected:
            return f"sha256 {got} of the copy is not the node's {self.expected}"
        return ""
