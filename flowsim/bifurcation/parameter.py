r"""Which scalar of a system's params a continuation follows.

A continuation of F(z, params) = 0 moves one scalar p and keeps the rest of
params fixed. :class:`Key` names an entry of a dict of params, :class:`Where`
a leaf anywhere in the pytree (``eqx.tree_at`` semantics), :class:`Family` any
map p ↦ params (``family(params, p)``: e.g. a gain c on the weights of a
trained model). Every one sets p inside the traced params, so the implicit
function theorem can differentiate a located point by the other entries.
"""

import abc
from collections.abc import Callable

import equinox as eqx


class AbstractParameter(eqx.Module):
    """``set(params, p)``: params with the parameter at p; ``get(params)``: its value."""

    @abc.abstractmethod
    def set(self, params, p): ...

    @abc.abstractmethod
    def get(self, params): ...

    @property
    def name(self) -> str:
        return type(self).__name__


class Key(AbstractParameter):
    """The entry ``params[key]`` of a dict of params."""

    key: str = eqx.field(static=True)

    def set(self, params, p):
        return {**params, self.key: p}

    def get(self, params):
        return params[self.key]

    @property
    def name(self):
        return self.key


class Where(AbstractParameter):
    """The leaf ``where(params)`` of any params pytree."""

    where: Callable = eqx.field(static=True)

    def set(self, params, p):
        return eqx.tree_at(self.where, params, p)

    def get(self, params):
        return self.where(params)


class Family(AbstractParameter):
    """Params ``family(params, p)``: a one-parameter family built from fixed ``params``.

    It has no value inside params: continuation needs ``p_start``."""

    family: Callable = eqx.field(static=True)
    label: str = eqx.field(static=True, default="p")

    def set(self, params, p):
        return self.family(params, p)

    def get(self, params):
        raise ValueError(f"a Family parameter ({self.label}) has no value in params: "
                         "pass p_start")

    @property
    def name(self):
        return self.label


def as_parameter(parameter) -> AbstractParameter:
    """A parameter object from a dict key (str), a ``where`` callable, or itself."""
    if isinstance(parameter, AbstractParameter):
        return parameter
    if isinstance(parameter, str):
        return Key(parameter)
    if callable(parameter):
        return Where(parameter)
    raise TypeError(f"parameter must be a key, a where-callable or an AbstractParameter, "
                    f"got {type(parameter).__name__}")
