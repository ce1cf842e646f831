"""Diagnostics that say why two gradients differ: residuals, spectra, cosines."""

from .metrics import cosine, relative_error, residual
from .spectral import spectral_radius
from .stability import is_stable, jacobian_eigenvalues, stability_margin

__all__ = ["cosine", "relative_error", "residual", "spectral_radius", "is_stable",
           "jacobian_eigenvalues", "stability_margin"]
