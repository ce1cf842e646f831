"""Shared by the fep-* studies: the typed configuration and what it builds.

Config keys are flat (as in seeds 000/001): the free energy's weights, the
Q-flow's tolerances, the optimiser. ``variant`` is the learning rule, from
the registry's rules of the FEP scheme: ``pure`` (-dF/dθ at q*, the P-flow),
``hybrid`` (seed 001's hand-made rules; options in the ``hybrid`` table) or
``oracle`` (the exact gradient of the objective, trained on directly).

The objective is what the oracle differentiates, and what the oracle variant
learns on: a study on text (``predicts``) takes the prediction (the next
token of each sequence's last position at the inference equilibrium, the
honest one, or of every position under ``predict_positions = "all"``, honest
only without the alignment); the studies on random tokens, which cannot be predicted, take
the CE at every position at the clamped q* (the seeds' "train CE").
"""

from typing import ClassVar, Literal

import jax
import optax
from pydantic import Field

import flowsim
from flowsim import fep, train
from flowsim.run import StudyConfig
from flowsim.run.registry import RULES, RuleContext, build_rule, with_rules


class FEPModel(StudyConfig):
    """The free energy, its sizes and the Q-flow (keys shared by every fep-* study)."""

    B: int = Field(4, ge=1, le=10**5, description="sequences per batch")
    N: int = Field(8, ge=1, le=10**5, description="positions per sequence")
    K: int = Field(8, ge=1, le=4096, description="belief dimension")
    token_scale: float = Field(0.1, gt=0, description="token prior means ~ N(0, token_scale^2)")
    alpha: float = Field(1.0, gt=0, description="self-KL weight")
    lambda_beta: float = Field(1.0, ge=0, description="alignment weight")
    tau: float = Field(1.0, gt=0, description="next-token decoder temperature")
    lambda_in: float = Field(1.0, ge=0, description="input term weight (0: the seeds' F, "
                             "inputs only in the initial beliefs)")
    tau_in: float = Field(1.0, gt=0, description="input decoder temperature")
    input_bank: Literal[fep.INPUT_BANKS] = Field(
        "own", description="own: the input term has its own token bank; shared: the output's")
    input_term: Literal[fep.INPUT_TERMS] = Field(
        "ce", description="ce: each belief explains its own token through the input bank; "
        "prior: the input token's prior rho_x holds its position's belief, KL(q || rho_x); "
        "product: one prior per belief, the normalised product of the priors of its input "
        "and of the L-1 inputs before it (input_lags)")
    input_lags: int = Field(1, ge=1, le=64, description="L: each belief holds its own "
                            "input and the L-1 before it, each lag through its own bank")
    likelihood: Literal[fep.LIKELIHOODS] = Field(
        "plugin", description="plugin: a belief decodes as softmax(-KL(q || bank_v)/tau); "
        "expected: the expected likelihood under the belief, E_q[log p(token | z)] (Jensen "
        "bound) in F, softmax(log E_q[exp l_v(z)]) to predict")
    observe_context: bool = Field(
        False, description="at inference, every position but the last explains its next "
        "token, which is an input (false: no [obs] term at inference)")
    learn_sigma: bool = Field(True, description="the priors' and banks' log-sigmas are "
                              "parameters (false: fixed at 0, sigma = 1)")
    kappa: float = Field(1.0, gt=0, description="attention temperature of beta_ij")
    ce_reduction: Literal[fep.CE_REDUCTIONS] = Field(
        "sum", description="sum, sum_over_BN (seed 001's double normalisation)")
    transport: Literal["identity", "gauge"] = Field(
        "identity", description="gauge: Omega_ij = exp(phi_i) exp(-phi_j), phi in so(K)")
    t1: float = Field(50.0, gt=0, description="Q-flow horizon (stops earlier at a steady state)")
    qflow_tol: float = Field(1e-5, gt=0, description="rtol = atol of the Q-flow integration")
    steady_tol: float = Field(1e-6, gt=0, description="steady state: |dz/dt|_2 < steady_tol")
    max_qflow_steps: int = Field(4096, ge=1, le=10**7)
    newton_max_steps: int = Field(20, ge=1, le=10**4, description="Newton iterations after the Q-flow")
    krylov_max_steps: int = Field(100, ge=1, le=10**6,
                                  description="BiCGStab steps per Newton iteration")
    per_window: bool = Field(True, description="each window its own system (its own "
                             "tolerance; a window that fails drops out, counted); false: one")
    predicts: ClassVar[bool] = False  # the objective: see the module docstring


class FEPTraining(FEPModel):
    """A training run: the above, the observation weight and the optimiser."""

    steps: int = Field(400, ge=1, le=10**7, description="learning steps")
    lambda_obs: float = Field(1.0, gt=0, description="observation (CE) weight")
    lr: float = Field(0.05, gt=0)
    optimizer: Literal["sgd", "adam"] = Field(
        "sgd", description="sgd = Euler on the P-flow d theta/dt = -eta dF/dtheta; adam")
    clip: float = Field(0.0, ge=0, description="global-norm clip of the gradient (0: none)")


FEPConfig = with_rules(FEPTraining, "fep", key="variant", default="pure", name="FEPConfig",
                       choices=("pure", "hybrid", "oracle"))


class RandomTokens(StudyConfig):
    """Seed 001's minimal test draws its tokens from a vocabulary of V."""

    V: int = Field(16, ge=2, le=10**6, description="vocabulary")


class SyntheticConfig(FEPConfig, RandomTokens):
    """A training run on random tokens (fep-overfit, fep-oracle)."""


def transport(config):
    return fep.GaugeTransport() if config.transport == "gauge" else fep.IdentityTransport()


def free_energy(config, lambda_obs=None):
    return fep.FreeEnergy(
        alpha=config.alpha, lambda_beta=config.lambda_beta,
        lambda_obs=config.lambda_obs if lambda_obs is None else lambda_obs,
        tau=config.tau, kappa=config.kappa, ce_reduction=config.ce_reduction,
        transport=transport(config), lambda_in=config.lambda_in, tau_in=config.tau_in,
        observe_context=config.observe_context, input_term=config.input_term,
        likelihood=config.likelihood)


def qflow(config):
    """q*: the Q-flow (to a steady state or to t1), finished by Newton."""
    return fep.qflow_solver(config.t1, config.qflow_tol, config.steady_tol,
                            config.max_qflow_steps, newton_max_steps=config.newton_max_steps,
                            krylov_max_steps=config.krylov_max_steps)


def optimizer(config, lr=None):
    """sgd (Euler on the P-flow) or adam, after global-norm clipping when ``clip`` > 0."""
    lr = config.lr if lr is None else lr
    opt = optax.adam(lr) if config.optimizer == "adam" else optax.sgd(lr)
    if config.clip > 0:
        opt = optax.chain(optax.clip_by_global_norm(config.clip), opt)
    return opt


def oracle(config):
    """The exact gradient of the prediction loss at the same q* as the P-flow."""
    return flowsim.Implicit(equilibrium=qflow(config))


def rule(config, variant=None, lr=None):
    """The learning rule ``variant`` (default: the config's)."""
    context = RuleContext(equilibrium=qflow(config), lr=config.lr if lr is None else lr)
    return build_rule(variant or config.variant, config, context)


def init(config, key, V=None):
    return fep.init_priors(key, V or config.V, config.N, config.K, transport(config),
                           token_scale=config.token_scale, input_bank=config.input_bank,
                           learn_sigma=config.learn_sigma, input_lags=config.input_lags)


def random_batch(config, key):
    """B random sequences of N+1 tokens: x = (seq[:, :-1], seq[:, 1:]), y = seq[:, 1:]."""
    seq = jax.random.randint(key, (config.B, config.N + 1), 0, config.V)
    return (seq[:, :-1], seq[:, 1:]), seq[:, 1:]


def keys(config):
    """(init, data) keys of seed 001's minimal test (the fixed batch is drawn once)."""
    return jax.random.split(jax.random.PRNGKey(config.seed))


def task(config, data, train_batch, val_batch=None, lambda_obs=None, variant=None):
    """An FEPTask of this config on ``data`` (FixedBatch or TextWindows): the rule ``variant``
    (default: the config's) learns on the clamped F, or on the objective when it is the
    objective's oracle."""
    fe = free_energy(config, lambda_obs)
    if config.predicts:
        objective = fep.prediction_problem(fe, config.per_window, config.predict_positions)
    else:
        objective = fep.fep_problem(fe, config.per_window)
    on_objective = RULES[variant or config.variant].differentiates_objective
    learn_on = objective if on_objective else fep.fep_problem(fe, config.per_window)
    return fep.FEPTask(learn_on, data, train_batch, val_batch, qflow(config), objective)


def trainer(config, fep_task, variant=None):
    """The one loop's trainer of ``variant``; build ``fep_task`` with the same variant."""
    return train.Trainer(fep_task, rule(config, variant), optimizer(config), config.seed)


__all__ = ["FEPModel", "FEPTraining", "FEPConfig", "RandomTokens", "SyntheticConfig",
           "free_energy", "qflow", "optimizer", "oracle",
           "rule", "init", "random_batch", "keys", "task", "trainer"]
