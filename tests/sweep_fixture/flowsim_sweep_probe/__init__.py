"""A study for the sweep tests only (importable with ``PYTHONPATH=tests/sweep_fixture``)."""
