"""The run store's parts: TOML writer, typed configs, RunContext, env."""

import csv
import json
import math
import tomllib
from typing import Annotated, Literal

import jax.numpy as jnp
import numpy as np
import pytest
from pydantic import Field, model_validator

from flowsim.run import BadInput, RunContext, Section, StudyConfig
from flowsim.run.config import flatten, parse_overrides, parse_value, resolve
from flowsim.run.env import environment
from flowsim.run.store import scalar, write_json_atomic
from flowsim.run.toml_writer import dumps

# ---------------------------------------------------------------- TOML writer


@pytest.mark.parametrize(
    "number", [0.1, 1e-300, 5e-324, 1.7976931348623157e308, 2.0 / 3.0, -0.0, 1e16, 123456789.125, float("inf")]
)
def test_floats_round_trip_exactly(number):
    back = tomllib.loads(dumps({"x": number}))["x"]
    assert isinstance(back, float)
    assert back == number and math.copysign(1, back) == math.copysign(1, number)


def test_nan_round_trips_as_nan():
    assert math.isnan(tomllib.loads(dumps({"x": float("nan")}))["x"])


def test_nested_document_round_trips():
    document = {
        "scenario": "probe",
        "config": {
            "seed": 7,
            "big": 2**62,
            "flag": False,
            "text": 'quote " backslash \\ newline \n tab \t bell \x07 del \x7f unicode αβ',
            "sizes": [1, 2, 3],
            "mixed": [[0.1, 0.2], ["a"]],
            "records": [{"a": 1, "b": "x"}],
            "model": {"width": 64, "deep": {"rate": 1e-3}},
            "key with spaces": 1,
            "empty": [],
        },
    }
    assert tomllib.loads(dumps(document)) == document


def test_writer_rejects_unsupported_values():
    with pytest.raises(TypeError, match="cannot write"):
        dumps({"x": object()})


# ---------------------------------------------------------------- typed configs


class Model(Section):
    width: int = Field(128, ge=1)


class Probe(StudyConfig):
    dt: float = Field(0.1, gt=0)
    steps: int = Field(10, ge=1)
    flag: bool = True
    name: str = "bptt"
    choice: Literal["bptt", "ep"] = "bptt"
    beta: float = Field(0.5, ge=0.0, le=1.0)
    sizes: list[float] = Field([0.5, 1.0], min_length=1)
    counts: list[Annotated[int, Field(ge=1)]] = [1, 2]
    model: Model = Model()
    low: float = 0.1
    high: float = 0.5

    @model_validator(mode="after")
    def _ordered(self):
        if not self.low < self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        return self


DEFAULTS = Probe().model_dump()


def _resolve(*texts, changes=None):
    return resolve(Probe, changes or {}, parse_overrides(list(texts), DEFAULTS))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("dt=1", 1.0),
        ("dt=2.5e-3", 2.5e-3),
        ("steps=64", 64),
        ("flag=false", False),
        ("name=ep", "ep"),
        ('name="two words"', "two words"),
        ("name=true", "true"),
        ("name=1e-3", "1e-3"),
        ("sizes=[1, 2.5]", [1.0, 2.5]),
        ("model.width = 32", 32),
    ],
)
def test_set_values_are_parsed_and_typed_by_the_config(text, expected):
    key = text.split("=")[0].strip()
    resolved = flatten(_resolve(text).model_dump())[key]
    assert resolved == expected and type(resolved) is type(expected)
    if isinstance(expected, list):
        assert all(type(item) is float for item in resolved)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("steps=1.5", "steps must be an int, got 1.5 (float)"),
        ("steps=true", "steps must be an int"),
        ("flag=1", "flag must be a bool"),
        ("dt=abc", "dt: 'abc' is not a valid float"),
        ("dt=1\nseed=3", "is not a valid float"),
        ("sizes=3", "sizes must be a list"),
        ("sizes=['a']", "sizes[0] must be a float"),
        ("sizes=[]", "sizes = []: must have at least 1 item(s)"),
        ("counts=[1, 0]", "counts[1] = 0: must be >= 1"),
        ("model=3", "model is a table; set one of its keys: model.width"),
        ("modle.width=3", "did you mean model.width"),
        ("dt", "--set expects key=value"),
        ("=3", "--set expects key=value"),
        ("dt=0", "dt = 0: must be > 0.0"),
        ("dt=inf", "dt = inf: must be a finite number"),
        ("dt=nan", "dt = nan: must be a finite number"),
        ("sizes=[1.0, nan]", "sizes[1] = nan: must be a finite number"),
        ("beta=1.5", "beta = 1.5: must be <= 1.0"),
        ("choice=rbp", "choice = 'rbp': must be one of 'bptt' or 'ep'"),
        ("model.width=0", "model.width = 0: must be >= 1"),
        ("low=0.9", "low (0.9) must be below high (0.5)"),
        ("seed=-1", "seed = -1: must be >= 0"),
    ],
)
def test_bad_set_values_raise_one_line_bad_input(text, message):
    with pytest.raises(BadInput) as caught:
        _resolve(text)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_unknown_key_lists_the_valid_dotted_keys():
    with pytest.raises(BadInput) as caught:
        parse_overrides(["nope=1"], DEFAULTS)
    assert ("valid keys: beta, choice, counts, dt, flag, high, low, model.width, name, seed, "
            "sizes, steps") in str(caught.value)


def test_scenario_changes_then_set_then_seed():
    config = resolve(Probe, {"dt": 0.3, "model": {"width": 4}},
                     parse_overrides(["dt=0.2"], DEFAULTS), seed=9)
    assert (config.dt, config.model.width, config.seed) == (0.2, 4, 9)
    with pytest.raises(BadInput, match="scenario.toml: unknown config key 'dtt'"):
        resolve(Probe, {"dtt": 1.0}, source="scenario.toml")
    assert Probe().model_dump() == DEFAULTS  # the defaults are untouched


def test_parse_value_reads_toml_literals():
    assert parse_value("x", "[1, 2]", [0]) == [1, 2]
    assert parse_value("x", "'single'", "s") == "single"
    assert parse_value("x", "", "s") == ""


# ---------------------------------------------------------------- RunContext and files


def _read_csv(path):
    with path.open(newline="") as file:
        return list(csv.reader(file))


def test_append_metrics_reads_back_what_was_written(tmp_path):
    ctx = RunContext(tmp_path, seed=3)
    rows = [{"step": i, "loss": 0.1 * i, "residual": 1e-300 * (i + 1)} for i in range(4)]
    for row in rows:
        ctx.append_metrics(row)
    table = _read_csv(tmp_path / "metrics.csv")
    assert table[0] == ["step", "loss", "residual"]
    back = [{"step": int(s), "loss": float(loss), "residual": float(r)} for s, loss, r in table[1:]]
    assert back == rows


def test_append_metrics_converts_array_scalars_and_marks_missing_cells(tmp_path):
    ctx = RunContext(tmp_path, seed=0)
    ctx.append_metrics({"step": np.int64(0), "loss": jnp.asarray(0.25), "nan": float("nan")})
    ctx.append_metrics({"step": 1})
    assert _read_csv(tmp_path / "metrics.csv") == [["step", "loss", "nan"], ["0", "0.25", "nan"], ["1", "", ""]]


def test_append_metrics_rejects_a_new_column(tmp_path):
    ctx = RunContext(tmp_path, seed=0)
    ctx.append_metrics({"step": 0})
    with pytest.raises(ValueError, match=r"new column\(s\) \['loss'\]"):
        ctx.append_metrics({"step": 1, "loss": 0.5})


def test_write_metrics_uses_the_union_of_keys_in_first_appearance_order(tmp_path):
    ctx = RunContext(tmp_path, seed=0)
    ctx.write_metrics([{"a": 1, "b": 2}, {"c": 3, "a": 4}])
    ctx.append_metrics({"b": 5})
    assert _read_csv(tmp_path / "metrics.csv") == [["a", "b", "c"], ["1", "2", ""], ["4", "", "3"], ["", "5", ""]]


def test_plot_path_creates_plots_dir(tmp_path):
    ctx = RunContext(tmp_path, seed=0)
    assert ctx.plot_path("loss") == tmp_path / "plots" / "loss.png"
    assert ctx.plot_path("phase.pdf").name == "phase.pdf"
    assert (tmp_path / "plots").is_dir()
    with pytest.raises(ValueError):
        ctx.plot_path("../escape")


def test_log_and_progress(tmp_path, capsys):
    ctx = RunContext(tmp_path, seed=0)
    assert list(ctx.progress(range(3), desc="steps")) == [0, 1, 2]
    ctx.log("hello")
    assert capsys.readouterr().err.strip() == "hello"
    assert (tmp_path / "log.txt").read_text().rstrip().endswith(" hello")


def test_scalar_conversion():
    assert scalar(np.float32(0.5)) == 0.5 and scalar(jnp.ones((1,))) == 1.0
    assert [scalar(x) for x in (float("nan"), float("inf"), -float("inf"))] == ["nan", "inf", "-inf"]
    with pytest.raises(TypeError, match="shape"):
        scalar(np.zeros(2))
    with pytest.raises(TypeError):
        scalar([1])


def test_write_json_atomic_replaces_without_leftovers(tmp_path):
    path = tmp_path / "summary.json"
    write_json_atomic(path, {"status": "running"})
    write_json_atomic(path, {"status": "ok", "x": 0.1})
    assert json.loads(path.read_text()) == {"status": "ok", "x": 0.1}
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]


def test_environment_records_versions_devices_and_x64():
    env = environment(["flowsim", "run", "x"])
    assert env["x64"] is True and env["command"] == ["flowsim", "run", "x"]
    assert env["versions"]["jax"] and env["versions"]["numpy"] and env["devices"]
    assert json.loads(json.dumps(env)) == env
