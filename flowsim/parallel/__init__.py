"""Beyond one device: a sweep's configuration axis across devices and processes.

A sweep is embarrassingly parallel: every configuration is an independent
program. :func:`sweep_map` runs ``jax.jit(jax.vmap(fn))`` over a leading
configuration axis split by ``NamedSharding`` along a one-axis
:class:`jax.sharding.Mesh` (``"config"``) over every device of every
process: each device computes its own block of configurations.
:mod:`.distributed` starts ``jax.distributed`` for several processes;
:mod:`.checkpoint` saves a sharded state with orbax and restores it onto
another device count.

The engine never imports the run store; the CLI's sweep runner uses this.
"""

from .checkpoint import latest_step, restore, save
from .distributed import initialize, is_main_process
from .mesh import AXIS, config_mesh, padded_size
from .sharded import gather, pad, place, sharded_vmap, sweep_map

__all__ = ["AXIS", "config_mesh", "padded_size", "pad", "place", "sharded_vmap", "gather",
           "sweep_map", "initialize", "is_main_process", "save", "restore", "latest_step"]
