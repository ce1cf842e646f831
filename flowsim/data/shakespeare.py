"""Character-level Tiny Shakespeare: the text, a 90/10 split, and batches.

The project does not commit the text. :func:`load_text` looks for
``tinyshakespeare.txt`` in, in order,

1. ``$FLOWSIM_DATA`` when that variable is set (tests and CI point it at
   ``../shared/data``); a missing or wrong file there is an error, never a
   silent download;
2. the cache directory ``$XDG_CACHE_HOME/flowsim`` (else ``~/.cache/flowsim``);
3. a download of karpathy/char-rnn's ``input.txt`` into that cache.

Every source is checked against the known md5
(``6fb458f1232090904fb40fe944165e91``, 1,115,394 characters, 65 symbols);
a mismatch or an unreachable network raises :class:`FlowsimDataError` with
one line that says what to do.

Ids are ``np.int32`` indices into ``vocab``, the sorted set of characters of
the whole text. The split is contiguous: the first ``floor(0.9 N)`` ids are
the training set, the rest validation (reference cross-entropies on this
split, nats/char: uniform 4.17, unigram 3.35, bigram 2.48).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

FILENAME = "tinyshakespeare.txt"
URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
MD5 = "6fb458f1232090904fb40fe944165e91"
N_CHARS = 1_115_394
N_SYMBOLS = 65
VAL_FRACTION = 0.1


class FlowsimDataError(RuntimeError):
    """The data set cannot be found, fetched, or does not match its checksum."""


@dataclasses.dataclass(frozen=True)
class Splits:
    """A contiguous train/validation split of one text.

    ``train`` and ``val`` are ``np.int32`` ids into ``vocab`` (a ``str`` of
    the distinct characters, sorted).
    """

    train: np.ndarray
    val: np.ndarray
    vocab: str


def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/flowsim``, else ``~/.cache/flowsim``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "flowsim"


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def _read_checked(path: Path) -> str:
    data = path.read_bytes()
    digest = _md5(data)
    if digest != MD5:
        raise FlowsimDataError(
            f"{path}: md5 {digest} does not match Tiny Shakespeare ({MD5}); "
            f"delete it or point $FLOWSIM_DATA at a directory holding the right {FILENAME}"
        )
    return data.decode("utf-8")


def _download(dest: Path, url: str = URL, timeout: float = 30.0) -> None:
    """Fetch ``url`` to ``dest`` atomically, checking the md5 before it lands."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            data = response.read()
    except (urllib.error.URLError, OSError) as err:
        raise FlowsimDataError(
            f"cannot download {url} ({err}); put {FILENAME} in {dest.parent} "
            f"or set $FLOWSIM_DATA to a directory holding it"
        ) from None
    digest = _md5(data)
    if digest != MD5:
        raise FlowsimDataError(
            f"downloaded {url} has md5 {digest}, expected {MD5}; nothing was written"
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".partial-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_text() -> str:
    """The full Tiny Shakespeare text (1,115,394 characters), md5-checked."""
    env = os.environ.get("FLOWSIM_DATA")
    if env:
        path = Path(env) / FILENAME
        if not path.is_file():
            raise FlowsimDataError(
                f"$FLOWSIM_DATA={env} holds no {FILENAME}; fix the variable or unset it to use the cache"
            )
        return _read_checked(path)
    path = cache_dir() / FILENAME
    if not path.is_file():
        _download(path)
    return _read_checked(path)


def encode(text: str, vocab: str) -> np.ndarray:
    """Characters to ``np.int32`` ids (positions in ``vocab``); unknown characters raise."""
    points = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    table = np.frombuffer(vocab.encode("utf-32-le"), dtype=np.uint32)
    order = np.argsort(table, kind="stable")
    pos = np.searchsorted(table[order], points)
    pos = np.minimum(pos, len(table) - 1)
    ids = order[pos]
    bad = table[ids] != points if len(points) else np.zeros(0, bool)
    if bad.any():
        char = text[int(np.argmax(bad))]
        raise FlowsimDataError(f"character {char!r} is not in the vocabulary")
    return ids.astype(np.int32)


def decode(ids, vocab: str) -> str:
    """Ids back to text: ``decode(encode(s, v), v) == s``."""
    ids = np.asarray(ids)
    if ids.size and (ids.min() < 0 or ids.max() >= len(vocab)):
        raise FlowsimDataError(f"ids outside [0, {len(vocab)})")
    return "".join(vocab[i] for i in ids.reshape(-1).tolist())


def load_splits(val_fraction: float = VAL_FRACTION) -> Splits:
    """The text as ids, split contiguously: first ``1 - val_fraction`` train, rest validation."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    text = load_text()
    vocab = "".join(sorted(set(text)))
    ids = encode(text, vocab)
    n_train = int(len(ids) * (1.0 - val_fraction))
    return Splits(train=ids[:n_train], val=ids[n_train:], vocab=vocab)


def pair_tables(ids, V: int):
    """(P(x, y), add-one smoothed P(y | x)) of a text of token ids, (V, V) each: the bigram
    of the text, its joint and the conditional table a bigram model predicts with."""
    ids = np.asarray(ids)
    counts = np.zeros((V, V))
    np.add.at(counts, (ids[:-1], ids[1:]), 1.0)
    smoothed = (counts + 1.0) / (counts.sum(1, keepdims=True) + V)
    return counts / counts.sum(), smoothed


def sample_batch(ids, key, batch: int, context: int, *, sequence: bool = False):
    """``batch`` random windows of ``context`` ids and what follows them.

    Start positions are ``jax.random.randint(key, (batch,), 0, N - context)``,
    so the batch is a pure function of ``key`` (jit-able; pass ``ids`` as a
    device array to avoid a copy per call). Returns ``(contexts, targets)``:
    ``contexts`` is ``(batch, context)``; ``targets`` is the next id,
    ``(batch,)``, or with ``sequence=True`` the window shifted by one,
    ``(batch, context)``.
    """
    ids = jnp.asarray(ids)
    n = ids.shape[0]
    if context < 1 or batch < 1 or n <= context:
        raise ValueError(f"need batch >= 1 and 1 <= context < {n}, got batch={batch}, context={context}")
    starts = jax.random.randint(key, (batch,), 0, n - context)
    window = starts[:, None] + jnp.arange(context)[None, :]
    contexts = ids[window]
    targets = ids[window + 1] if sequence else ids[starts + context]
    return contexts, targets
