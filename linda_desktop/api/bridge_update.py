"""`linda-desktop api update-bridge`: fetch a newer @wppconnect/wa-js from the npm registry.

The registry's package document lists every version with ``dist.tarball`` and
``dist.integrity`` (``sha512-<base64>``, Subresource-Integrity form). We take the newest version
inside the supported range (browser/messaging.supported_range), download its tarball, check the
hash before anything is unpacked, read ``package/package.json`` (its own name and version must
match) and ``package/dist/wppconnect-wa.js``, and install them under ``<data>/bridge/<version>/``.
The build that was current becomes ``previous`` (kept to roll back to); a build that never becomes
ready in the page is marked bad at run time and the previous one is used again.

The registry comes from ``--registry``, else ``$npm_config_registry``, else ``npm config get
registry`` (the owner's own npm set-up).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from linda_desktop.base.errors import LindaError
from linda_desktop.browser import bridge_files
from linda_desktop.browser.messaging import _version_tuple, version_supported

PACKAGE = "@wppconnect/wa-js"
MAX_TARBALL = 64 * 1024 * 1024


class BridgeUpdateError(LindaError):
    """The update did not happen; the bridge in use is unchanged."""


def default_registry() -> str:
    env = os.environ.get("npm_config_registry") or os.environ.get("NPM_CONFIG_REGISTRY")  # noqa: SIM112 - npm's own name
    if env:
        return env
    npm = shutil.which("npm")
    if npm:
        try:
            out = subprocess.run([npm, "config", "get", "registry"], capture_output=True, text=True, timeout=30)
            if out.returncode == 0 and out.stdout.strip().startswith("http"):
                return out.stdout.strip()
        except (OSError, subprocess.SubprocessError):
            pass
    raise BridgeUpdateError("No npm registry is configured", "pass --registry URL or install npm")


def _get(url: str, limit: int) -> bytes:
    request = urllib.request.Request(url, headers={"Accept": "application/json", "User-Agent": "linda-desktop"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            data = response.read(limit + 1)
    except OSError as exc:
        raise BridgeUpdateError(f"Could not reach the npm registry: {exc}", "check the connection; retry") from None
    if len(data) > limit:
        raise BridgeUpdateError("The registry sent more than expected", "retry later")
    return data


def check_integrity(data: bytes, integrity: str) -> None:
    """``integrity``: the registry's ``sha512-<base64>`` (several may be space-separated)."""
    for item in integrity.split():
        algo, _, value = item.partition("-")
        if algo == "sha512":
            if base64.b64encode(hashlib.sha512(data).digest()).decode() == value:
                return
            raise BridgeUpdateError("The downloaded wa-js does not match the registry's integrity hash",
                                    "nothing was installed; retry, or check the registry")
    raise BridgeUpdateError("The registry published no sha512 integrity hash for this version",
                            "nothing was installed")


def newest_supported(document: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    versions = document.get("versions") if isinstance(document, dict) else None
    if not isinstance(versions, dict):
        raise BridgeUpdateError("The registry's package document has no versions", "check the registry URL")
    usable = [(v, meta) for v, meta in versions.items() if version_supported(v) and isinstance(meta, dict)]
    if not usable:
        raise BridgeUpdateError("The registry has no wa-js version in the supported range", "nothing to update")
    return max(usable, key=lambda item: _version_tuple(item[0]) or (0, 0, 0))


def update_bridge(bridge_dir: Path, registry: str | None = None) -> dict[str, Any]:
    """Install the newest supported wa-js; returns {version, previous, installed: bool}."""
    registry = (registry or default_registry()).rstrip("/")
    doc_url = f"{registry}/{urllib.parse.quote(PACKAGE, safe='@')}"  # @wppconnect%2Fwa-js
    document = json.loads(_get(doc_url, 32 * 1024 * 1024))
    version, meta = newest_supported(document)
    dist = meta.get("dist") or {}
    state = bridge_files.read_state(bridge_dir)
    if state.get("current") == version and (Path(bridge_dir) / version / bridge_files.FILE).is_file():
        return {"version": version, "previous": state.get("previous"), "installed": False}
    tarball, integrity = dist.get("tarball"), dist.get("integrity")
    if not isinstance(tarball, str) or not isinstance(integrity, str):
        raise BridgeUpdateError(f"wa-js {version} has no tarball or integrity hash in the registry",
                                "nothing installed")
    data = _get(tarball, MAX_TARBALL)
    check_integrity(data, integrity)
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            pkg = json.loads(tar.extractfile("package/package.json").read())  # type: ignore[union-attr]
            build = tar.extractfile("package/dist/wppconnect-wa.js").read()  # type: ignore[union-attr]
    except (tarfile.TarError, KeyError, AttributeError, ValueError) as exc:
        raise BridgeUpdateError(f"The wa-js package is not readable: {exc}", "nothing installed") from None
    if pkg.get("name") != PACKAGE or pkg.get("version") != version:
        raise BridgeUpdateError("The package's own metadata does not match the registry's", "nothing installed")
    target = Path(bridge_dir) / version
    tmp = Path(bridge_dir) / f".{version}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    (tmp / bridge_files.FILE).write_bytes(build)
    (tmp / "package.json").write_text(json.dumps({"name": PACKAGE, "version": version}), "utf-8")
    shutil.rmtree(target, ignore_errors=True)
    tmp.replace(target)
    previous = state.get("current")
    bad = [v for v in state.get("bad") or [] if v != version]
    bridge_files.write_state(bridge_dir, {"current": version, "previous": previous, "bad": bad})
    for old in Path(bridge_dir).iterdir():  # keep current and previous only
        if old.is_dir() and old.name not in (version, previous):
            shutil.rmtree(old, ignore_errors=True)
    return {"version": version, "previous": previous, "installed": True}
