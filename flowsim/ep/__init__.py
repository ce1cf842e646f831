"""The equilibrium-propagation scheme's model: a weight-tied equilibrium character model.

char_model.py  the model: parameters, field, encoding, cross-entropy readout
char_task.py   CharTask: the model on a text, for the training loop

EP itself (and every other equilibrium rule) is in flowsim.rules: it applies
to any field.
"""

from . import char_model
from .char_task import CharTask, char_problem, make_task

__all__ = ["char_model", "CharTask", "char_problem", "make_task"]
