"""Panel results kept while the tables under them are unchanged.

The batch marts change only when a batch or ML run replaces them, and the streaming tables once
per micro-batch (every few seconds) while the live page polls every second, possibly from several
browsers. Each cached result is keyed by the panel, its parameters and the *versions* of the
tables it reads (``queries.table_versions`` / ``stream_version``: one catalog lookup), so a
result is reused exactly as long as it is still what the query would return.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any


class ResultCache:
    """A small thread-safe LRU map from keys to panel results (treated as read-only)."""

    def __init__(self, max_entries: int = 256) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: Hashable, compute: Callable[[], Any]) -> Any:
        """The cached value of ``key``, or ``compute()`` stored under it. Two threads missing at
        once both compute (the results are equal); no lock is held while computing."""
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                self.hits += 1
                return self._entries[key]
            self.misses += 1
        value = compute()
        with self._lock:
            self._entries[key] = value
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return value
