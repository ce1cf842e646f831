"""The quadratic without a vectorised core: a sweep runs each configuration on its own."""

from .quadratic_descent import Config, run

__all__ = ["Config", "run"]
