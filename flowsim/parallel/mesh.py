"""The configuration mesh: one axis, ``"config"``, over every device of every process."""

import math

import jax
import numpy as np
from jax.sharding import Mesh

AXIS = "config"


def config_mesh(devices=None) -> Mesh:
    """A one-axis mesh named :data:`AXIS` over ``devices`` (default: ``jax.devices()``,
    which under ``jax.distributed`` holds every process's devices)."""
    devices = jax.devices() if devices is None else list(devices)
    return Mesh(np.asarray(devices), (AXIS,))


def padded_size(count: int, mesh: Mesh) -> int:
    """``count`` rounded up to a multiple of the mesh's device count (every device gets
    the same number of configurations)."""
    if count < 1:
        raise ValueError(f"a sweep needs at least one configuration, got {count}")
    return math.ceil(count / mesh.size) * mesh.size


__all__ = ["AXIS", "config_mesh", "padded_size"]
