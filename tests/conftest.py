import os
from pathlib import Path

import jax
import pytest

# The oracles and most tests run in float64; float32 is covered by the tests that
# say so (it needs x64 on only to compare with float64 references).
jax.config.update("jax_enable_x64", True)

_SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
if "FLOWSIM_DATA" not in os.environ and _SHARED_DATA.is_dir():
    os.environ["FLOWSIM_DATA"] = str(_SHARED_DATA)


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_code():
    """Drop JAX's compiled executables after each test module.

    Every XLA:CPU executable keeps memory mappings; the whole suite compiles a few
    thousand programs, and a process past the kernel's vm.max_map_count (65,530
    here) segfaults in its next compilation (seen twice, in different tests).
    """
    yield
    jax.clear_caches()
