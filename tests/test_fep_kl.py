"""KL closed forms (seeds 000/001): Monte Carlo, naive (..., V, K) logits, full-covariance transport."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
import scipy.special
import scipy.stats

from flowsim.fep import (
    FreeEnergy,
    GaugeTransport,
    IdentityTransport,
    expected_cross_entropy,
    expected_likelihood_logits,
    kl,
    kl_log_sigma,
    kl_logits,
)


def test_kl_matches_monte_carlo():
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(0), 3)
    K = 3
    mu_q, mu_p = jax.random.normal(k1, (2, K))
    sig_q, sig_p = jnp.exp(0.3 * jax.random.normal(k2, (2, K)))
    n = 400_000
    zs = np.asarray(mu_q + sig_q * jax.random.normal(k3, (n, K)))
    m_q, s_q, m_p, s_p = map(np.asarray, (mu_q, sig_q, mu_p, sig_p))
    log_ratio = np.sum(scipy.stats.norm.logpdf(zs, m_q, s_q) - scipy.stats.norm.logpdf(zs, m_p, s_p), -1)
    mc, stderr = log_ratio.mean(), log_ratio.std() / np.sqrt(n)
    exact = kl(mu_q, sig_q, mu_p, sig_p)
    assert abs(mc - exact) < 5 * stderr, (mc, exact, stderr)  # 5 standard errors
    assert jnp.allclose(kl_log_sigma(mu_q, jnp.log(sig_q), mu_p, jnp.log(sig_p)), exact, rtol=1e-12)
    assert abs(kl(mu_q, sig_q, mu_q, sig_q)) < 1e-14


def test_kl_logits_matches_naive():
    keys = jax.random.split(jax.random.PRNGKey(1), 4)
    V, K, tau = 11, 5, 0.7
    mu_q = jax.random.normal(keys[0], (2, 3, K))
    sig_q = jnp.exp(0.4 * jax.random.normal(keys[1], (2, 3, K)))
    mu_pi = 2 * jax.random.normal(keys[2], (V, K))
    sig_pi = jnp.exp(0.4 * jax.random.normal(keys[3], (V, K)))
    m, s, mp, sp = map(np.asarray, (mu_q, sig_q, mu_pi, sig_pi))
    full = ((s[..., None, :] / sp) ** 2 + ((m[..., None, :] - mp) / sp) ** 2 - 1
            - 2 * np.log(s[..., None, :] / sp))  # the naive (2, 3, V, K) tensor
    naive = -0.5 * full.sum(-1) / tau
    fast = jax.jit(kl_logits)(mu_q, sig_q, mu_pi, sig_pi, tau)
    assert fast.shape == (2, 3, V)
    np.testing.assert_allclose(fast, naive, rtol=1e-10, atol=1e-10)


def test_kl_logits_memory_at_gpt2_vocabulary():
    """XLA's own buffer accounting for V=50257, K=64, 1024 positions (float32): < 2 GB."""
    V, K, P = 50_257, 64, 1024
    f32 = jnp.float32
    args = (jax.ShapeDtypeStruct((P, K), f32), jax.ShapeDtypeStruct((P, K), f32),
            jax.ShapeDtypeStruct((V, K), f32), jax.ShapeDtypeStruct((V, K), f32))
    compiled = jax.jit(lambda a, b, c, d: kl_logits(a, b, c, d, 1.0)).lower(*args).compile()
    mem = compiled.memory_analysis()
    peak = mem.temp_size_in_bytes + mem.argument_size_in_bytes + mem.output_size_in_bytes
    naive_bytes = P * V * K * 4  # a (P, V, K) float32 tensor: 13 GB
    assert peak < 2e9 and peak < naive_bytes / 10, peak


def _full_gaussian_kl(m0, S0, m1, S1):
    """KL(N(m0, S0) || N(m1, S1)) with dense matrices (numpy)."""
    K = m0.shape[0]
    S1inv = np.linalg.inv(S1)
    d = m1 - m0
    return 0.5 * (np.trace(S1inv @ S0) + d @ S1inv @ d - K
                  + np.linalg.slogdet(S1)[1] - np.linalg.slogdet(S0)[1])


def _np_kl(mq, sq, mp, sp):
    return 0.5 * np.sum((sq / sp) ** 2 + ((mq - mp) / sp) ** 2 - 1 - 2 * np.log(sq / sp))


def test_gauge_transport_matches_full_covariance_kl():
    keys = jax.random.split(jax.random.PRNGKey(2), 3)
    B, N, K = 2, 3, 4
    mu = jax.random.normal(keys[0], (B, N, K))
    ls = 0.3 * jax.random.normal(keys[1], (B, N, K))
    phi = 0.5 * jax.random.normal(keys[2], (N, K, K))
    gauge = jax.jit(GaugeTransport().pairwise_kl)
    got = np.asarray(gauge(mu, ls, phi))
    ident = jax.jit(IdentityTransport().pairwise_kl)(mu, ls, None)
    np.testing.assert_allclose(gauge(mu, ls, 0 * phi), ident, rtol=1e-10, atol=1e-12)
    mu, ls, phi = map(np.asarray, (mu, ls, phi))
    gen = phi - np.swapaxes(phi, -1, -2)
    ref = np.zeros((B, N, N))
    for b in range(B):
        for i in range(N):
            for j in range(N):
                omega = scipy.linalg.expm(gen[i]) @ scipy.linalg.expm(-gen[j])
                S_j = omega @ np.diag(np.exp(2 * ls[b, j])) @ omega.T
                ref[b, i, j] = _full_gaussian_kl(mu[b, i], np.diag(np.exp(2 * ls[b, i])), omega @ mu[b, j], S_j)
    np.testing.assert_allclose(got, ref, rtol=1e-9, atol=1e-10)


def test_free_energy_matches_loop_reference():
    """F against an explicit loop over b, i, j (raw JAX, no vectorisation)."""
    from flowsim.fep import init_priors

    V, N, K, B = 5, 3, 2, 2
    fe = FreeEnergy(alpha=0.7, lambda_beta=1.3, lambda_obs=2.0, tau=0.8, kappa=0.5,
                    lambda_in=0.6, tau_in=1.7)
    pr = init_priors(jax.random.PRNGKey(3), V, N, K, IdentityTransport())
    pr = pr.__class__(pr.pos_mu + 0.3, pr.pos_log_sigma - 0.1, pr.tok_mu, pr.tok_log_sigma + 0.2,
                      None, pr.in_mu, pr.in_log_sigma - 0.3)
    mu = jax.random.normal(jax.random.PRNGKey(4), (B, N, K))
    ls = 0.2 * jax.random.normal(jax.random.PRNGKey(5), (B, N, K))
    y = jax.random.randint(jax.random.PRNGKey(6), (B, N), 0, V)
    x = jax.random.randint(jax.random.PRNGKey(7), (B, N), 0, V)
    m, sig, y_, x_ = np.asarray(mu), np.exp(np.asarray(ls)), np.asarray(y), np.asarray(x)
    pm, ps = np.asarray(pr.pos_mu), np.exp(np.asarray(pr.pos_log_sigma))
    tm, ts = np.asarray(pr.tok_mu), np.exp(np.asarray(pr.tok_log_sigma))
    rm, rs = np.asarray(pr.in_mu), np.exp(np.asarray(pr.in_log_sigma))
    total = 0.0
    for b in range(B):
        for i in range(N):
            total += fe.alpha * _np_kl(m[b, i], sig[b, i], pm[i], ps[i])
            kls = np.array([_np_kl(m[b, i], sig[b, i], m[b, j], sig[b, j]) for j in range(i + 1)])
            beta = np.exp(-kls / fe.kappa) / np.sum(np.exp(-kls / fe.kappa))
            total += fe.lambda_beta * np.sum(beta * kls)
            logits = np.array([-_np_kl(m[b, i], sig[b, i], tm[v], ts[v]) / fe.tau for v in range(V)])
            total += fe.lambda_obs * (np.log(np.sum(np.exp(logits))) - logits[y_[b, i]])
            own = np.array([-_np_kl(m[b, i], sig[b, i], rm[v], rs[v]) / fe.tau_in for v in range(V)])
            total += fe.lambda_in * (np.log(np.sum(np.exp(own))) - own[x_[b, i]])
    np.testing.assert_allclose(jax.jit(fe)((mu, ls), pr, x, y), total, rtol=1e-10)
    # inference drops exactly the [obs] term
    obs = jax.jit(fe.terms)((mu, ls), pr, x, y)["ce"]
    np.testing.assert_allclose(jax.jit(fe)((mu, ls), pr, x), total - fe.lambda_obs * obs,
                               rtol=1e-10)
    fe_bn = FreeEnergy(alpha=0.7, lambda_beta=1.3, lambda_obs=2.0, tau=0.8, kappa=0.5,
                       ce_reduction="sum_over_BN")
    ce_sum = jax.jit(fe.terms)((mu, ls), pr, x, y)["ce"]
    ce_bn = jax.jit(fe_bn.terms)((mu, ls), pr, x, y)["ce"]
    np.testing.assert_allclose(ce_bn, ce_sum / (B * N), rtol=1e-12)


@pytest.mark.parametrize("kwargs", [{"tau": 0.0}, {"tau": -1.0}, {"kappa": 0.0},
                                    {"tau_in": 0.0}, {"ce_reduction": "mean"}])
def test_bad_options_raise(kwargs):
    with pytest.raises(ValueError):
        FreeEnergy(**kwargs)


@pytest.mark.parametrize("V,K", [(1, 4), (4, 0)])
def test_bad_sizes_raise(V, K):
    from flowsim.fep import init_priors

    with pytest.raises(ValueError):
        init_priors(jax.random.PRNGKey(0), V, 3, K, IdentityTransport())


def test_lagged_and_prior_input_terms_and_the_observed_context_match_loop_references():
    """The [input] term with lag banks, as CE through each bank, as KL to the token's prior
    (input_term="prior") and as KL to the normalised product of the priors ("product"), and F at inference with the known next tokens observed
    (observe_context), against explicit loops over b, i and the lags."""
    from flowsim.fep import init_priors

    V, N, K, B, L = 5, 4, 2, 2, 3
    pr = init_priors(jax.random.PRNGKey(8), V, N, K, IdentityTransport(), input_lags=L)
    pr = pr.__class__(pr.pos_mu, pr.pos_log_sigma, pr.tok_mu, pr.tok_log_sigma + 0.2, None,
                      pr.in_mu, pr.in_log_sigma - 0.3, pr.lag_mu, pr.lag_log_sigma + 0.1)
    mu = jax.random.normal(jax.random.PRNGKey(9), (B, N, K))
    ls = 0.2 * jax.random.normal(jax.random.PRNGKey(10), (B, N, K))
    x = jax.random.randint(jax.random.PRNGKey(11), (B, N), 0, V)
    m, sig, x_ = np.asarray(mu), np.exp(np.asarray(ls)), np.asarray(x)
    banks = [(np.asarray(pr.in_mu), np.exp(np.asarray(pr.in_log_sigma)))]
    banks += [(np.asarray(pr.lag_mu[l]), np.exp(np.asarray(pr.lag_log_sigma[l])))
              for l in range(L - 1)]
    tau_in = 1.7
    ce = kl_ = product = 0.0
    for b in range(B):
        for i in range(N):
            precision = weighted = 0.0
            for lag, (bm, bs) in enumerate(banks):
                if i - lag < 0:
                    continue
                token = x_[b, i - lag]
                logits = np.array([-_np_kl(m[b, i], sig[b, i], bm[v], bs[v]) / tau_in
                                   for v in range(V)])
                ce += np.log(np.sum(np.exp(logits))) - logits[token]
                kl_ += _np_kl(m[b, i], sig[b, i], bm[token], bs[token])
                precision = precision + bs[token] ** -2.0
                weighted = weighted + bm[token] * bs[token] ** -2.0
            # the normalised product of the Gaussians present at (b, i)
            product += _np_kl(m[b, i], sig[b, i], weighted / precision, precision ** -0.5)
    for term, expected in (("ce", ce), ("prior", kl_), ("product", product)):
        fe = FreeEnergy(tau_in=tau_in, input_term=term)
        got = jax.jit(fe.input_ce)((mu, ls), pr, x)
        np.testing.assert_allclose(got, expected, rtol=1e-10, err_msg=term)
    # observe_context: at inference the first N-1 positions explain their next tokens, the
    # inputs x_{i+1}: F there is the clamped F without the last position's CE
    fe = FreeEnergy(lambda_obs=2.0, tau=0.8, observe_context=True)
    y = jnp.concatenate([x[:, 1:], jnp.array([[3], [1]])], axis=1)
    tm, ts = np.asarray(pr.tok_mu), np.exp(np.asarray(pr.tok_log_sigma))
    last = 0.0
    for b in range(B):
        logits = np.array([-_np_kl(m[b, -1], sig[b, -1], tm[v], ts[v]) / fe.tau
                           for v in range(V)])
        last += np.log(np.sum(np.exp(logits))) - logits[int(y[b, -1])]
    clamped = jax.jit(fe)((mu, ls), pr, x, y)
    np.testing.assert_allclose(jax.jit(fe)((mu, ls), pr, x), clamped - fe.lambda_obs * last,
                               rtol=1e-10)
    without = FreeEnergy(lambda_obs=2.0, tau=0.8)  # the default: no [obs] term at inference
    assert abs(float(jax.jit(fe)((mu, ls), pr, x) - jax.jit(without)((mu, ls), pr, x))) > 1e-3


def _gauss_hermite_expectation(f, mu, sigma, nodes=48):
    """E_{z ~ N(mu, diag sigma^2)} f(z) for K = 2 by the tensor-product Gauss-Hermite rule
    (exact for polynomials of degree < 2 * nodes per dimension; f smooth here)."""
    t, w = np.polynomial.hermite_e.hermegauss(nodes)
    w = w / w.sum()
    z0, z1 = np.meshgrid(mu[0] + sigma[0] * t, mu[1] + sigma[1] * t, indexing="ij")
    return np.einsum("i,j,ij...->...", w, w, f(np.stack([z0, z1], -1)))


def test_expected_likelihood_matches_quadrature_and_bounds_the_expected_cross_entropy():
    """log E_q[exp l_v(z)] and E_q[l_y(z)] (l_v(z) = -sum_k[(z_k - mu_vk)^2/(2 s_vk^2)
    + log s_vk]/tau) against Gauss-Hermite quadrature; the Jensen bound is above the
    quadrature's E_q[-log softmax(l(z))_y]; at sigma_q -> 0 both are the plug-in decoder."""
    rng = np.random.default_rng(3)
    V, tau = 6, 0.7
    bank_mu, bank_s = rng.normal(size=(V, 2)), np.exp(0.3 * rng.normal(size=(V, 2)))
    mu, sigma = rng.normal(size=2), np.array([0.8, 0.5])

    def point_logits(z):  # (..., 2) -> (..., V)
        d = (z[..., None, :] - bank_mu) ** 2 / (2 * bank_s**2) + np.log(bank_s)
        return -d.sum(-1) / tau

    quad_log_e = np.log(_gauss_hermite_expectation(lambda z: np.exp(point_logits(z)), mu, sigma))
    got = expected_likelihood_logits(mu, sigma, bank_mu, bank_s, tau)
    np.testing.assert_allclose(got, quad_log_e, rtol=1e-10, atol=1e-10)
    for y in range(V):
        bound = float(expected_cross_entropy(mu, sigma, bank_mu, bank_s, tau, y))
        e_ly = _gauss_hermite_expectation(lambda z: point_logits(z)[..., y], mu, sigma)
        np.testing.assert_allclose(bound, scipy.special.logsumexp(quad_log_e) - e_ly, rtol=1e-10)
        true_ce = _gauss_hermite_expectation(
            lambda z: scipy.special.logsumexp(point_logits(z), -1) - point_logits(z)[..., y],
            mu, sigma)
        assert true_ce < bound < true_ce + 1.0, (y, true_ce, bound)
    tiny = np.full(2, 1e-7)
    plug_in = kl_logits(mu, tiny, bank_mu, bank_s, tau)
    np.testing.assert_allclose(jax.nn.softmax(expected_likelihood_logits(mu, tiny, bank_mu, bank_s, tau)),
                               jax.nn.softmax(plug_in), rtol=1e-9)
    np.testing.assert_allclose(expected_cross_entropy(mu, tiny, bank_mu, bank_s, tau, 2),
                               -jax.nn.log_softmax(plug_in)[2], rtol=1e-9)


def test_free_energy_with_the_expected_likelihood_matches_a_loop_reference():
    """F(likelihood="expected") term by term: [input] (ce form) and [obs] from the per-position
    closed forms in numpy, the prediction's logits log E_q[exp l_v]."""
    from flowsim.fep import init_priors

    V, N, K, B = 5, 3, 2, 2
    pr = init_priors(jax.random.PRNGKey(12), V, N, K, IdentityTransport())
    pr = pr.__class__(pr.pos_mu, pr.pos_log_sigma, pr.tok_mu, pr.tok_log_sigma + 0.2, None,
                      pr.in_mu, pr.in_log_sigma - 0.3)
    mu = jax.random.normal(jax.random.PRNGKey(13), (B, N, K))
    ls = 0.2 * jax.random.normal(jax.random.PRNGKey(14), (B, N, K))
    x = jax.random.randint(jax.random.PRNGKey(15), (B, N), 0, V)
    y = jax.random.randint(jax.random.PRNGKey(16), (B, N), 0, V)
    fe = FreeEnergy(tau=0.8, tau_in=1.3, lambda_obs=1.5, likelihood="expected")

    def np_terms(m, s, bm, bs, tau, token):
        spread = tau * bs**2 + s**2
        log_e = np.sum(-(m - bm) ** 2 / (2 * spread) - 0.5 * np.log(spread / (tau * bs**2))
                       - np.log(bs) / tau, -1)
        e_l = -np.sum((s**2 + (m - bm[token]) ** 2) / (2 * bs[token] ** 2) + np.log(bs[token])) / tau
        return log_e, scipy.special.logsumexp(log_e) - e_l

    m, s = np.asarray(mu), np.exp(np.asarray(ls))
    banks = {"in": (np.asarray(pr.in_mu), np.exp(np.asarray(pr.in_log_sigma)), fe.tau_in, x),
             "out": (np.asarray(pr.tok_mu), np.exp(np.asarray(pr.tok_log_sigma)), fe.tau, y)}
    totals, logits = {"in": 0.0, "out": 0.0}, np.zeros((B, N, V))
    for b in range(B):
        for i in range(N):
            for name, (bm, bs, tau, tokens) in banks.items():
                log_e, ce = np_terms(m[b, i], s[b, i], bm, bs, tau, int(tokens[b, i]))
                totals[name] += ce
                if name == "out":
                    logits[b, i] = log_e
    terms = jax.jit(fe.terms)((mu, ls), pr, x, y)
    np.testing.assert_allclose(terms["input"], totals["in"], rtol=1e-10)
    np.testing.assert_allclose(terms["ce"], totals["out"], rtol=1e-10)
    np.testing.assert_allclose(fe.logits((mu, ls), pr), logits, rtol=1e-10)
    with pytest.raises(ValueError, match="likelihood must be one of"):
        FreeEnergy(likelihood="mean")
