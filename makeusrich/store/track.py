"""One pair's track record in the store (contract 3): the month files `<ns>/<pair>/track/<YYYY-MM>.parquet` and
their summary `<ns>/<pair>/track.json`. One process writes them (the tracker, or a replay); the dashboard and the
operator read them. The rows' schema is makeusrich.store.track_schema (pandas, loaded only to read or write rows).
"""

from __future__ import annotations

import contextlib
import io
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from makeusrich.errors import NotFoundError, StoreError
from makeusrich.store.base import PairStore
from makeusrich.store.documents import TrackSummary, parse_track_summary

if TYPE_CHECKING:  # pandas only to read or write rows: the operator reads track.json without it
    import pandas as pd

TRACK_SUMMARY = "track.json"
MONTH_RE = re.compile(r"^[0-9]{4}-(0[1-9]|1[0-2])$")


@dataclass(frozen=True)
class TrackFiles:
    """One pair's track record in the store: its month files and track.json. One process writes them (a tracker
    or a replay); every `put` replaces a whole object atomically, so readers see the old or the new file."""

    store: PairStore

    def key(self, month: str) -> str:
        if not MONTH_RE.match(month):
            raise StoreError(f"track month {month!r} is not YYYY-MM")
        return f"{self.store.prefix}track/{month}.parquet"

    def months(self) -> list[str]:
        """Months that have a track file, oldest first."""
        found = []
        for key in self.store.objects.list(f"{self.store.prefix}track/"):
            name = key.rsplit("/", 1)[-1]
            if name.endswith(".parquet") and MONTH_RE.match(name.removesuffix(".parquet")):
                found.append(name.removesuffix(".parquet"))
        return sorted(found)

    def read(self, month: str) -> pd.DataFrame | None:
        """One month of the track record (`decode`), or None when there is no such file."""
        try:
            raw = self.store.objects.get(self.key(month))
        except NotFoundError:
            return None
        return self.decode(month, raw)

    def fetch(self, since: str) -> list[tuple[str, bytes]]:
        """The month files from month `since` on, oldest first, as stored: only the I/O, so that a caller with
        many pairs waits on the network in threads and decodes (`decode`, `rows`) in one."""
        files = []
        for month in self.months():
            if month >= since:
                with contextlib.suppress(NotFoundError):  # removed since the listing
                    files.append((month, self.store.objects.get(self.key(month))))
        return files

    def decode(self, month: str, raw: bytes) -> pd.DataFrame:
        """A month file's rows, checked (`checked_rows`); StoreError naming the file when it is not a track file.
        pyarrow's own threads are left out: a tracker decodes one file at a time."""
        import pyarrow.parquet as pq

        from makeusrich.store.track_schema import checked_rows

        where = self.store.objects.uri(self.key(month))
        try:
            frame = pq.ParquetFile(io.BytesIO(raw)).read(use_threads=False).to_pandas(use_threads=False)
        except Exception as exc:
            raise StoreError(
                f"track file {where} is unreadable ({str(exc)[:160]}); move it aside, the tracker starts anew"
            ) from None
        return checked_rows(frame, where)

    def rows(self, files: list[tuple[str, bytes]], since: pd.Timestamp) -> pd.DataFrame:
        """The rows of origins from `since` on in month files from `fetch`, decoded and checked."""
        import pandas as pd

        from makeusrich.store.track_schema import empty_rows

        frames = [self.decode(month, raw) for month, raw in files]
        rows = pd.concat(frames, ignore_index=True) if frames else empty_rows()
        return rows[rows["origin"] >= since].reset_index(drop=True)

    @staticmethod
    def encode(frame: pd.DataFrame) -> bytes:
        buffer = io.BytesIO()
        frame.to_parquet(buffer, index=False)
        return buffer.getvalue()

    def put(self, month: str, data: bytes) -> None:
        """Replace one month's file (`encode`'s bytes) in one atomic put."""
        self.store.objects.put(self.key(month), data)

    def write(self, month: str, frame: pd.DataFrame) -> None:
        self.put(month, self.encode(frame))

    def read_summary(self) -> TrackSummary | None:
        key = self.store.prefix + TRACK_SUMMARY
        try:
            raw = self.store.objects.get(key)
        except NotFoundError:
            return None
        return parse_track_summary(raw, self.store.objects.uri(key))

    @staticmethod
    def encode_summary(summary: TrackSummary) -> bytes:
        return summary.model_dump_json(by_alias=True, indent=2).encode()

    def put_summary(self, data: bytes) -> None:
        self.store.objects.put(self.store.prefix + TRACK_SUMMARY, data)

    def write_summary(self, summary: TrackSummary) -> None:
        self.put_summary(self.encode_summary(summary))
