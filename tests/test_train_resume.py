"""`flowsim resume DIR` refuses what it cannot resume: one BadInput line, nothing touched."""

import numpy as np
import pytest
from flowsim.studies.common import config_hash
from test_train import TINY, tiny

from flowsim.run.config import BadInput
from flowsim.run.resume import check_resumable, prepare_resume
from flowsim.run.toml_writer import dumps
from flowsim.train import checkpoint


def _run_dir(tmp_path, config):
    record = {"scenario": "ep-train", "study": "ep_train", "description": "x", "config": config}
    (tmp_path / "config.toml").write_text(dumps(record))
    return tmp_path


def _snapshot(directory):
    return {p: p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def test_not_a_run_directory(tmp_path):
    with pytest.raises(BadInput, match="not a run directory"):
        prepare_resume(tmp_path)


def test_no_checkpoint(tmp_path):
    directory = _run_dir(tmp_path, TINY)
    before = _snapshot(directory)
    with pytest.raises(BadInput, match="holds no checkpoint"):
        prepare_resume(directory)
    assert _snapshot(directory) == before


def test_checkpoint_from_another_config(tmp_path):
    directory = _run_dir(tmp_path, TINY)
    other = tiny(model={**TINY["model"], "state": 9})
    checkpoint.save(directory / "checkpoints" / "bptt", 4, {"w": np.zeros(2)},
                    {"config_hash": config_hash(other), "best": 3.0})
    before = _snapshot(directory)
    with pytest.raises(BadInput, match="written by another config"):
        prepare_resume(directory)
    assert _snapshot(directory) == before
    # the matching config is accepted: the hash survives the config.toml round trip
    checkpoint.save(directory / "checkpoints" / "bptt", 6, {"w": np.zeros(2)},
                    {"config_hash": config_hash(tiny()), "best": 3.0})
    found = check_resumable(directory, prepare_resume(directory).config)
    assert found == [directory / "checkpoints" / "bptt"]
