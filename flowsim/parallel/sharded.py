r"""``vmap`` over configurations, split across devices.

For ``n`` configurations on a mesh of ``D`` devices the configuration axis
is padded to ``m = D·⌈n/D⌉`` by repeating the last configuration (a padded
slot computes a real configuration, so it cannot fail where the others do
not), placed with ``NamedSharding(mesh, P("config"))`` and run as
``jit(vmap(fn))`` with that sharding on every input and output: XLA's SPMD
partitioner gives device ``d`` the rows ``d·m/D … (d+1)·m/D − 1``. Results
are gathered on every process (``process_allgather`` when there are
several) and the padding is dropped.

Why not ``shard_map``, which would give each device its own while loops:
inside it JAX 0.10 attaches the manual mesh to every abstract value, and
lineax's structure checks (``linear_solve`` inside GMRES) then reject its
own vectors. Under ``jit`` a vmapped while loop's stop test becomes one
all-reduce over the devices per iteration; every other operation stays on
its device.
"""

from collections.abc import Callable

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from .mesh import AXIS, config_mesh, padded_size


def pad(tree, size: int):
    """Every leaf (a host array with a leading configuration axis) padded to ``size``
    rows by repeating its last row."""
    def one(leaf):
        leaf = np.asarray(leaf)
        extra = size - leaf.shape[0]
        if extra < 0:
            raise ValueError(f"cannot pad {leaf.shape[0]} configurations down to {size}")
        return np.concatenate([leaf, np.repeat(leaf[-1:], extra, axis=0)]) if extra else leaf

    return jax.tree.map(one, tree)


def place(tree, mesh):
    """Host arrays (every process holds all of them) -> global arrays split along the
    configuration axis. Works across processes: each process fills its own devices."""
    sharding = NamedSharding(mesh, P(AXIS))

    def one(leaf):
        leaf = np.asarray(leaf)
        return jax.make_array_from_callback(leaf.shape, sharding, lambda index: leaf[index])

    return jax.tree.map(one, tree)


def sharded_vmap(fn: Callable, mesh) -> Callable:
    """``jit(vmap(fn))`` with the configuration axis of every argument and output split
    over ``mesh``."""
    sharding = NamedSharding(mesh, P(AXIS))
    return jax.jit(jax.vmap(fn), in_shardings=sharding, out_shardings=sharding)


def gather(tree, count: int | None = None):
    """Global arrays -> numpy arrays on every process, the first ``count`` rows."""
    if jax.process_count() > 1:
        tree = multihost_utils.process_allgather(tree, tiled=True)
    return jax.tree.map(lambda leaf: np.asarray(leaf)[:count], tree)


def sweep_map(fn: Callable, values, mesh=None):
    """``fn`` applied to every configuration of ``values`` (a pytree of host arrays with a
    leading configuration axis), sharded across ``mesh`` (default: every device).

    Returns ``fn``'s outputs stacked over the configurations, as numpy arrays.
    """
    mesh = config_mesh() if mesh is None else mesh
    count = jax.tree.leaves(values)[0].shape[0]
    placed = place(pad(values, padded_size(count, mesh)), mesh)
    return gather(sharded_vmap(fn, mesh)(placed), count)


__all__ = ["pad", "place", "sharded_vmap", "gather", "sweep_map"]
