"""The run store's parts: TOML writer, constraints, config resolution, RunContext, env."""

import csv
import json
import math
import tomllib

import jax.numpy as jnp
import numpy as np
import pytest

from flowsim.run import BadInput, RunContext, at_least, in_range, non_negative, one_of, positive
from flowsim.run.config import apply_overrides, coerce, flatten, parse_overrides, parse_value, set_seed, validate
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


# ---------------------------------------------------------------- constraints


def test_constraints_accept_and_name_the_valid_range():
    assert positive.check(0.1) is None and positive.check(0) == "must be > 0"
    assert non_negative.check(0) is None and non_negative.check(-1) == "must be >= 0"
    assert at_least(1).check(1) is None and at_least(1).check(0) == "must be >= 1"
    assert in_range(0, 1).check(0) is None and in_range(0, 1).check(1) is None
    assert in_range(0, 1).check(1.5) == "must be in [0, 1]"
    assert one_of("bptt", "ep").check("ep") is None
    assert one_of("bptt", "ep").check("rbp") == "must be one of 'bptt', 'ep'"


def test_constraints_reject_nan_bool_and_strings():
    assert positive.check(float("nan")) is not None
    assert in_range(0, 1).check(float("nan")) is not None
    assert positive.check(True) is not None
    assert at_least(1).check("3") is not None


def test_constraint_factories_reject_nonsense():
    with pytest.raises(ValueError):
        in_range(1, 0)
    with pytest.raises(ValueError):
        one_of()


# ---------------------------------------------------------------- config resolution

DEFAULTS = {"seed": 0, "dt": 0.1, "steps": 10, "flag": True, "name": "bptt", "sizes": [0.5, 1.0],
            "model": {"width": 128}}


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
def test_set_values_are_parsed_and_coerced_to_the_default_type(text, expected):
    key = text.split("=")[0].strip()
    value = apply_overrides(DEFAULTS, parse_overrides([text], DEFAULTS), "--set")
    resolved = flatten(value)[key]
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
        ("model=3", "model is a table; set one of its keys: model.width"),
        ("modle.width=3", "did you mean model.width"),
        ("dt", "--set expects key=value"),
        ("=3", "--set expects key=value"),
        ("dt=" + "9" * 400, "too large for a float"),
    ],
)
def test_bad_set_values_raise_bad_input(text, message):
    with pytest.raises(BadInput) as caught:
        apply_overrides(DEFAULTS, parse_overrides([text], DEFAULTS), "--set")
    assert message in str(caught.value)


def test_unknown_key_lists_the_valid_dotted_keys():
    with pytest.raises(BadInput) as caught:
        parse_overrides(["nope=1"], DEFAULTS)
    assert "valid keys: dt, flag, model.width, name, seed, sizes, steps" in str(caught.value)


def test_overrides_leave_the_defaults_untouched():
    apply_overrides(DEFAULTS, {"model.width": 3}, "--set")
    assert DEFAULTS["model"]["width"] == 128


def test_parse_value_reads_toml_literals():
    assert parse_value("x", "[1, 2]", [0]) == [1, 2]
    assert parse_value("x", "'single'", "s") == "single"
    assert parse_value("x", "", "s") == ""


def test_coerce_keeps_exact_types():
    assert coerce("k", 3, 1.0) == 3.0 and type(coerce("k", 3, 1.0)) is float
    with pytest.raises(BadInput):
        coerce("k", 3.0, 1)
    with pytest.raises(BadInput):
        coerce("k", False, 1)


def test_validate_rejects_non_finite_floats_and_range_violations():
    validate(DEFAULTS, {"dt": positive, "model.width": at_least(1)})
    with pytest.raises(BadInput, match="dt = inf: must be a finite number"):
        validate({**DEFAULTS, "dt": float("inf")}, {})
    with pytest.raises(BadInput, match=r"sizes\[1\] = nan"):
        validate({**DEFAULTS, "sizes": [1.0, float("nan")]}, {})
    with pytest.raises(BadInput, match="model.width = 0: must be >= 1"):
        validate({**DEFAULTS, "model": {"width": 0}}, {"model.width": at_least(1)})
    with pytest.raises(BadInput, match="CONSTRAINTS names 'missing'"):
        validate(DEFAULTS, {"missing": positive})


def test_set_seed_defaults_to_zero_and_rejects_negative():
    assert set_seed({}, None) == {"seed": 0}
    assert set_seed({"seed": 1}, 5) == {"seed": 5}
    with pytest.raises(BadInput, match="seed must be an integer"):
        set_seed({}, -1)


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
