"""Transports Omega_ij between the frames of positions i and j (seeds 000/001).

The alignment term of the free energy compares belief q_i with the transported
belief Omega_ij q_j = N(Omega_ij mu_j, Omega_ij Sigma_j Omega_ij^T). A transport
returns the matrix KL_ij = KL(q_i || Omega_ij q_j), shape (B, N, N).

* `IdentityTransport`: Omega_ij = I, so KL_ij = KL(q_i || q_j) (diagonal closed form).
* `GaugeTransport`: Omega_ij = exp(phi_i) exp(-phi_j) with learned generators
  phi_i in so(K) (phi_i = A_i - A_i^T, A_i an unconstrained (K, K) parameter per
  position). Omega is then orthogonal, log det(Omega Sigma_j Omega^T) = log det Sigma_j,
  and with M = Omega_ij^{-1} = exp(phi_j) exp(-phi_i),

      2 KL_ij = sum_kl M_kl^2 sigma_il^2 / sigma_jk^2
                + sum_k (mu_jk - (M mu_i)_k)^2 / sigma_jk^2
                - K + sum_k log sigma_jk^2 - sum_k log sigma_ik^2.

  (The Gaussian KL with covariance S = Omega Sigma_j Omega^T: tr(S^-1 Sigma_i) =
  tr(M^T Sigma_j^-1 M Sigma_i), and (Omega mu_j - mu_i)^T S^-1 (...) =
  |Sigma_j^-1/2 (mu_j - M mu_i)|^2.) With phi = 0 it reduces to the identity case.
"""

from __future__ import annotations

import abc

import equinox as eqx
import jax
import jax.numpy as jnp

from .kl import kl_log_sigma


class AbstractTransport(eqx.Module):
    """Maps beliefs (mu, log_sigma) (B, N, K) and generators to KL_ij (B, N, N)."""

    @abc.abstractmethod
    def pairwise_kl(self, mu, log_sigma, phi):
        ...

    @abc.abstractmethod
    def init_generators(self, N: int, K: int, dtype):
        """The initial learned generators (None when there are none)."""


class IdentityTransport(AbstractTransport):
    def pairwise_kl(self, mu, log_sigma, phi):
        del phi
        return kl_log_sigma(
            mu[:, :, None, :], log_sigma[:, :, None, :], mu[:, None, :, :], log_sigma[:, None, :, :]
        )

    def init_generators(self, N, K, dtype):
        return None


def skew(a):
    return a - jnp.swapaxes(a, -1, -2)


class GaugeTransport(AbstractTransport):
    def pairwise_kl(self, mu, log_sigma, phi):
        gen = skew(phi)  # (N, K, K) in so(K)
        expp = jax.vmap(jax.scipy.linalg.expm)(gen)  # orthogonal: exp(-phi) = exp(phi)^T
        M = jnp.einsum("jkm,ilm->ijkl", expp, expp)  # M_ij = exp(phi_j) exp(-phi_i)
        var_i = jnp.exp(2.0 * log_sigma)  # (B, N, K)
        inv_var_j = jnp.exp(-2.0 * log_sigma)
        trace = jnp.einsum("ijkl,bil,bjk->bij", M**2, var_i, inv_var_j)
        m_mu_i = jnp.einsum("ijkl,bil->bijk", M, mu)  # (B, N_i, N_j, K)
        maha = jnp.sum((mu[:, None, :, :] - m_mu_i) ** 2 * inv_var_j[:, None, :, :], axis=-1)
        K = mu.shape[-1]
        logdet = 2.0 * (jnp.sum(log_sigma, -1)[:, None, :] - jnp.sum(log_sigma, -1)[:, :, None])
        return 0.5 * (trace + maha - K + logdet)

    def init_generators(self, N, K, dtype):
        return jnp.zeros((N, K, K), dtype)
