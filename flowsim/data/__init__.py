"""Data sets. ``from flowsim.data import shakespeare``."""

from . import shakespeare
from .shakespeare import FlowsimDataError, Splits

__all__ = ["shakespeare", "FlowsimDataError", "Splits"]
