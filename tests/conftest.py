import os
from pathlib import Path

import jax

# Oracles and tests run in float64: float32 GMRES breaks down at tight tolerances.
jax.config.update("jax_enable_x64", True)

_SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
if "FLOWSIM_DATA" not in os.environ and _SHARED_DATA.is_dir():
    os.environ["FLOWSIM_DATA"] = str(_SHARED_DATA)
