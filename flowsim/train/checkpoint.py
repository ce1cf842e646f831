"""Checkpoints: equinox leaf serialisation plus a JSON sidecar (no pickle).

``DIR/step_00000500.eqx`` holds the leaves of ``(params, opt_state)``
(``eqx.tree_serialise_leaves``); ``DIR/step_00000500.json`` holds the step,
the hash of the config that produced it and the loop's bookkeeping (best
validation CE). The sidecar is written last, so a checkpoint without one is
incomplete and ignored. Loading needs a template pytree of the same
structure (``eqx.tree_deserialise_leaves``).
"""

import hashlib
import json
import os
from pathlib import Path

import equinox as eqx

FORMAT = 1


class CheckpointError(ValueError):
    """No usable checkpoint, or one from another configuration."""


def config_hash(config: dict) -> str:
    """sha256 of the config as canonical JSON (sorted keys): equal configs, equal hashes."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _stem(directory: Path, step: int) -> Path:
    return Path(directory) / f"step_{step:08d}"


def save(directory, step: int, state, meta: dict) -> Path:
    """Write ``state`` (a pytree of arrays) and ``meta`` (JSON) for ``step``, atomically."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    stem = _stem(directory, step)
    leaves, sidecar = stem.with_suffix(".eqx"), stem.with_suffix(".json")
    tmp = leaves.with_name(leaves.name + ".tmp")
    eqx.tree_serialise_leaves(tmp, state)
    os.replace(tmp, leaves)
    tmp = sidecar.with_name(sidecar.name + ".tmp")
    tmp.write_text(json.dumps({"format": FORMAT, "step": step, **meta}, indent=2) + "\n")
    os.replace(tmp, sidecar)
    return leaves


def steps(directory) -> list[int]:
    """Steps with a complete checkpoint (leaves and sidecar), ascending."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = []
    for sidecar in directory.glob("step_*.json"):
        if sidecar.with_suffix(".eqx").is_file():
            found.append(int(sidecar.stem.split("_")[1]))
    return sorted(found)


def latest(directory) -> int | None:
    """The last complete checkpoint's step, or None."""
    found = steps(directory)
    return found[-1] if found else None


def read_meta(directory, step: int) -> dict:
    return json.loads(_stem(directory, step).with_suffix(".json").read_text())


def load(directory, step: int, like, expected_hash: str | None = None):
    """``(state, meta)`` of the checkpoint at ``step``; ``like`` gives the structure.

    Raises :class:`CheckpointError` if it is missing or (with ``expected_hash``)
    was written under another configuration.
    """
    stem = _stem(directory, step)
    if not stem.with_suffix(".json").is_file() or not stem.with_suffix(".eqx").is_file():
        raise CheckpointError(f"no complete checkpoint for step {step} in {directory}")
    meta = read_meta(directory, step)
    if expected_hash is not None and meta.get("config_hash") != expected_hash:
        raise CheckpointError(
            f"checkpoint {stem.name} in {directory} was written by another config "
            f"(hash {meta.get('config_hash')}, this config {expected_hash})"
        )
    try:
        state = eqx.tree_deserialise_leaves(stem.with_suffix(".eqx"), like)
    except (RuntimeError, ValueError, OSError) as error:
        raise CheckpointError(f"checkpoint {stem.name} does not fit this model: {error}") from None
    return state, meta


__all__ = ["CheckpointError", "config_hash", "save", "steps", "latest", "load", "read_meta"]
