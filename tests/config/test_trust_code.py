"""A run directory's config.yaml is data, not code (issue item 22): commands that read a recipe from
a run directory import nothing but registry names unless the user passes --trust-code; `steepest
validate` shows what each component path of a recipe is before anything runs."""

import json
import shutil
import sys
import textwrap

import numpy as np
import pytest
import yaml

from steepest.cli import main
from steepest.errors import ConfigError
from steepest.predict import Predictor

USER_MODULE = textwrap.dedent(
    """
    import numpy as np
    from torch import nn

    class Net(nn.Module):
        def __init__(self, input_shape, num_outputs, width: int = 16):
            super().__init__()
            self.body = nn.Sequential(nn.Flatten(), nn.Linear(int(np.prod(input_shape)), width), nn.ReLU(), nn.Linear(width, num_outputs))
        def forward(self, x):
            return self.body(x)

    def make_loss():
        return nn.CrossEntropyLoss()
    """
)


@pytest.fixture(scope="module")
def user_module(tmp_path_factory):
    folder = tmp_path_factory.mktemp("code")
    (folder / "trustnets.py").write_text(USER_MODULE)
    sys.path.insert(0, str(folder))
    yield "trustnets"
    sys.path.remove(str(folder))
    sys.modules.pop("trustnets", None)


@pytest.fixture(scope="module")
def user_run(tmp_path_factory, user_module):
    """A finished run whose model is the user's own class (trustnets:Net)."""
    run = tmp_path_factory.mktemp("trusted") / "run"
    assert main(["train", "--run-dir", str(run), "-q", "--set", "model={component: 'trustnets:Net', width: 8}",
                 "--set", "trainer.max_steps=3", "--set", "trainer.max_epochs=null"]) == 0
    sys.modules.pop("trustnets", None)
    return run


def evil_run(user_run, tmp_path, section: dict | None = None):
    """A copy of `user_run` whose config.yaml runs `touch MARKER` when its model is rebuilt."""
    run = tmp_path / "evil"
    shutil.copytree(user_run, run)
    marker = tmp_path / "pwned"
    config = yaml.safe_load((run / "config.yaml").read_text())
    config.update(section or {"model": {"component": "os:system", "command": f"touch {marker}"}})
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    return run, marker


def refused(argv, capsys) -> str:
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1, (argv, err)
    assert "--trust-code" in err
    return err


def test_run_dir_code_refused_by_every_command(user_run, tmp_path, capsys):
    run, marker = evil_run(user_run, tmp_path)
    inputs = tmp_path / "in.npz"
    np.savez(inputs, x=np.zeros((2, 64), np.float32))
    commands = [
        ["predict", str(run), str(inputs)],
        ["export", str(run)],
        ["train", "--run-dir", str(run), "--resume", "-q"],
        ["doctor", "--run-dir", str(run), "--checks", "init_loss"],
        ["batch-size", "--run-dir", str(run)],
        ["sharpness", "--run-dir", str(run)],
    ]
    for argv in commands:
        err = refused(argv, capsys)
        assert "model.component" in err and "os:system" in err, (argv, err)
        assert not marker.exists(), argv


SECTIONS = {
    "data": {"data": {"component": "os:system", "options": {"command": "true"}}},
    "loss": {"loss": {"component": "os:system"}},
    "optimizer": {"optimizer": {"component": "os:system"}},
    "schedule": {"schedule": {"component": "os:system"}},
    "schedules.momentum": {"schedules": {"momentum": {"component": "os:system"}}},
    "callbacks.0": {"callbacks": [{"component": "os:system"}]},
    "batch_transform": {"batch_transform": {"component": "os:system"}},
}


@pytest.mark.parametrize("key", SECTIONS)
def test_every_component_section_is_code(key, user_run, tmp_path, capsys):
    run, _ = evil_run(user_run, tmp_path, SECTIONS[key])
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["model"] = {"name": "mlp"}
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(ConfigError, match=f"^{key}.component: 'os:system'.*--trust-code"):
        Predictor.load(run)
    err = refused(["doctor", "--run-dir", str(run), "--checks", "init_loss"], capsys)
    assert f"{key}.component" in err


def test_user_code_in_a_run_needs_trust_code(user_run, tmp_path, capsys):
    inputs = tmp_path / "in.npz"
    np.savez(inputs, x=np.zeros((3, 64), np.float32))
    err = refused(["predict", str(user_run), str(inputs)], capsys)
    assert "model.component: 'trustnets:Net'" in err
    assert "trustnets" not in sys.modules  # refused before anything was imported
    assert main(["predict", str(user_run), str(inputs), "--trust-code"]) == 0
    assert len(capsys.readouterr().out.split()) == 3
    assert isinstance(Predictor.load(user_run, trust_code=True), Predictor)


def test_export_with_trust_code(user_run, tmp_path, capsys):
    out = tmp_path / "model.pt2"
    assert main(["export", str(user_run), "-o", str(out), "--trust-code"]) == 0
    assert out.exists()


def test_recipe_on_the_command_line_is_trusted(user_run, tmp_path, capsys):
    """A recipe the user names is the user's own: only the run directory's config.yaml is suspect."""
    recipe = tmp_path / "mine.yaml"
    recipe.write_text("model: {component: 'trustnets:Net', width: 8}\ntrainer: {max_steps: 2, max_epochs: null}\n")
    assert main(["validate", str(recipe)]) == 0
    capsys.readouterr()


def test_validate_reports_what_each_component_is(user_module, tmp_path, capsys):
    recipe = tmp_path / "mine.yaml"
    recipe.write_text("model: {component: 'trustnets:Net', width: 8}\nloss: {component: 'trustnets:make_loss'}\n"
                      "trainer: {max_steps: 2, max_epochs: null}\n")
    assert main(["validate", str(recipe)]) == 0
    out, err = capsys.readouterr()
    resolved = yaml.safe_load(out)  # stdout stays the resolved recipe
    assert resolved["model"]["component"] == "trustnets:Net" and resolved["loss"]["component"] == "trustnets:make_loss"
    lines = err.splitlines()
    assert any(line.startswith("model.component: trustnets:Net (class") for line in lines), err
    assert any(line.startswith("loss.component: trustnets:make_loss (function") for line in lines), err
    assert "trustnets.py" in err  # where the code lives


def test_validate_resolves_loss_and_schedule_paths(user_module, capsys):
    for section in ("loss={component: 'trustnets:make_los'}", "schedule={component: 'trustnets:nope'}"):
        code = main(["validate", "--set", section])
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1 and "trustnets:" in err, (section, err)


def test_validate_of_registry_names_reports_nothing(capsys):
    assert main(["validate", "--set", "trainer.max_steps=2"]) == 0
    assert capsys.readouterr().err == ""


def test_trust_code_flag_documented_in_help(capsys):
    for command in ("predict", "export", "train", "doctor", "batch-size", "sharpness"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        assert "--trust-code" in capsys.readouterr().out, command


def test_user_run_is_a_real_run(user_run):
    assert json.loads((user_run / "summary.json").read_text())["steps"] == 3


@pytest.mark.parametrize("source", ["def broken(:\n", "raise RuntimeError('no GPU here')\n"], ids=["syntax", "raises"])
def test_validate_of_a_module_that_fails_to_import_is_one_line(source, tmp_path, monkeypatch, capsys):
    (tmp_path / "badmod.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        code = main(["validate", "--set", "model={component: 'badmod:Net'}"])
    finally:
        sys.modules.pop("badmod", None)
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "model.component: importing module 'badmod' failed" in err, err


def test_steepest_s_own_token_windows_component_needs_no_trust(tmp_path):
    """A bundled recipe (gpt2_tokens) names steepest's own data component by import path: reading its
    run directory back is allowed without --trust-code; any other path in the same recipe still is not."""
    from steepest.config.load import OWN_COMPONENTS, load_run_recipe

    assert "steepest.data.tokens:token_windows" in OWN_COMPONENTS
    config = {"data": {"component": "steepest.data.tokens:token_windows", "stream": True, "task": "language_modeling",
                       "options": {"path": "somewhere"}}, "model": {"name": "gpt2"}}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    assert load_run_recipe(path).data.component == "steepest.data.tokens:token_windows"
    config["loss"] = {"component": "steepest.data.tokens:open_tokens"}  # steepest's, but not on the list
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(ConfigError, match="loss.component.*--trust-code"):
        load_run_recipe(path)
