"""Diagnostics that say why two gradients differ: residuals, spectra, cosines."""

from .metrics import cosine, relative_error, residual
from .spectral import spectral_radius

__all__ = ["cosine", "relative_error", "residual", "spectral_radius"]
