"""Build the five images the chart runs, with docker, podman or buildah: `make images` runs this.

    python images/build.py [--engine docker|podman|buildah] [--registry makeusrich] [--tag 0.1.0] [--push]
                           [--only trainer,serving] [--torch-index-url URL]

- The engine is the first of docker, podman and buildah that answers here (a docker CLI without its daemon
  does not) unless named (`make images ENGINE=podman`).
- Both Dockerfiles start from python:3.11.11-slim-bookworm. Where the engine cannot pull it (no Docker Hub, as
  on the machines this project is tested on), a stand-in is built from Debian's own packages with mmdebstrap
  (bookworm's python3 3.11 in a venv at /usr/local, as the official image has its Python there) and stored under
  the same name; the script says so, and the images then carry Debian's Python 3.11.2 instead of 3.11.11.
- podman and buildah build with chroot isolation and mount the host's pip configuration (its CA bundle, its
  find-links folders and extra indexes), so that pip inside the build reaches what pip reaches on the host.
  Where the host's find-links hold torch's CPU wheel, the trainer takes it (the CPU index need not be reachable).
- The trainer carries CPU torch unless `--torch-index-url` names another index (a CUDA one: the GPU variant).

Only the standard library: it runs before any virtual environment exists.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BASE = "python:3.11.11-slim-bookworm"
# target: Dockerfile
IMAGES = {
    "trainer": "Dockerfile.trainer",
    "serving": "Dockerfile.trainer",
    "operator": "Dockerfile.operator",
    "dashboard": "Dockerfile.operator",
    "tracker": "Dockerfile.operator",
}
ENGINES = ("docker", "podman", "buildah")
CPU_TORCH_INDEX = "https://download.pytorch.org/whl/cpu"
PYPI = "https://pypi.org/simple"
TORCH = "2.13.0"
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"


def say(text: str) -> None:
    print(f"images: {text}", flush=True)


def run(*command: str, check: bool = True, quiet: bool = False) -> subprocess.CompletedProcess[str]:
    if not quiet:
        say(" ".join(command))
    output = subprocess.DEVNULL if quiet else None
    return subprocess.run(command, check=check, text=True, stdout=output, stderr=output)


def works(engine: str) -> bool:
    """Whether the engine answers (a docker CLI without a daemon does not)."""
    try:
        return subprocess.run((engine, "info"), capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def engine_of(named: str | None) -> str:
    if named:
        if shutil.which(named) is None or not works(named):
            raise SystemExit(f"images: {named} is not installed or does not answer (`{named} info` fails)")
        return named
    for engine in ENGINES:
        if shutil.which(engine) and works(engine):
            return engine
    raise SystemExit(
        "images: no docker (with its daemon), podman or buildah answers here; install one "
        "(apt-get install buildah podman runc)"
    )


def chart_version() -> str:
    text = (ROOT / "charts" / "makeusrich" / "Chart.yaml").read_text()
    match = re.search(r'^appVersion: "([^"]+)"', text, flags=re.MULTILINE)
    if match is None:
        raise SystemExit("images: charts/makeusrich/Chart.yaml has no appVersion")
    return match.group(1)


def has_image(engine: str, name: str) -> bool:
    inspect = ("buildah", "inspect", "--type", "image") if engine == "buildah" else (engine, "image", "inspect")
    return run(*inspect, name, check=False, quiet=True).returncode == 0


def pull(engine: str, name: str) -> bool:
    try:
        return subprocess.run((engine, "pull", name), capture_output=True, timeout=120).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def stand_in_base(engine: str) -> None:
    """BASE built from Debian bookworm's packages (mmdebstrap) and stored under BASE's name."""
    if shutil.which("mmdebstrap") is None:
        raise SystemExit(f"images: {BASE} cannot be pulled and mmdebstrap (apt-get install mmdebstrap) is missing")
    say(f"{BASE} cannot be pulled here: building a stand-in from Debian bookworm's packages (Python 3.11.2)")
    with tempfile.TemporaryDirectory(prefix="makeusrich-base-") as folder:
        tar = Path(folder) / "base.tar"
        run(
            "mmdebstrap",
            "--quiet",
            "--variant=minbase",
            "--format=tar",
            "--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr",  # no usrmerge package: 80 MB of perl saved
            "--include=passwd,ca-certificates,netbase,tzdata,python3,python3-venv",
            '--customize-hook=chroot "$1" python3 -m venv /usr/local',  # pip where the official image has it
            "bookworm",
            str(tar),
        )
        path = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        if engine == "buildah":
            container = subprocess.run(
                ("buildah", "from", "scratch"), check=True, text=True, capture_output=True
            ).stdout.strip()
            try:
                run("buildah", "add", container, str(tar), "/")
                run("buildah", "config", "--env", path, "--env", "LANG=C.UTF-8", "--cmd", "python3", container)
                run("buildah", "commit", "--quiet", container, f"docker.io/library/{BASE}")
            finally:
                run("buildah", "rm", container, check=False, quiet=True)
        else:
            changes = ("--change", f"ENV {path}", "--change", "ENV LANG=C.UTF-8", "--change", 'CMD ["python3"]')
            run(engine, "import", *changes, str(tar), f"docker.io/library/{BASE}")


def host_pip(folder: Path) -> tuple[list[str], bool]:
    """Volume flags that give pip inside a build the host's configuration (written to folder/pip.conf), and
    whether its find-links hold torch's CPU wheel."""
    found = subprocess.run(
        (sys.executable, "-m", "pip", "config", "list"), capture_output=True, text=True, check=False
    ).stdout
    settings: dict[str, str] = {}
    for line in found.splitlines():
        key, _, value = line.partition("=")
        name = key.rsplit(".", 1)[-1]
        settings[name] = value.strip().strip("'\"")
    mounts: set[str] = set()
    conf: dict[str, str] = {}
    cert = settings.get("cert") or (CA_BUNDLE if Path(CA_BUNDLE).is_file() else "")
    if cert and Path(cert).is_file():
        conf["cert"] = cert
        mounts.add(cert)
    links = [p for p in settings.get("find-links", "").split() if Path(p).is_dir()]
    if links:
        conf["find-links"] = " ".join(links)
        mounts.update(links)
    remote = [url for url in settings.get("extra-index-url", "").split() if not url.startswith("file://")]
    if remote:  # a host's file:// indexes link to files beside them: the registries serve the same packages
        conf["extra-index-url"] = " ".join(remote)
    (folder / "pip.conf").write_text("[global]\n" + "".join(f"{k} = {v}\n" for k, v in conf.items()))
    flags = ["-v", f"{folder / 'pip.conf'}:/etc/pip.conf:ro"]
    for path in sorted(mounts):
        flags += ["-v", f"{path}:{path}:ro"]
    cpu_wheel = any(Path(link).glob(f"torch-{TORCH}+cpu-*.whl") for link in links)
    return flags, cpu_wheel


def build(engine: str, target: str, name: str, volumes: Sequence[str], torch_index: str | None) -> None:
    dockerfile = str(ROOT / IMAGES[target])
    args = ["--build-arg", f"TORCH_INDEX_URL={torch_index}"] if torch_index and target == "trainer" else []
    if engine == "docker":
        run("docker", "build", "-f", dockerfile, "--target", target, "-t", name, *args, str(ROOT))
        return
    build_command = ("buildah", "bud") if engine == "buildah" else ("podman", "build")
    run(
        *build_command,
        "--isolation",
        "chroot",
        "--layers",
        "--pull=never",  # the base is here: found, pulled or stood in for above
        *volumes,
        "-f",
        dockerfile,
        "--target",
        target,
        "-t",
        name,
        *args,
        str(ROOT),
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--engine", choices=ENGINES, default=os.environ.get("ENGINE") or None)
    parser.add_argument("--registry", default="makeusrich", help="image names are REGISTRY/<target>:TAG")
    parser.add_argument("--tag", default=None, help="default: the chart's appVersion")
    parser.add_argument("--push", action="store_true", help="push each image after building it")
    parser.add_argument("--only", default=",".join(IMAGES), help="comma-separated targets (default: all five)")
    parser.add_argument(
        "--torch-index-url",
        default=None,
        help=f"where the trainer's torch comes from (default {CPU_TORCH_INDEX}, or the host's local CPU wheel)",
    )
    args = parser.parse_args(argv)
    engine = engine_of(args.engine)
    tag = args.tag or chart_version()
    targets = [t.strip() for t in args.only.split(",") if t.strip()]
    unknown = sorted(set(targets) - set(IMAGES))
    if unknown:
        raise SystemExit(f"images: unknown target(s) {', '.join(unknown)}; the five are {', '.join(IMAGES)}")
    say(f"engine {engine}, images {args.registry}/<target>:{tag}")
    if not (has_image(engine, BASE) or pull(engine, BASE)):
        stand_in_base(engine)
    with tempfile.TemporaryDirectory(prefix="makeusrich-pip-") as folder:
        volumes, cpu_wheel = host_pip(Path(folder)) if engine != "docker" else ([], False)
        torch_index = args.torch_index_url
        if torch_index is None and cpu_wheel:
            torch_index = PYPI  # with the host's find-links mounted, pip takes the local +cpu wheel first
            say(f"torch {TORCH}+cpu from the host's find-links")
        for target in targets:
            name = f"{args.registry}/{target}:{tag}"
            build(engine, target, name, volumes, torch_index)
            if args.push:
                run("buildah" if engine == "buildah" else engine, "push", name)
    say("built " + ", ".join(f"{args.registry}/{t}:{tag}" for t in targets))


if __name__ == "__main__":
    main()
