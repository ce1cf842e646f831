"""One training loop for every scheme: a task, a rule, an optax optimiser.

task.py        AbstractTask: a problem with data and an evaluation
trainer.py     Trainer: one jitted step (the rule's gradient, the optax update)
loop.py        fit: metrics rows, oracle cosines, checkpoints, resume, early stop
divergence.py  Divergence: when a run diverges and when a step is skipped
checkpoint.py  equinox serialisation with a JSON sidecar
"""

from . import checkpoint
from .checkpoint import CheckpointError
from .divergence import Divergence
from .loop import Outcome, cosines, fit, reference_gradients
from .task import AbstractTask
from .trainer import Trainer, batch, init_key, keys, run_steps

__all__ = ["checkpoint", "CheckpointError", "Divergence", "Outcome", "fit", "cosines",
           "reference_gradients", "AbstractTask", "Trainer", "batch", "init_key", "keys", "run_steps"]
