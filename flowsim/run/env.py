"""What a run ran on: versions, devices, float64 flag, git commit, command line."""

import importlib.metadata
import os
import platform
import subprocess
import sys
from pathlib import Path

PACKAGES = ("jax", "jaxlib", "diffrax", "equinox", "optimistix", "lineax", "optax", "numpy", "matplotlib")
_REPO = Path(__file__).resolve().parents[2]


def environment(command: list[str]) -> dict:
    """A JSON-ready description of the interpreter, libraries, devices and code version."""
    import jax

    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "versions": {name: _version(name) for name in PACKAGES},
        "default_backend": jax.default_backend(),
        "devices": [str(device) for device in jax.devices()],
        "x64": bool(jax.config.read("jax_enable_x64")),
        "cpu_count": os.cpu_count(),
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": _git_dirty(),
        "command": command,
    }


def _version(package: str) -> str | None:
    """The installed version of ``package``, or ``None`` if it is not installed."""
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _git(*args: str) -> str | None:
    """Output of a read-only git command in the flowsim checkout, or ``None``."""
    try:
        result = subprocess.run(
            ["git", "-C", str(_REPO), *args], capture_output=True, text=True, timeout=5, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip()


def _git_dirty() -> bool | None:
    """Whether the checkout has uncommitted changes (``None`` outside a git checkout)."""
    status = _git("status", "--porcelain", "--untracked-files=no")
    return None if status is None else bool(status)
