"""Checkpoints of a sharded state, restorable onto any device count.

orbax-checkpoint, not equinox serialisation, because under several
processes no process holds a whole sharded array: orbax has each process
write its own shards (tensorstore, in parallel) and, at restore, reads
exactly the shards the *current* mesh assigns to each device. So a sweep
saved on 4 devices resumes on 1 (or on 8 over two hosts) with the same
numbers. ``equinox.tree_serialise_leaves`` would first gather every array
onto one host.

Layout: ``DIR/step_<k>/`` per saved step (orbax's own files); the newest
complete one is :func:`latest_step`.
"""

import re
import shutil
from pathlib import Path

import jax
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from .mesh import AXIS
from .sharded import pad, place

_STEP = re.compile(r"^step_(\d+)$")


def _checkpointer():
    import orbax.checkpoint as ocp  # heavy import: only when a sweep checkpoints

    return ocp.StandardCheckpointer()


def save(directory, step: int, state, keep: int = 2) -> Path:
    """Save ``state`` (arrays split along the configuration axis) as ``DIR/step_<step>``.

    Every process must call it (each writes its shards); returns when it is on disk.
    Process 0 then deletes all but the newest ``keep`` steps.
    """
    root = Path(directory).resolve()
    path = root / f"step_{step:08d}"
    checkpointer = _checkpointer()
    checkpointer.save(path, _named(state))
    checkpointer.wait_until_finished()
    checkpointer.close()
    if jax.process_index() == 0:
        for old in sorted(_steps(root))[:-keep]:
            shutil.rmtree(root / f"step_{old:08d}", ignore_errors=True)
    return path


def _steps(root: Path) -> list[int]:
    return [int(m.group(1)) for p in root.glob("step_*") if (m := _STEP.match(p.name))]


def latest_step(directory) -> int | None:
    """The newest step saved under ``directory`` (orbax writes under a temporary name and
    renames when complete, so a half-written step is not listed)."""
    steps = _steps(Path(directory))
    return max(steps) if steps else None


def restore(directory, step: int, like, mesh, count: int):
    """The state saved at ``step``, split along the configuration axis of ``mesh``.

    ``like`` gives the structure, shapes and dtypes on the current mesh (e.g. the freshly
    initialised state, padded to this mesh); ``count`` is the number of real
    configurations. When the saved padding fits this mesh, each device reads its own
    shards; otherwise (say 6 configurations saved as 8 rows on 4 devices, resumed as 6
    on 3) the arrays are read whole, their first ``count`` rows re-padded and re-split.
    """
    path = Path(directory).resolve() / f"step_{step:08d}"
    checkpointer = _checkpointer()
    saved = checkpointer.metadata(path).item_metadata.tree
    leaves, structure = jax.tree.flatten(like)
    names = list(_named(like))
    if sorted(saved) != names:
        raise ValueError(f"{path} holds {len(saved)} arrays; this state has {len(names)}")
    same = all(tuple(saved[name].shape) == leaf.shape for name, leaf in zip(names, leaves))
    sharding = NamedSharding(mesh, P(AXIS) if same else P())
    abstract = {name: jax.ShapeDtypeStruct(tuple(saved[name].shape), leaf.dtype, sharding=sharding)
                for name, leaf in zip(names, leaves)}
    restored = checkpointer.restore(path, abstract)
    checkpointer.close()
    arrays = [restored[name] for name in names]
    if not same:
        size = leaves[0].shape[0]
        arrays = place(pad([np.asarray(a)[:count] for a in arrays], size), mesh)
    return jax.tree.unflatten(structure, arrays)


def _named(state) -> dict:
    """The state's leaves by position (``"00000"``, ``"00001"``, ...): any pytree saves
    as a flat table, and sorted names keep the leaves' order."""
    return {f"{i:05d}": leaf for i, leaf in enumerate(jax.tree.leaves(state))}


__all__ = ["save", "restore", "latest_step"]
