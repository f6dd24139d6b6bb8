"""A local folder as an object store: the same layout as S3, for one machine."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from makeusrich.errors import NotFoundError, StoreError


class LocalStore:
    """Keys are relative paths below `root`. Writes go to a temporary file then `os.replace`, so a reader sees
    the old or the new object, never half of one."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).expanduser().resolve()

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
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(data)
                    handle.flush()
                    os.fsync(handle.fileno())
                os.replace(tmp, path)
                _fsync_folder(path.parent)  # the rename itself must survive a power loss
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as exc:
            raise StoreError(
                f"cannot write {path}: {exc.strerror or exc}; check the folder's permissions and free space"
            ) from exc

    def get(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise NotFoundError(f"{path} does not exist") from None
        except IsADirectoryError:
            raise NotFoundError(f"{path} is a folder, not an object") from None
        except OSError as exc:
            raise StoreError(f"cannot read {path}: {exc.strerror or exc}") from exc

    def list(self, prefix: str) -> list[str]:
        folder = self.root / prefix.rpartition("/")[0]
        try:
            if not folder.is_dir():
                return []
            keys = [
                path.relative_to(self.root).as_posix()
                for path in folder.rglob("*")
                if path.is_file() and not path.name.startswith(".tmp-")
            ]
        except OSError as exc:
            raise StoreError(f"cannot list {folder}: {exc.strerror or exc}") from exc
        return sorted(key for key in keys if key.startswith(prefix))

    def delete(self, keys: Iterable[str]) -> None:
        for key in keys:
            path = self._path(key)
            try:
                path.unlink(missing_ok=True)
                parent = path.parent
                while parent != self.root and parent.is_dir() and not any(parent.iterdir()):
                    parent.rmdir()
                    parent = parent.parent
            except OSError as exc:
                raise StoreError(f"cannot delete {path}: {exc.strerror or exc}") from exc

    def uri(self, key: str) -> str:
        uri = (self.root / key).as_uri()
        return uri + "/" if key.endswith("/") and not uri.endswith("/") else uri


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
