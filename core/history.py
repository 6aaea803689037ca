"""A run's events in memory: the latest as objects, older ones packed as compressed JSON.

The engine keeps every event of its run so that a console attaching late, `watch` or a
recovered journal can have them all. As objects, the 660,000 events of a run of 10,000 nodes
took 200 MB; packed a block at a time (the JSON the journal already wrote, compressed) they
take a tenth of that. Reading an old event unpacks its block (a few milliseconds); the last
block read stays unpacked, so reading forwards costs that once per block. Blocks are compressed
on a thread of their own (zlib lets go of the interpreter while it works): at 30,000 events a
second the compression was a twentieth of the engine's time.
"""

from __future__ import annotations

import threading
import zlib
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import overload

from rollgate.core.events import Event, event_from_json

BLOCK = 1024  # events per packed block (orjson leaves each record in a 4 KB buffer until then)

_packer: ThreadPoolExecutor | None = None
_packer_lock = threading.Lock()


def _pack(data: bytes) -> Future[bytes]:
    """`data` compressed, by the one packing thread (blocks stay in order)."""
    global _packer
    with _packer_lock:
        if _packer is None:
            _packer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rollgate-history")
    return _packer.submit(zlib.compress, data, 1)


class History(Sequence[Event]):
    """The events of a run in order; appended to, never changed."""

    def __init__(self, events: Iterable[Event] = ()):
        # BLOCK events each, JSON lines compressed (a Future while the packing thread works)
        self._packed: list[bytes | Future[bytes]] = []
        self._recent: list[Event] = []  # the events after those, as objects
        self._recent_json: list[bytes] = []  # ... and their JSON, until packed
        self._unpacked: tuple[int, list[Event]] = (-1, [])  # the last block read
        for event in events:
            self.append(event)

    def append(self, event: Event, json: bytes | None = None) -> None:
        """Add `event` (`json`: its record as the journal wrote it, when at hand)."""
        self._recent.append(event)
        self._recent_json.append(json if json is not None else event.to_json_bytes())
        if len(self._recent) >= 2 * BLOCK:  # the newest block stays whole for followers
            if self._packed and isinstance(self._packed[-1], Future) and self._packed[-1].done():
                self._packed[-1] = self._packed[-1].result()  # the previous one, ready now
            self._packed.append(_pack(b"\n".join(self._recent_json[:BLOCK])))
            del self._recent[:BLOCK], self._recent_json[:BLOCK]

    def __len__(self) -> int:
        return len(self._packed) * BLOCK + len(self._recent)

    @overload
    def __getitem__(self, index: int) -> Event: ...

    @overload
    def __getitem__(self, index: slice) -> list[Event]: ...

    def __getitem__(self, index: int | slice) -> Event | list[Event]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        packed = len(self._packed) * BLOCK
        if not 0 <= index < packed + len(self._recent):
            raise IndexError("history index out of range")
        if index >= packed:
            return self._recent[index - packed]
        block, at = divmod(index, BLOCK)
        if self._unpacked[0] != block:
            stored = self._packed[block]
            if isinstance(stored, Future):
                stored = self._packed[block] = stored.result()
            lines = zlib.decompress(stored).split(b"\n")
            self._unpacked = (block, [event_from_json(line) for line in lines])
        return self._unpacked[1][at]

    def __iter__(self) -> Iterator[Event]:
        for index in range(len(self)):  # what was appended when the walk began
            yield self[index]

    def index_of_seq(self, seq: int) -> int:
        """The index of the first event numbered `seq` or later (len() when none is): events
        are numbered one after another, so it is counted from the first one's number."""
        if not len(self):
            return 0
        return max(0, min(len(self), seq - self[0].seq))
