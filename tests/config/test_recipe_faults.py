"""Recipe faults found by users (issue item 19): duplicate YAML keys, alias bombs, unchecked
`data.options`, non-finite numbers. Each is one line on stderr and exit code 2, before any data is read."""

import sys
import textwrap
import time
import tracemalloc

import pytest

from steepest.config import load_recipe, recipe_from_dict
from steepest.config.validate import validate_recipe
from steepest.config.yaml_io import parse_yaml
from steepest.errors import ConfigError


# -- duplicate keys ------------------------------------------------------------------------------------
def test_duplicate_key_is_refused_naming_key_and_line(tmp_path, one_error_line):
    recipe = tmp_path / "dup.yaml"
    recipe.write_text("trainer: {max_steps: 2}\noptimizer: {name: adamw, lr: 0.001, lr: 100.0}\n")
    err = one_error_line(["validate", str(recipe)])
    assert "optimizer.lr" in err and "line 2" in err and "keep one" in err


def test_duplicate_section_in_block_style_names_both_lines(tmp_path, one_error_line):
    recipe = tmp_path / "dup.yaml"
    recipe.write_text("optimizer:\n  lr: 0.01\ntrainer:\n  max_steps: 2\noptimizer:\n  lr: 5.0\n")
    err = one_error_line(["validate", str(recipe)])
    assert "'optimizer'" in err and "lines 1 and 5" in err


def test_duplicate_key_in_an_override_value(one_error_line):
    err = one_error_line(["validate", "--set", "model={name: mlp, hidden: [8], hidden: [4]}"])
    assert "model.hidden" in err or "'hidden'" in err


def test_merge_keys_are_not_duplicates():
    data = parse_yaml("base: &b {lr: 1.0, name: sgd}\nopt: {<<: *b, lr: 2.0}\n")
    assert data["opt"] == {"lr": 2.0, "name": "sgd"}


# -- alias expansion ------------------------------------------------------------------------------------
def laughs(levels: int = 9) -> str:
    """The billion laughs: each level a list of nine aliases of the one below (9**levels strings)."""
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]")
    return "search:\n  space:\n    x:\n      type: categorical\n      choices:\n" + "".join(f"        - {line}\n" for line in lines)


def test_alias_bomb_fails_fast_in_bounded_memory(tmp_path):
    recipe = tmp_path / "bomb.yaml"
    recipe.write_text(laughs())
    assert len(recipe.read_bytes()) < 600
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with pytest.raises(ConfigError, match="alias"):
            load_recipe(str(recipe))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - start < 5
    assert peak < 50e6


def test_alias_bomb_one_line_from_the_cli(tmp_path, one_error_line):
    recipe = tmp_path / "bomb.yaml"
    recipe.write_text(laughs())
    err = one_error_line(["validate", str(recipe)])
    assert "alias" in err and str(recipe) in err


def test_recursive_alias_refused():
    with pytest.raises(ConfigError, match="itself"):
        parse_yaml("a: &a [1, *a]\n")


def test_small_anchor_reuse_still_works():
    data = parse_yaml("a: &a [1, 2, 3]\nb: *a\nc: [*a, *a]\n")
    assert data["c"] == [[1, 2, 3], [1, 2, 3]]


# -- data.options --------------------------------------------------------------------------------------
@pytest.fixture
def user_data(tmp_path, monkeypatch):
    (tmp_path / "mydata.py").write_text(textwrap.dedent(
        """
        import numpy as np

        class Blobs:
            def __init__(self, n: int = 60, seed: int = 0):
                rng = np.random.default_rng(seed)
                self.y = rng.integers(0, 3, n)
                self.x = rng.normal(size=(n, 4)).astype("float32") + self.y[:, None] * 3.0
            def __len__(self):
                return len(self.y)
            def __getitem__(self, i):
                return self.x[i], self.y[i]
        """))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "mydata"
    sys.modules.pop("mydata", None)


OPTIONS = [
    ("data={name: digits, options: {bogus: 1}}", "data.options.bogus: unknown argument"),
    ("data={name: digits, options: {loader: load_iris}}", "data.options.loader: unknown argument"),  # a row's fixed argument
    ("data={name: sine, options: {lenght: 100}}", "did you mean 'length'"),
    ("data={name: sine, options: {length: abc}}", "data.options.length"),
    ("data={name: bbc_news, options: {max_len: 64}}", "did you mean 'max_length'"),
    ("data={format: csv, path: x.csv, target: y, options: {delimeter: ';'}}", "did you mean 'delimiter'"),
    ("data={format: npz, path: x.npz, options: {xkey: a}}", "did you mean 'x_key'"),
    ("data={format: text_folder, path: docs, options: {tokeniser: bytes}}", "did you mean 'tokenizer'"),
    ("data={component: 'mydata:Blobs', options: {sed: 3}}", "did you mean 'seed'"),
]


@pytest.mark.parametrize("data,expected", OPTIONS, ids=[d for d, _ in OPTIONS])
def test_data_options_checked_at_validation(data, expected, user_data, one_error_line):
    err = one_error_line(["validate", "--set", data])
    assert expected in err


def test_data_options_typo_stops_train_before_reading_data(tmp_path, one_error_line):
    err = one_error_line(["train", "--set", "data.options={bogus: 1}", "--set", "trainer.max_steps=1",
                          "--run-dir", str(tmp_path / "r"), "-q"])
    assert "data.options.bogus" in err


def test_good_data_options_still_validate(user_data):
    for data in ({"name": "sine", "options": {"length": 200, "window": 8}},
                 {"format": "csv", "path": "x.csv", "target": "y", "options": {"delimiter": ";"}},
                 {"component": "mydata:Blobs", "options": {"n": 30}}):
        validate_recipe(recipe_from_dict({"data": data}))


# -- non-finite numbers --------------------------------------------------------------------------------
NON_FINITE = [
    ("optimizer.lr=.inf", "optimizer.lr"),
    ("optimizer.lr=inf", "optimizer.lr"),  # a string pydantic would read as a float
    ("optimizer.weight_decay=.nan", "optimizer.weight_decay"),
    ("trainer.clip_norm=.inf", "trainer.clip_norm"),
    ("trainer.clip_value=.inf", "trainer.clip_value"),
    ("model.dropout=.nan", "model.dropout"),
    ("model.dropout=nan", "model.dropout"),
    ("model.hidden=[8, .inf]", "model.hidden.1"),
    ("schedule={name: cosine, eta_min_ratio: -.inf}", "schedule.eta_min_ratio"),
    ("optimizer.betas=[0.9, .nan]", "optimizer.betas.1"),
    ("data={name: sine, options: {noise: .inf}}", "data.options.noise"),
    ("callbacks=[{name: ema, decay: .nan}]", "callbacks.0.decay"),
    ("search={space: {optimizer.lr: {low: 1e-4, high: .inf}}}", "search.space.optimizer.lr.high"),
]


@pytest.mark.parametrize("override,key", NON_FINITE, ids=[o for o, _ in NON_FINITE])
def test_non_finite_numbers_refused_naming_the_key(override, key, one_error_line):
    err = one_error_line(["validate", "--set", override])
    assert f"error: {key}:" in err and "finite" in err


def test_non_finite_in_a_recipe_file(tmp_path, one_error_line):
    recipe = tmp_path / "inf.yaml"
    recipe.write_text("optimizer: {lr: .inf}\n")
    err = one_error_line(["validate", str(recipe)])
    assert "error: optimizer.lr:" in err and "finite" in err


def test_non_finite_in_a_recipe_built_in_python():
    from steepest.config.schema import Recipe

    with pytest.raises(ConfigError, match=r"model\.dropout.*finite"):
        validate_recipe(Recipe(model={"name": "mlp", "dropout": float("nan")}))
