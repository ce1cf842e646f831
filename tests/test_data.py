"""Tiny Shakespeare loader: checksum, split sizes, round trip, clear errors."""

import hashlib
import io
import os
import urllib.error
from pathlib import Path

import jax
import numpy as np
import pytest

from flowsim.data import FlowsimDataError, shakespeare

SHARED = Path(os.environ.get("FLOWSIM_DATA", ""))
needs_data = pytest.mark.skipif(
    not (SHARED / shakespeare.FILENAME).is_file(), reason="no $FLOWSIM_DATA/tinyshakespeare.txt"
)


@pytest.fixture(scope="module")
def splits():
    return shakespeare.load_splits()


@needs_data
def test_text_checksum_and_size():
    text = shakespeare.load_text()
    assert len(text) == 1_115_394
    assert hashlib.md5(text.encode("utf-8")).hexdigest() == "6fb458f1232090904fb40fe944165e91"
    assert text.startswith("First Citizen:\nBefore we proceed any further, hear me speak.")


@needs_data
def test_split_sizes_and_vocab(splits):
    assert len(splits.vocab) == 65
    assert splits.vocab == "".join(sorted(splits.vocab))
    assert len(splits.train) == 1_003_854  # floor(0.9 * 1_115_394)
    assert len(splits.val) == 111_540
    assert splits.train.dtype == np.int32 and splits.val.dtype == np.int32
    assert splits.train.min() == 0 and splits.train.max() == 64
    # contiguous: validation starts where training stops
    text = shakespeare.load_text()
    assert shakespeare.decode(splits.val[:30], splits.vocab) == text[1_003_854 : 1_003_854 + 30]


@needs_data
def test_encode_decode_round_trip(splits):
    text = shakespeare.load_text()
    ids = shakespeare.encode(text, splits.vocab)
    np.testing.assert_array_equal(ids, np.concatenate([splits.train, splits.val]))
    assert shakespeare.decode(ids, splits.vocab) == text
    # closed form: ids are positions in the vocabulary
    np.testing.assert_array_equal(shakespeare.encode("cab", "abc"), [2, 0, 1])
    assert shakespeare.decode([2, 0, 1], "abc") == "cab"


def test_encode_unknown_character_is_clear():
    with pytest.raises(FlowsimDataError, match="'z' is not in the vocabulary"):
        shakespeare.encode("abz", "abc")


def test_wrong_file_in_flowsim_data(tmp_path, monkeypatch):
    (tmp_path / shakespeare.FILENAME).write_text("To be, or not to be\n")
    monkeypatch.setenv("FLOWSIM_DATA", str(tmp_path))
    with pytest.raises(FlowsimDataError, match="does not match Tiny Shakespeare"):
        shakespeare.load_text()


def test_missing_file_in_flowsim_data(tmp_path, monkeypatch):
    monkeypatch.setenv("FLOWSIM_DATA", str(tmp_path))
    with pytest.raises(FlowsimDataError, match="holds no tinyshakespeare.txt"):
        shakespeare.load_text()


def _no_env_cache(monkeypatch, tmp_path):
    monkeypatch.delenv("FLOWSIM_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    return tmp_path / "flowsim" / shakespeare.FILENAME


def test_no_network_is_clear(tmp_path, monkeypatch):
    cached = _no_env_cache(monkeypatch, tmp_path)

    def offline(url, timeout=None):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(shakespeare.urllib.request, "urlopen", offline)
    with pytest.raises(FlowsimDataError, match="cannot download"):
        shakespeare.load_text()
    assert not cached.exists()


def test_download_checksum_mismatch_writes_nothing(tmp_path, monkeypatch):
    cached = _no_env_cache(monkeypatch, tmp_path)
    monkeypatch.setattr(
        shakespeare.urllib.request, "urlopen", lambda url, timeout=None: io.BytesIO(b"<html>404</html>")
    )
    with pytest.raises(FlowsimDataError, match="expected 6fb458f1232090904fb40fe944165e91"):
        shakespeare.load_text()
    assert not cached.parent.exists() or list(cached.parent.iterdir()) == []


@needs_data
def test_download_fills_cache_once(tmp_path, monkeypatch):
    good = (SHARED / shakespeare.FILENAME).read_bytes()
    cached = _no_env_cache(monkeypatch, tmp_path)
    calls = []

    def fake(url, timeout=None):
        calls.append(url)
        return io.BytesIO(good)

    monkeypatch.setattr(shakespeare.urllib.request, "urlopen", fake)
    assert len(shakespeare.load_text()) == 1_115_394
    assert cached.read_bytes() == good
    assert len(shakespeare.load_text()) == 1_115_394  # from the cache now
    assert calls == [shakespeare.URL]


def test_sample_batch_deterministic_and_aligned():
    ids = np.arange(100, dtype=np.int32)  # id == position, so windows are checkable
    key = jax.random.PRNGKey(3)
    c1, t1 = shakespeare.sample_batch(ids, key, 16, 5)
    c2, t2 = shakespeare.sample_batch(ids, key, 16, 5)
    np.testing.assert_array_equal(c1, c2)
    np.testing.assert_array_equal(t1, t2)
    assert c1.shape == (16, 5) and t1.shape == (16,)
    np.testing.assert_array_equal(c1[:, 1:] - c1[:, :-1], 1)
    np.testing.assert_array_equal(t1, c1[:, -1] + 1)
    assert int(t1.max()) <= 99
    c3, _ = shakespeare.sample_batch(ids, jax.random.PRNGKey(4), 16, 5)
    assert not np.array_equal(c1, c3)
    cs, ts = shakespeare.sample_batch(ids, key, 16, 5, sequence=True)
    np.testing.assert_array_equal(cs, c1)
    np.testing.assert_array_equal(ts, c1 + 1)


def test_sample_batch_rejects_bad_sizes():
    with pytest.raises(ValueError):
        shakespeare.sample_batch(np.arange(10), jax.random.PRNGKey(0), 2, 10)
    with pytest.raises(ValueError):
        shakespeare.sample_batch(np.arange(10), jax.random.PRNGKey(0), 0, 3)


def test_pair_tables_count_the_text_and_give_the_baselines():
    """The text "ababc": pairs ab, ba, ab, bc; P(x, y) their frequencies, P(y | x) add-one
    smoothed over V = 3. On the real text the bigram table's validation CE is DESIGN.md's
    2.48 nats/char."""
    joint, cond = shakespeare.pair_tables(shakespeare.encode("ababc", "abc"), 3)
    np.testing.assert_allclose(joint, np.array([[0, 2, 0], [1, 0, 1], [0, 0, 0]]) / 4)
    np.testing.assert_allclose(cond[0], np.array([1, 3, 1]) / 5)  # a -> b twice
    np.testing.assert_allclose(cond[1], np.array([2, 1, 2]) / 5)
    np.testing.assert_allclose(cond[2], np.full(3, 1 / 3))  # c has no successor: uniform
    if not (SHARED / shakespeare.FILENAME).is_file():
        return
    data = shakespeare.load_splits()
    _, table = shakespeare.pair_tables(data.train, 65)
    val_joint, _ = shakespeare.pair_tables(data.val, 65)
    assert round(float(-(val_joint * np.log(table)).sum()), 2) == 2.48
