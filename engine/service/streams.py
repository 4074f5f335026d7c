"""The request side of a client stream, bounded: ``BoundedStream`` reads the messages in a
thread of its own and hands them over with

- ``stream_idle_timeout``: the longest wait for the next message (the first one included);
- ``max_stream_messages`` and ``max_stream_bytes``: of the whole stream, header included;
- ``max_stream_seconds``: from the start of the call to its last request message.

Each limit, once passed, is ``LimitExceededError`` (RESOURCE_EXHAUSTED naming it) raised
in the handler's thread, which then ends the call; the reading thread ends with the call.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from typing import Any

from engine.errors import LimitExceededError
from engine.service.config import ServerConfig

_END = object()


class BoundedStream:
    """An iterator over the request messages of one call, within the stream limits."""

    def __init__(self, requests: Iterator[Any], config: ServerConfig) -> None:
        self.config = config
        self.started = time.monotonic()
        self.messages = 0
        self.bytes = 0
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=2)
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._pump, args=(requests,),
                                        name="equity-stream", daemon=True)
        self._thread.start()

    def _pump(self, requests: Iterator[Any]) -> None:
        try:
            for message in requests:
                while not self._stopped.is_set():
                    try:
                        self._queue.put(("msg", message), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if self._stopped.is_set():
                    return
            self._queue.put(("end", _END))
        except BaseException as exc:  # the call ended, or a malformed message
            self._queue.put(("error", exc))

    def close(self) -> None:
        self._stopped.set()

    def __iter__(self) -> BoundedStream:
        return self

    def __next__(self) -> Any:
        config = self.config
        remaining = config.max_stream_seconds - (time.monotonic() - self.started)
        wait = min(config.stream_idle_timeout, max(remaining, 0.0))
        try:
            kind, item = self._queue.get(timeout=wait)
        except queue.Empty:
            self.close()
            elapsed = round(time.monotonic() - self.started, 3)
            if remaining <= config.stream_idle_timeout:
                raise LimitExceededError("max_stream_seconds", elapsed,
                                         config.max_stream_seconds) from None
            raise LimitExceededError("stream_idle_timeout", config.stream_idle_timeout,
                                     config.stream_idle_timeout) from None
        if kind == "end":
            raise StopIteration
        if kind == "error":
            raise item
        self.messages += 1
        if self.messages > config.max_stream_messages:
            self.close()
            raise LimitExceededError("max_stream_messages", self.messages,
                                     config.max_stream_messages)
        size = item.ByteSize() if hasattr(item, "ByteSize") else 0
        self.bytes += size
        if self.bytes > config.max_stream_bytes:
            self.close()
            raise LimitExceededError("max_stream_bytes", self.bytes, config.max_stream_bytes)
        return item


__all__ = ["BoundedStream"]
