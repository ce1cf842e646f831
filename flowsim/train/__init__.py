"""Training: any estimator, an optax optimiser, metrics, checkpoints, divergence, resume."""

from . import checkpoint
from .checkpoint import CheckpointError, config_hash
from .contraction import ContractionPenalty
from .diagnostics import Diagnostics
from .loop import COLUMNS, Divergence, Outcome, fit
from .task import Task, Trainer, cast, init_key

__all__ = ["checkpoint", "CheckpointError", "config_hash", "ContractionPenalty", "Diagnostics",
           "COLUMNS", "Divergence", "Outcome", "fit", "Task", "Trainer", "cast", "init_key"]
