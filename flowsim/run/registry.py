"""The one registry from configuration names to engine objects.

A learning rule is registered once, with its options as a typed table and a
``build`` that makes the engine object::

    @register("ep", schemes=("equilibrium",))
    class EPOptions(RuleOptions):
        beta: float = Field(0.1, gt=0)
        ...
        def build(self, context): return flowsim.EP(self.beta, ..., equilibrium=context.equilibrium)

A study's configuration takes its rule choices and option tables from here
(:func:`with_rules`), so adding a rule is a new engine file, one entry here
and a scenario, with no edit to the studies that can use it. The engine
never sees a name: studies build objects and pass them in.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Literal

from pydantic import Field, create_model

from .config import Section

RULES: dict[str, type[RuleOptions]] = {}
SCHEMES: dict[str, tuple[str, ...]] = {}


@dataclasses.dataclass(frozen=True)
class RuleContext:
    """What a study knows that a rule's constructor needs.

    Attributes:
        dt, t1: the deployed relaxation (Euler step and horizon).
        equilibrium: the scheme's equilibrium solver (an engine object).
        fast_solver: the scheme's own fast solver (default: ``equilibrium``).
        lr: the optimiser's learning rate (rules whose updates are not gradients).
    """

    dt: float = 0.1
    t1: int = 150
    equilibrium: Any = None
    fast_solver: Any = None
    lr: float | None = None

    @property
    def fast(self):
        return self.equilibrium if self.fast_solver is None else self.fast_solver


class RuleOptions(Section):
    """A rule's options (a config table) and how to build the rule from them.

    ``differentiates_objective``: the rule is the exact gradient of the task's
    objective, so a task whose rules learn on another problem (FEP's clamped F)
    trains it on the objective itself.
    """

    differentiates_objective: ClassVar[bool] = False

    def build(self, context: RuleContext):
        raise NotImplementedError


def register(*names: str, schemes: tuple[str, ...]):
    """Register a :class:`RuleOptions` under ``names`` for the given ``schemes``."""

    def decorate(cls):
        for name in names:
            if name in RULES:
                raise ValueError(f"rule {name!r} is registered twice")
            RULES[name] = cls
            for scheme in schemes:
                SCHEMES[scheme] = SCHEMES.get(scheme, ()) + (name,)
        return cls

    return decorate


def rule_names(scheme: str) -> tuple[str, ...]:
    """The rule names a scheme accepts, in registration order."""
    return SCHEMES[scheme]


def build_rule(name: str, config, context: RuleContext):
    """The engine rule ``name`` with the options of ``config``'s table of that name."""
    options = getattr(config, name, None)
    if options is None:
        options = RULES[name]()
    return options.build(context)


def with_rules(base: type[Section], scheme: str, key: str, default: str, name: str,
               choices: tuple[str, ...] | None = None):
    """``base`` plus a ``key`` choosing one of the scheme's rules and one table per rule.

    ``choices`` restricts the scheme's rules (e.g. a study that runs two of them).
    """
    choices = rule_names(scheme) if choices is None else choices
    tables = {rule: (RULES[rule], RULES[rule]()) for rule in choices
              if RULES[rule].model_fields and rule in RULES}
    return create_model(name, __base__=base, **{key: (Literal[choices], default)}, **tables)


# --- the rules ------------------------------------------------------------------------

@register("bptt", schemes=("equilibrium",))
class BPTTOptions(RuleOptions):
    """Reverse mode through the deployed relaxation (T1 Euler steps of dt)."""

    def build(self, context):
        import flowsim

        return flowsim.BPTT(context.t1, context.dt)


@register("forward", schemes=("equilibrium",))
class ForwardOptions(RuleOptions):
    directions: int = Field(0, ge=0, description="0: exact forward mode (RTRL); k: k random tangents")

    def build(self, context):
        import flowsim

        return flowsim.Forward(context.t1, context.dt, self.directions or None)


@register("implicit", "oracle", schemes=("equilibrium", "fep"))
class ImplicitOptions(RuleOptions):
    """The oracle: the exact gradient of L(z*)."""

    differentiates_objective: ClassVar[bool] = True

    def build(self, context):
        import flowsim

        return flowsim.Implicit(equilibrium=context.equilibrium)


@register("rbp", schemes=("equilibrium",))
class RBPOptions(RuleOptions):
    steps: int = Field(150, ge=1, le=10**6, description="Euler steps of the adjoint ODE")

    def build(self, context):
        import flowsim

        return flowsim.RBP(self.steps, context.dt, equilibrium=context.equilibrium)


@register("ep", schemes=("equilibrium",))
class EPOptions(RuleOptions):
    beta: float = Field(0.1, gt=0, description="the nudge")
    steps: int = Field(150, ge=1, le=10**6, description="nudged phase (Euler steps of dt)")
    symmetric: bool = Field(True, description="nudge both ways (error O(beta^2))")

    def build(self, context):
        import flowsim

        return flowsim.EP(self.beta, self.steps, context.dt, self.symmetric,
                          equilibrium=context.equilibrium)


@register("hep", schemes=("equilibrium",))
class HEPOptions(RuleOptions):
    radius: float = Field(0.5, gt=0, description="modulus of the complex nudges")
    points: int = Field(4, ge=2, le=64, description="nudges on the circle")
    steps: int = Field(150, ge=1, le=10**6, description="nudged phase (Euler steps of dt)")

    def build(self, context):
        import flowsim

        return flowsim.HolomorphicEP(self.radius, self.points, self.steps, context.dt,
                                     equilibrium=context.equilibrium)


@register("pure", schemes=("fep",))
class PureOptions(RuleOptions):
    """The P-flow: every parameter by -dF/dtheta at the Q-flow's q* (seed 000)."""

    def build(self, context):
        import flowsim

        return flowsim.EnergyGradient(context.fast)


@register("hybrid", schemes=("fep",))
class HybridOptions(RuleOptions):
    """Seed 001's hand-made rules: EMA position priors, attract/discriminate token means."""

    rate: float = Field(0.01, gt=0, le=1, description="EMA rate r (seed 001 base_blend)")
    disc_mult: float = Field(0.5, ge=0, description="attract/discriminate rate = disc_mult * r")

    def build(self, context):
        from flowsim.fep import HybridRule

        return HybridRule(context.fast, rate=self.rate, disc_mult=self.disc_mult, lr=context.lr)


__all__ = ["RULES", "RuleContext", "RuleOptions", "register", "rule_names", "build_rule",
           "with_rules"]
