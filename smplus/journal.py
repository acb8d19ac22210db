"""The journal of a run: what has been rendered, in OUT/.smplus/journal.sqlite.

One writer, the driver: workers write only their image (atomically, fsync'd)
and return its entry; the driver records entries here and commits every few
hundred (or every few seconds). An entry is the whole JSON object
render_task returned, so keys added by later versions are kept as they are.
Entries are keyed by the image's position in the source, so reading them in
key order is reading them in source order, and the journals of several shards
merge by that key.

A resume is a query plus a check of each entry: an entry that does not parse,
does not belong to the image at its position, or whose image is missing or
empty is not done, and that image is rendered again. A journal that is not a
database at all is moved aside and every image rendered again. An image
written just before a kill but not yet committed is simply rendered again
(the same bytes).
"""

from __future__ import annotations

import os
import sqlite3
import time
from typing import Iterable, Iterator, List, Sequence, Set, Tuple

import orjson

from .assemble import dumps
from .coco import CocoDataset
from .errors import OutputError
from .plan import ImagePlan
from .task import output_image_path

JOURNAL_FILE = "journal.sqlite"
COMMIT_EVERY = 256      # entries
COMMIT_SECONDS = 0.5    # a kill loses at most this much rendering (a commit costs ~ms)


class Journal:
    """OUT/.smplus/journal.sqlite: one entry per image, keyed by its position in the source."""

    def __init__(self, state_dir: str):
        self.path = os.path.join(state_dir, JOURNAL_FILE)
        self._pending: List[Tuple[int, int, str]] = []
        self._last_commit = time.monotonic()
        self._db = self._connect()

    def _connect(self) -> sqlite3.Connection:
        try:
            db = sqlite3.connect(self.path)
            db.execute("CREATE TABLE IF NOT EXISTS entries "
                       "(position INTEGER PRIMARY KEY, image_id INTEGER NOT NULL, entry BLOB NOT NULL)")
            db.commit()
            return db
        except sqlite3.DatabaseError as e:
            if os.path.exists(self.path) and "not a database" in str(e):
                os.replace(self.path, self.path + ".damaged")  # kept for a post-mortem; nothing in it is trusted
                return self._connect()
            raise OutputError.writing(self.path, str(e)) from None

    # ------------------------------------------------------------ writing (the driver only)

    def record(self, position: int, entry: dict) -> None:
        self._pending.append((position, entry["image_id"], dumps(entry)))
        if len(self._pending) >= COMMIT_EVERY or time.monotonic() - self._last_commit >= COMMIT_SECONDS:
            self.commit()

    def commit(self) -> None:
        pending, self._pending = self._pending, []
        try:
            self._db.executemany("INSERT OR REPLACE INTO entries VALUES (?, ?, ?)", pending)
            self._db.commit()
        except sqlite3.Error as e:
            raise OutputError.writing(self.path, str(e)) from None
        self._last_commit = time.monotonic()

    def close(self) -> None:
        try:
            if self._pending:
                self.commit()
        finally:
            self._db.close()

    def __enter__(self) -> "Journal":
        return self

    def __exit__(self, *exc) -> None:
        if exc[0] is None:
            self.close()
        else:  # keep what was recorded; an error while committing must not hide the first one
            try:
                self.close()
            except OutputError:
                pass

    # ------------------------------------------------------------ reading

    def entries(self) -> Iterator[Tuple[int, dict]]:
        """(position, entry) in source order, streamed."""
        if self._pending:
            self.commit()
        for position, text in self._db.execute("SELECT position, entry FROM entries ORDER BY position"):
            yield position, orjson.loads(text)

    def scan(self, plans: Sequence[ImagePlan], ds: CocoDataset, out_dir: str,
             file_prefix: str = "") -> Tuple[Set[int], Set[int]]:
        """Positions whose entry is sound: (rendered, with its image in OUT; skipped)."""
        done, skipped = set(), set()
        try:
            for position, image_id, text in self._db.execute("SELECT position, image_id, entry FROM entries"):
                entry = _parse(text)
                if (entry is None or not 0 <= position < len(plans) or plans[position].image_id != image_id
                        or entry.get("image_id") != image_id):
                    continue
                if entry.get("skipped") is not None:
                    skipped.add(position)
                elif _nonempty(output_image_path(out_dir, ds.images[image_id], file_prefix)):
                    done.add(position)
        except sqlite3.DatabaseError:  # damaged beyond reading: start the journal again
            self._db.close()
            os.replace(self.path, self.path + ".damaged")
            self._db = self._connect()
            return set(), set()
        return done, skipped


ENTRY_KEYS = ("image_id", "width", "height", "background", "annotations", "dropped", "skipped")


def _parse(text) -> dict | None:
    try:
        entry = orjson.loads(text)
    except (ValueError, TypeError):
        return None
    return entry if isinstance(entry, dict) and all(k in entry for k in ENTRY_KEYS) else None


def _nonempty(path: str) -> bool:
    try:
        return os.stat(path).st_size > 0
    except OSError:
        return False


def merged_entries(journals: Iterable[Journal]) -> Iterator[Tuple[int, dict]]:
    """The entries of several journals (disjoint positions) in source order."""
    import heapq

    return heapq.merge(*(j.entries() for j in journals), key=lambda pe: pe[0])
