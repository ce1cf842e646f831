"""Several processes, one sweep: ``jax.distributed`` started from the command line.

``initialize(coordinator, num_processes, process_id)`` calls
``jax.distributed.initialize`` with them; ``initialize(auto=True)`` lets JAX
detect the cluster (SLURM, Open MPI, Kubernetes, Cloud TPU). After it,
``jax.devices()`` lists every process's devices, so the configuration mesh
spans them all. It must run before anything touches a JAX backend.
"""

import jax


def initialize(coordinator: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, auto: bool = False) -> bool:
    """Start ``jax.distributed``; returns whether it was started (no arguments: one process).

    Raises ``ValueError`` when only some of the three explicit settings are given.
    """
    explicit = (coordinator, num_processes, process_id)
    if all(value is None for value in explicit):
        if auto:
            try:
                jax.distributed.initialize()
            except ValueError as error:  # no cluster in the environment
                raise ValueError(f"--distributed: JAX found no cluster to join ({error}); "
                                 f"run under SLURM, Open MPI, ... or give --coordinator "
                                 f"HOST:PORT --num-processes N --process-id I") from None
        return auto
    if any(value is None for value in explicit):
        raise ValueError("give all of --coordinator HOST:PORT, --num-processes N and "
                         "--process-id I (or --distributed under a cluster manager)")
    if not 0 <= process_id < num_processes:
        raise ValueError(f"--process-id {process_id} must be in [0, {num_processes})")
    jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes,
                               process_id=process_id)
    return True


def is_main_process() -> bool:
    """Process 0 writes the run directory; the others compute and stay silent."""
    return jax.process_index() == 0


__all__ = ["initialize", "is_main_process"]
