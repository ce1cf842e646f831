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


# --- the dynamical systems of continuation and Lyapunov studies ------------------------

SYSTEMS: dict[str, type[SystemOptions]] = {}


class SystemOptions(Section):
    """A shipped system's constants (a config table) and how to build it.

    ``parameters``: the names of its params that continuation can follow and
    differentiate bifurcation points by. ``build`` returns ``(system, params)``,
    params a dict of floats (arrays for a network's weights).
    """

    parameters: ClassVar[tuple[str, ...]] = ()

    def build(self, seed: int = 0):
        raise NotImplementedError


def register_system(name: str):
    """Register a :class:`SystemOptions` under ``name``."""

    def decorate(cls):
        if name in SYSTEMS:
            raise ValueError(f"system {name!r} is registered twice")
        SYSTEMS[name] = cls
        return cls

    return decorate


def with_systems(base: type[Section], key: str, default: str, name: str,
                 choices: tuple[str, ...] | None = None):
    """``base`` plus a ``key`` choosing a system and one table of constants per system."""
    choices = tuple(SYSTEMS) if choices is None else choices
    tables = {system.replace("-", "_"): (SYSTEMS[system], SYSTEMS[system]())
              for system in choices}
    return create_model(name, __base__=base, **{key: (Literal[choices], default)}, **tables)


def build_system(name: str, config, seed: int = 0):
    """``(system, params)`` of system ``name`` with the constants of ``config``'s table."""
    options = getattr(config, name.replace("-", "_"), None)
    if options is None:
        options = SYSTEMS[name]()
    return options.build(seed)


def _constants(options, names):
    return {k: float(getattr(options, k)) for k in names}


@register_system("bratu")
class BratuOptions(SystemOptions):
    """u'' + lambda e^u = 0 by finite differences; starts at u = 0 (lambda = 0)."""

    parameters: ClassVar[tuple[str, ...]] = ("lambda",)
    n: int = Field(100, ge=1, le=10**7, description="interior grid points")

    def build(self, seed=0):
        from flowsim.systems import Bratu

        return Bratu(self.n), {"lambda": 0.0}


@register_system("lorenz")
class LorenzOptions(SystemOptions):
    """Lorenz; starts on C+ (x, y > 0), or at the origin with branch = "origin"."""

    parameters: ClassVar[tuple[str, ...]] = ("sigma", "rho", "beta")
    sigma: float = 10.0
    rho: float = 28.0
    beta: float = Field(8.0 / 3.0, gt=0)
    branch: Literal["nontrivial", "origin"] = "nontrivial"

    def build(self, seed=0):
        from flowsim.systems import Lorenz

        return Lorenz(self.branch), _constants(self, self.parameters)


@register_system("brusselator")
class BrusselatorOptions(SystemOptions):
    """The Brusselator; starts at its equilibrium (a, b/a)."""

    parameters: ClassVar[tuple[str, ...]] = ("a", "b")
    a: float = Field(1.0, gt=0)
    b: float = 1.0

    def build(self, seed=0):
        from flowsim.systems import Brusselator

        return Brusselator(), _constants(self, self.parameters)


@register_system("saddle-node")
class SaddleNodeOptions(SystemOptions):
    """dz/dt = mu + a z - z^2; starts on the upper branch."""

    parameters: ClassVar[tuple[str, ...]] = ("mu", "a")
    mu: float = 1.0
    a: float = 0.0

    def build(self, seed=0):
        from flowsim.systems import SaddleNode

        return SaddleNode(), _constants(self, self.parameters)


@register_system("pitchfork")
class PitchforkOptions(SystemOptions):
    """dz/dt = mu z - z^3 + h; starts at the root near 0 (mu < 0)."""

    parameters: ClassVar[tuple[str, ...]] = ("mu", "h")
    mu: float = -1.0
    h: float = 0.0

    def build(self, seed=0):
        from flowsim.systems import Pitchfork

        return Pitchfork(), _constants(self, self.parameters)


@register_system("hopf")
class HopfOptions(SystemOptions):
    """dz/dt = (mu + i omega) z + s |z|^2 z; starts at 0 (l1 = 2 s / omega, Kuznetsov)."""

    parameters: ClassVar[tuple[str, ...]] = ("mu", "omega", "s")
    mu: float = -1.0
    omega: float = Field(1.0, gt=0)
    s: float = -1.0

    def build(self, seed=0):
        from flowsim.systems import HopfNormalForm

        return HopfNormalForm(), _constants(self, self.parameters)


@register_system("landau")
class LandauOptions(SystemOptions):
    """The coordinator's Landau module as a flow; starts disordered (eta = 0) or ordered."""

    parameters: ClassVar[tuple[str, ...]] = ("a", "b", "h")
    a: float = 1.0
    b: float = Field(1.0, gt=0)
    h: float = 0.0
    branch: Literal["disordered", "ordered"] = "disordered"

    def build(self, seed=0):
        from flowsim.systems import LandauFlow

        return LandauFlow(self.branch), _constants(self, self.parameters)


@register_system("tanh-ring")
class TanhRingOptions(SystemOptions):
    """A ring of n tanh units: mean-field gain c, neighbour gain kappa, drive b
    (matrix-free); starts at z = b."""

    parameters: ClassVar[tuple[str, ...]] = ("c", "kappa", "b")
    n: int = Field(20_000, ge=3, le=10**8)
    c: float = 0.0
    kappa: float = 0.2
    b: float = 0.0

    def build(self, seed=0):
        from flowsim.systems import TanhRing

        return TanhRing(self.n), _constants(self, self.parameters)


class _NetworkOptions(SystemOptions):
    parameters: ClassVar[tuple[str, ...]] = ("c",)
    n: int = Field(16, ge=1, le=10**5, description="units")
    gain: float = Field(1.0, gt=0, description="scale of the drawn W (c multiplies it)")
    c: float = 0.0

    def _build(self, model, seed):
        import jax

        from flowsim.systems import Gain

        system = Gain(model)
        params = system.default_params(jax.random.PRNGKey(seed), gain=self.gain)
        return system, {**params, "c": self.c}


@register_system("hopfield")
class HopfieldOptions(_NetworkOptions):
    """flowsim's Hopfield network (seeded W, b) with W -> c W; starts at z = 0."""

    def build(self, seed=0):
        from flowsim.systems import Hopfield

        return self._build(Hopfield(self.n, 1), seed)


@register_system("tanh")
class TanhOptions(_NetworkOptions):
    """flowsim's asymmetric tanh network (seeded W, b) with W -> c W; starts at z = 0."""

    def build(self, seed=0):
        from flowsim.systems import AsymmetricTanh

        return self._build(AsymmetricTanh(self.n, 1), seed)


__all__ = ["RULES", "RuleContext", "RuleOptions", "register", "rule_names", "build_rule",
           "with_rules", "SYSTEMS", "SystemOptions", "register_system", "with_systems",
           "build_system"]
