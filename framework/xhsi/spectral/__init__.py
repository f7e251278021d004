"""Spectra and spectral models: the S(E; θ) of each component of unmixing,
Z = Σ_c a_c(y, x) · S_c(E; θ_c(y, x)) (Lascar et al. 2024, A&A 686, A259).

- ``spectra``: physical shapes as pure array functions of bin edges (keV) and parameter
  maps, with exact derivatives: ``powerlaw``, ``thermal``, ``absorption`` and their
  ``*_derivatives``, ``redshift_from_velocity``;
- ``models``: the ``SpectralModel`` base class of the ``spectral_model`` plugins
  (``setup(edges, xp, dtype)``, ``evaluate``, ``vjp``, ``jvp``), ``Parameter``, ``Product``
  and ``build_spectral_model("absorption * thermal")``; the built-in models (powerlaw,
  thermal, absorption, table, surrogate) are registered by the ``xhsi_builtin`` plugin and
  come from ``xhsi.get("spectral_model", name)``;
- ``surrogate``: the runtime of learnt emulators (PCA + network), ``load_surrogate``;
- ``training``: their training (``xhsi train-model``), imported on demand;
- ``iae``, ``iae_data``, ``iae_training``: interpolatory auto-encoders (the ``iae`` model), their
  training config and spectra, their training; ``library``: spectral library files.

See docs/spectral_models.md.
"""
from .models import Parameter, Product, SpectralModel, build_spectral_model
from .spectra import (absorption, absorption_derivatives, powerlaw, powerlaw_derivatives, redshift_from_velocity,
                      thermal, thermal_derivatives, velocity_from_redshift)
from .surrogate import Surrogate, load_surrogate, save_surrogate

__all__ = [
    "SpectralModel", "Parameter", "Product", "build_spectral_model",
    "powerlaw", "powerlaw_derivatives", "thermal", "thermal_derivatives", "absorption", "absorption_derivatives",
    "redshift_from_velocity", "velocity_from_redshift", "Surrogate", "load_surrogate", "save_surrogate",
]
