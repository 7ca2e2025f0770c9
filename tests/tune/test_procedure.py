"""`steepest search RECIPE --procedure new|established`: the staged tuning of Deep Learning Systems
§4.5.4, run end to end on a tiny recipe; each stage trains from the recipe the previous stage wrote
its choice into (asserted on the written report and on the config.yaml of every trial run)."""

import json
import math
from pathlib import Path

import pytest

from steepest.cli import main
from steepest.config import load_recipe
from steepest.tune.procedure import PROCEDURES

TINY = """\
name: tiny
data: {name: digits, batch_size: 64, subset: 300}
model: {name: mlp, hidden: [32]}
optimizer: {name: adamw, lr: 3.0e-3, weight_decay: 0.0}
schedule: {name: cosine}
trainer: {max_epochs: 3, seed: 0}
"""
SMALL = ["--max-steps", "20", "--lr-steps", "30", "--weight-decays", "1e-3"]
pytestmark = pytest.mark.usefixtures("one_torch_thread")  # the trials' small ops (tests/conftest.py)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("recipe") / "tiny.yaml"
    path.write_text(TINY)
    return path


def _trained_with(row: dict) -> dict:
    """What a trial actually trained: its run directory's resolved recipe."""
    recipe = load_recipe(str(Path(row["run_dir"]) / "config.yaml"))
    return {"data.batch_size": recipe.data.batch_size, "optimizer.lr": recipe.optimizer.lr,
            "optimizer.weight_decay": recipe.optimizer.weight_decay, "steps": json.loads((Path(row["run_dir"]) / "summary.json").read_text())["steps"]}


def _run(args, out: Path, capsys) -> tuple[dict, str]:
    assert main(["search", *args, "--out", str(out)]) == 0
    report = json.loads((out / "procedure.json").read_text())
    assert (out / "procedure.md").read_text().startswith("# Tuning procedure")
    return report, capsys.readouterr().out


def test_new_topology_stages_chain_and_the_final_recipe_trains(tiny, tmp_path, capsys):
    report, printed = _run([str(tiny), "--procedure", "new", *SMALL, "--schedules", "recipe,plateau"], tmp_path / "new", capsys)
    stages = {s["stage"]: s for s in report["stages"]}
    assert [s["stage"] for s in report["stages"]] == ["batch_size", "lr", "weight_decay", "schedule", "optimizer"]
    assert stages["batch_size"]["chosen"] == 32  # the reference's relatively small batch
    lr = stages["lr"]["chosen"]
    assert stages["lr"]["starts_from"]["data.batch_size"] == 32 and 1e-5 < lr < 1.0
    assert stages["weight_decay"]["starts_from"]["optimizer.lr"] == lr
    assert [t["candidate"] for t in stages["weight_decay"]["tried"]] == ["wd-0", "wd-0.001"]
    for row in stages["weight_decay"]["tried"]:  # stage 3 trains at the batch of stage 1 and the lr of stage 2
        used = _trained_with(row)
        assert used["data.batch_size"] == 32 and used["optimizer.lr"] == lr and 0 < used["steps"] <= 20
        assert math.isfinite(row["val_loss"])
    wd = stages["weight_decay"]["chosen"]
    assert stages["schedule"]["starts_from"]["optimizer.weight_decay"] == wd
    for row in stages["schedule"]["tried"]:
        assert _trained_with(row)["optimizer.weight_decay"] == wd and _trained_with(row)["optimizer.lr"] == lr
    # last, the method's optimizer against the recipe's: Ranger at batch 32, at the lr and decay chosen so far
    assert [t["candidate"] for t in stages["optimizer"]["tried"]] == ["recipe", "ranger"]
    for row in stages["optimizer"]["tried"]:
        ran = load_recipe(str(Path(row["run_dir"]) / "config.yaml"))
        assert ran.optimizer.name == ("adamw" if row["candidate"] == "recipe" else "ranger")
        assert (ran.optimizer.lr, ran.optimizer.weight_decay, ran.data.batch_size) == (lr, wd, 32)
    final = load_recipe(report["final_recipe"])
    assert (final.data.batch_size, final.optimizer.lr, final.optimizer.weight_decay) == (32, lr, wd)
    assert final.optimizer.name == stages["optimizer"]["chosen"]
    assert final.trainer.max_epochs == 3 and final.checkpoint.enabled  # the recipe's own budget, not the trials'
    assert printed.rstrip().endswith(Path(report["final_recipe"]).read_text().rstrip())  # ends with the YAML
    assert main(["train", report["final_recipe"], "--run-dir", str(tmp_path / "final")]) == 0
    assert "test accuracy" in capsys.readouterr().out


def test_established_topology_takes_the_reference_s_other_order(tiny, tmp_path, capsys):
    report, _ = _run([str(tiny), "--procedure", "established", *SMALL, "--schedules", "recipe,warmup_poly1_cyclic"], tmp_path / "est", capsys)
    order = [s["stage"] for s in report["stages"]]
    assert order == ["batch_size", "optimizer", "schedule", "weight_decay"]  # no lr test; the batch from the noise scale first
    assert order != [name for name, _ in PROCEDURES["new"]]
    stages = {s["stage"]: s for s in report["stages"]}
    batch, details = stages["batch_size"]["chosen"], stages["batch_size"]["details"]
    assert batch == 2 ** round(math.log2(batch)) and batch <= 300 and details["b_simple"] > 0
    lr = stages["batch_size"]["sets"]["optimizer.lr"]
    assert lr == pytest.approx(3e-3 * batch / 64, rel=5e-3)  # linear scaling in the perfect-scaling regime
    assert stages["optimizer"]["starts_from"]["data.batch_size"] == batch
    assert [t["candidate"] for t in stages["optimizer"]["tried"]][0] == "recipe"
    for row in stages["schedule"]["tried"]:
        used = _trained_with(row)
        assert used["data.batch_size"] == batch and used["optimizer.lr"] == lr
        assert load_recipe(str(Path(row["run_dir"]) / "config.yaml")).optimizer.name == stages["optimizer"]["chosen"]
    assert [t["candidate"] for t in stages["schedule"]["tried"]] == ["recipe", "warmup_poly1_cyclic"]
    chosen_schedule = stages["schedule"]["sets"]["schedule"]
    for row in stages["weight_decay"]["tried"]:
        assert load_recipe(str(Path(row["run_dir"]) / "config.yaml")).schedule.model_dump() == chosen_schedule
    final = load_recipe(report["final_recipe"])
    assert final.data.batch_size == batch and final.optimizer.lr == lr


def test_procedure_flags_without_a_procedure_are_refused(capsys):
    assert main(["search", "digits_search", "--max-steps", "5"]) == 2
    err = capsys.readouterr().err
    assert "--max-steps belongs to the tuning procedure" in err and err.count("\n") == 1


@pytest.mark.parametrize("args, message", [
    (["--max-steps", "0"], "--max-steps"),
    (["--weight-decays", "1e-4,x"], "--weight-decays"),
    (["--weight-decays", "-1"], "--weight-decays"),
    (["--schedules", "recipe,warmup_poly1"], "unknown candidate 'warmup_poly1'"),
    (["--lr-steps", "5"], "--lr-steps"),
    (["--optimizers", "recipe,nope"], "--optimizers: unknown optimizer 'nope'"),
    (["--tolerance", "1.5"], "--tolerance"),
    (["--metric", "train_loss"], "validation metric"),
    (["--trials", "3"], "--trials"),
])
def test_bad_input_is_one_line_before_anything_trains(tiny, tmp_path, capsys, args, message):
    code = main(["search", str(tiny), "--procedure", "new", *args, "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1
    assert not (tmp_path / "out" / "1-batch_size").exists() and not (tmp_path / "out" / "2-lr").exists()


def test_the_cyclic_tails_follow_the_method():
    """§4.5.4: a cyclic lr for the last ~20% of training. Written out: the established candidate
    decays as warmup_poly does up to 80% of training (reaching (1 - 0.7/0.9)^p there), then cycles
    between a tenth of that and that; the new one is constant, then cycles between lr/10 and lr."""
    from steepest.schedules.base import build_schedule
    from steepest.tune.procedure import (
        constant_then_cyclic,
        warmup_polynomial_then_cyclic,
        warmup_then_polynomial,
    )

    def built(spec, total=1000):
        return build_schedule("join", total, **{k: v for k, v in spec.items() if k != "name"})

    for p in (1.0, 2.0):
        tail, plain = built(warmup_polynomial_then_cyclic(p)), built(warmup_then_polynomial(p))
        reached = (1 - 0.7 / 0.9) ** p
        assert plain(800) == pytest.approx(reached, rel=1e-2)
        assert tail(799) == pytest.approx(reached, rel=2e-2) and tail(100) == pytest.approx(1.0)
        values = [tail(t) for t in range(800, 1000)]
        assert max(values) == pytest.approx(reached, rel=1e-9) and min(values) == pytest.approx(reached / 10, rel=1e-9)
        assert sum(1 for a, b in zip(values, values[1:]) if a <= reached / 10 + 1e-12 < b) == 2  # two triangles
    new = built(constant_then_cyclic())
    assert all(new(t) == 1.0 for t in range(0, 800, 37))
    assert min(new(t) for t in range(800, 1000)) == pytest.approx(0.1) and max(new(t) for t in range(800, 1000)) == pytest.approx(1.0)


def test_the_method_s_optimizer_follows_the_batch():
    from steepest.tune.procedure import (
        LARGE_BATCH,
        Settings,
        method_optimizer,
        optimizer_candidates,
    )

    assert method_optimizer(32) == method_optimizer(LARGE_BATCH - 1) == "ranger"
    assert method_optimizer(LARGE_BATCH) == method_optimizer("full") == "rangerlars"
    sgd = load_recipe("digits_mlp", ["optimizer={name: momentum, lr: 0.1, weight_decay: 1.0e-4}", "data.batch_size=2048"])
    candidates = optimizer_candidates(sgd, Settings())
    assert list(candidates) == ["recipe", "rangerlars"]
    # plain SGD's lr is not on Ranger's scale: the candidate takes RangerLARS's own default; the decay carries over
    assert candidates["rangerlars"].optimizer.lr == 1e-3 and candidates["rangerlars"].optimizer.weight_decay == 1e-4


# The optimizers whose lr the optimizer stage carried over, when procedure.py kept them in a list of its own.
ADAM_SCALE = {"adam", "adamw", "radam", "nadam", "amsgrad", "ranger", "rangerlars", "lamb", "novograd"}


def test_a_candidate_keeps_the_lr_of_a_recipe_whose_optimizer_is_on_adams_scale():
    """The registry's `adam_lr` flag decides, as the list did: the recipe's lr carries over to the
    candidate from exactly these optimizers; from any other (or an unregistered name) the candidate
    takes its own default lr."""
    from steepest.optim import OPTIMIZERS, defaults_of
    from steepest.tune.procedure import Settings, adam_lr, optimizer_candidates

    assert {n for n in OPTIMIZERS if adam_lr(n)} == ADAM_SCALE
    assert not adam_lr("torch.optim:Adam")
    for name in OPTIMIZERS:
        recipe = load_recipe("digits_mlp", [f"optimizer={{name: {name}, lr: 0.05}}"])
        candidates = optimizer_candidates(recipe, Settings(optimizers=("ranger",)))
        candidate = candidates.get("ranger", candidates["recipe"]).optimizer  # a Ranger recipe is its own candidate
        assert candidate.lr == (0.05 if name in ADAM_SCALE else defaults_of("ranger")["lr"]), name
    # an lr on Adam's scale is not handed to an optimizer on another scale (SGD's lr follows the loss's scale)
    recipe = load_recipe("digits_mlp", ["optimizer={name: adamw, lr: 0.003}"])
    for other in ("sgd", "lars", "lion"):
        candidate = optimizer_candidates(recipe, Settings(optimizers=(other,)))[other].optimizer
        assert candidate.lr == defaults_of(other).get("lr"), other


def test_the_recipe_s_own_optimizer_and_schedule_are_always_tried_first():
    """The incumbent is the recipe's own whatever --optimizers / --schedules list (and in what order):
    a worse candidate can never be kept by default; a name equal to the recipe's adds nothing."""
    from steepest.tune.procedure import Settings, optimizer_candidates, schedule_names

    recipe = load_recipe("digits_mlp")  # adamw
    assert list(optimizer_candidates(recipe, Settings(optimizers=("sgd",)))) == ["recipe", "sgd"]
    assert list(optimizer_candidates(recipe, Settings(optimizers=("auto", "recipe")))) == ["recipe", "ranger"]
    assert list(optimizer_candidates(recipe, Settings(optimizers=("recipe", "adamw")))) == ["recipe"]
    assert schedule_names("new", Settings(schedules=("plateau",))) == ("recipe", "plateau")
    assert schedule_names("new", Settings(schedules=("plateau", "recipe"))) == ("recipe", "plateau")


def test_an_unknown_optimizer_names_the_valid_ones():
    from steepest.errors import ConfigError
    from steepest.tune.procedure import Settings

    with pytest.raises(ConfigError, match="did you mean 'adamw'.*any of .*lamb"):
        Settings(optimizers=("adamww",)).check()


def test_a_candidate_on_another_lr_scale_trains_at_its_own_range_test_s_lr(tiny, tmp_path):
    """AdamW's lr is no start for SGD: the optimizer stage runs SGD's own LR range test and trains
    the SGD trial at its valley suggestion (not at SGD's registry default)."""
    from steepest.optim import defaults_of
    from steepest.tune.procedure import Settings, optimizer_stage

    stage = optimizer_stage(load_recipe(str(tiny)), Settings(max_steps=20, lr_steps=30, optimizers=("sgd",)), tmp_path)
    rows = {row["candidate"]: row for row in stage.tried}
    assert list(rows) == ["recipe", "sgd"]
    assert rows["recipe"]["lr"] == 3e-3 and "lr_from" not in rows["recipe"]  # the incumbent keeps its own
    suggested = json.loads((tmp_path / "range_tests" / "sgd" / "lr_finder.json").read_text())["suggested_lr"]
    assert rows["sgd"]["lr_from"] == "range test" and rows["sgd"]["lr"] == float(f"{suggested:.3g}")
    assert _trained_with(rows["sgd"])["optimizer.lr"] == rows["sgd"]["lr"] != defaults_of("sgd").get("lr")
