"""A local folder as an object store: the same layout as S3, for one machine."""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from makeusrich.errors import NotFoundError, StoreError
from makeusrich.files import NotRegularFile, read_regular

TEMPORARY = ".tmp-"


def current_umask() -> int:
    """The process's umask, read without changing it where Linux says it (/proc), else by setting it back."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


class LocalStore:
    """Keys are relative paths below `root`. Writes go to a temporary file then `os.replace`, so a reader sees
    the old or the new object, never half of one. Files get the mode any new file gets here (0644 under the
    usual umask 022), so a server or dashboard running as another user can read them."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).expanduser().resolve()
        self.file_mode = 0o666 & ~current_umask()

    def __repr__(self) -> str:
        return f"LocalStore({str(self.root)!r})"

    def _path(self, key: str) -> Path:
        if not key or key.endswith("/"):
            raise NotFoundError(f"{key!r} names a folder, not an object")
        path = (self.root / key).resolve()
        if path != self.root and self.root not in path.parents:
            raise StoreError(f"key {key!r} escapes the store root {self.root}")
        return path

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        try:
            atomic_write(path, data, self.file_mode)
        except OSError as exc:
            raise StoreError(
                f"cannot write {path}: {exc.strerror or exc}; check the folder's permissions and free space"
            ) from exc

    def get(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return read_regular(path)
        except FileNotFoundError:
            raise NotFoundError(f"{path} does not exist") from None
        except IsADirectoryError:
            raise NotFoundError(f"{path} is a folder, not an object") from None
        except NotRegularFile:
            raise StoreError(f"{path} is not a regular file (a FIFO, device or socket); a store holds files") from None
        except OSError as exc:
            raise StoreError(f"cannot read {path}: {exc.strerror or exc}") from exc

    def _folder(self, prefix: str) -> Path:
        folder = (self.root / prefix.rpartition("/")[0]).resolve()
        if folder != self.root and self.root not in folder.parents:
            raise StoreError(f"prefix {prefix!r} escapes the store root {self.root}")
        return folder

    def list(self, prefix: str) -> list[str]:
        folder = self._folder(prefix)
        try:
            if not folder.is_dir():
                return []
            keys = [
                path.relative_to(self.root).as_posix()
                for path in folder.rglob("*")
                if path.is_file() and not path.name.startswith(TEMPORARY)
            ]
        except OSError as exc:
            raise StoreError(f"cannot list {folder}: {exc.strerror or exc}") from exc
        return sorted(key for key in keys if key.startswith(prefix))

    def delete(self, keys: Iterable[str]) -> None:
        for key in keys:
            path = self._path(key)
            try:
                path.unlink(missing_ok=True)
                self._remove_empty_folders(path.parent)
            except OSError as exc:
                raise StoreError(f"cannot delete {path}: {exc.strerror or exc}") from exc

    def _remove_empty_folders(self, folder: Path) -> None:
        while folder != self.root and folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
            folder = folder.parent

    def sweep(self, prefix: str, older_than_s: float) -> Sequence[str]:
        """Remove temporary files of interrupted writes below `prefix` that are older than `older_than_s` (a
        younger one may belong to a write in progress), and the folders they leave empty. Returns their paths."""
        folder = self._folder(prefix)
        cutoff = time.time() - older_than_s
        removed: list[str] = []
        try:
            leftovers = [p for p in folder.rglob(f"{TEMPORARY}*") if p.is_file()] if folder.is_dir() else []
            for path in leftovers:
                if path.stat().st_mtime < cutoff:
                    path.unlink(missing_ok=True)
                    removed.append(path.relative_to(self.root).as_posix())
                    self._remove_empty_folders(path.parent)
        except OSError as exc:
            raise StoreError(f"cannot clean {folder}: {exc.strerror or exc}") from exc
        return removed

    def uri(self, key: str) -> str:
        uri = (self.root / key).as_uri()
        return uri + "/" if key.endswith("/") and not uri.endswith("/") else uri


def atomic_write(path: Path, data: bytes, mode: int | None = None) -> None:
    """Write a file so that a reader sees the old or the new content, never half of it, and the new content
    survives a power loss: a temporary file in the same folder, fsynced, renamed over the old, the folder fsynced.
    `mode` defaults to what the umask gives any new file (mkstemp alone would make it 0600)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=TEMPORARY, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), 0o666 & ~current_umask() if mode is None else mode)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        _fsync_folder(path.parent)  # the rename itself must survive a power loss
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
