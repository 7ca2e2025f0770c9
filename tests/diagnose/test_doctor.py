"""The doctor's gallery: one deliberately broken setup per check, each flagged by the right check;
and no alarm on healthy recipes."""

import dataclasses
import json

import pytest
import torch
from torch import nn

from steepest.cli import main
from steepest.config import load_recipe
from steepest.data import DataBundle, DataInfo, Split
from steepest.diagnose import (
    CHECKS,
    context_from_components,
    context_from_recipe,
    diagnose_fit,
    run_doctor,
)


@pytest.fixture(scope="module")
def healthy():
    return context_from_recipe(load_recipe("digits_mlp"))


def ctx_with(ctx, **changes):
    return dataclasses.replace(ctx, **changes)


def mlp(k=10, d=64, act=nn.ReLU, depth=2, width=64):
    layers, w = [], d
    for _ in range(depth):
        layers += [nn.Linear(w, width), act()]
        w = width
    return nn.Sequential(*layers, nn.Linear(w, k))


class IgnoresInput(nn.Module):
    def __init__(self, k=10):
        super().__init__()
        self.b = nn.Parameter(torch.zeros(k))

    def forward(self, x):
        return self.b.expand(len(x), -1)


class LogOfNegative(nn.Module):
    def forward(self, x):
        return torch.log(x - 100.0)


class SqrtAbs(nn.Module):  # finite forward; d/dx sqrt|x| is infinite at the ReLU's zeros
    def forward(self, x):
        return torch.sqrt(x.abs())


def verdict(ctx, name):
    return run_doctor(ctx, [name])[name]


@pytest.mark.parametrize("recipe", ["digits_mlp", "breast_cancer_sgd", "diabetes_regression"])
def test_no_false_alarm_on_healthy_recipes(recipe):
    report = run_doctor(context_from_recipe(load_recipe(recipe)))
    bad = [(r.name, r.verdict, r.summary) for r in report.results if r.verdict in ("warn", "fail")]
    assert not bad
    assert len(report.results) >= 17


def test_wrong_output_shape(healthy):
    assert verdict(ctx_with(healthy, make_model=lambda: mlp(k=3)), "forward_shape").verdict == "fail"


def test_softmax_before_cross_entropy(healthy):
    r = verdict(ctx_with(healthy, make_model=lambda: nn.Sequential(mlp(), nn.Softmax(dim=1))), "loss_api")
    assert r.verdict == "fail" and "Softmax" in r.summary


def test_sigmoid_before_bce_with_logits():
    ctx = context_from_recipe(load_recipe("breast_cancer_sgd", ["data.task=binary", "loss.name=bce_with_logits"]))
    r = verdict(ctx_with(ctx, make_model=lambda: nn.Sequential(mlp(k=1, d=30), nn.Sigmoid())), "loss_api")
    assert r.verdict == "fail" and "Sigmoid" in r.summary


def test_nll_on_raw_logits(healthy):
    r = verdict(ctx_with(healthy, loss_name="nll", loss_fn=nn.NLLLoss()), "loss_api")
    assert r.verdict == "fail"


def test_huge_initial_outputs(healthy):
    def loud():
        m = mlp()
        with torch.no_grad():
            m[-1].weight.mul_(100)
        return m

    assert verdict(ctx_with(healthy, make_model=loud), "initial_loss").verdict == "fail"


def test_model_that_ignores_its_input(healthy):
    ctx = ctx_with(healthy, make_model=IgnoresInput)
    assert verdict(ctx, "overfit_tiny").verdict == "fail"
    assert verdict(ctx, "real_vs_noise").verdict == "fail"


def test_nan_produced_inside_layer_3(healthy):
    r = verdict(ctx_with(healthy, make_model=lambda: nn.Sequential(nn.Linear(64, 32), nn.ReLU(), LogOfNegative(), nn.Linear(32, 10))), "nonfinite")
    assert r.verdict == "fail" and r.evidence["module"].startswith("2 (LogOfNegative)")


def test_gradient_nan_produced_in_backward(healthy):
    r = verdict(ctx_with(healthy, make_model=lambda: nn.Sequential(nn.Linear(64, 32), nn.ReLU(), SqrtAbs(), nn.Linear(32, 10))), "nonfinite")
    assert r.verdict == "fail" and "gradients" in r.summary and r.evidence["module"].startswith("2 (SqrtAbs)")


def test_nan_in_the_inputs(healthy):
    d = healthy.data
    x = d.train.x.clone()
    x[:, 5] = float("nan")
    bad = DataBundle(Split(x, d.train.y), d.val, d.test, d.info)
    r = verdict(ctx_with(healthy, data=bad), "nonfinite")
    assert r.verdict == "fail" and "inputs" in r.summary


def test_deep_sigmoid_net(healthy):
    ctx = ctx_with(healthy, make_model=lambda: mlp(act=nn.Sigmoid, depth=12))
    assert verdict(ctx, "gradient_flow").verdict == "fail"
    assert verdict(ctx, "sigmoid_hidden").verdict == "warn"


def test_dead_relus(healthy):
    def dead():
        m = mlp()
        with torch.no_grad():
            m[0].bias.fill_(-100)
        return m

    assert verdict(ctx_with(healthy, make_model=dead), "dead_relu").verdict == "warn"


def test_collapsing_activations(healthy):
    def tiny():
        m = mlp(act=nn.Tanh, depth=10)
        for layer in m:
            if isinstance(layer, nn.Linear):
                nn.init.normal_(layer.weight, std=0.01)
                nn.init.zeros_(layer.bias)
        return m

    assert verdict(ctx_with(healthy, make_model=tiny), "activations").verdict == "fail"


def test_growing_activations(healthy):
    def loud():
        m = nn.Sequential(*[layer for _ in range(4) for layer in (nn.Linear(64, 64), nn.ReLU())], nn.Linear(64, 10))
        for layer in m:
            if isinstance(layer, nn.Linear):
                nn.init.normal_(layer.weight, std=4 / 64**0.5)  # gain 4 (Kaiming: sqrt 2): std x2.8 per layer
        return m

    r = verdict(ctx_with(healthy, make_model=loud), "activations")
    assert r.verdict == "warn" and "goes from" in r.summary


def test_dropout_with_batchnorm_and_small_batch():
    ctx = context_from_recipe(load_recipe("digits_mlp", ["model.norm=batchnorm", "model.dropout=0.2", "data.batch_size=4"]))
    assert verdict(ctx, "dropout_with_norm").verdict == "warn"
    assert verdict(ctx, "batchnorm_batch_size").verdict == "warn"


def test_normalization_applied_twice_to_validation(healthy):
    d = healthy.data
    mean, std = torch.tensor(d.info.x_norm["mean"]), torch.tensor(d.info.x_norm["std"])
    twice = (d.val.x - mean) / std  # the pipeline standardized it already; a second pass with the raw statistics
    bad = DataBundle(d.train, Split(twice.float(), d.val.y), d.test, d.info)
    r = verdict(ctx_with(healthy, data=bad), "preprocessing")
    assert r.verdict == "fail" and r.evidence["median_std_ratio"] < 0.5


def test_normalization_applied_to_one_split_only(healthy):
    d = healthy.data
    raw = d.val.x * torch.tensor(d.info.x_norm["std"]) + torch.tensor(d.info.x_norm["mean"])
    bad = DataBundle(d.train, Split(raw.float(), d.val.y), d.test, d.info)
    assert verdict(ctx_with(healthy, data=bad), "preprocessing").verdict == "fail"


def synthetic(n=1000, pos=0.05, dup=0):
    g = torch.Generator().manual_seed(0)
    y = (torch.rand(n, generator=g) < pos).long()
    x = torch.randn(n, 5, generator=g) + y[:, None]
    tr, va, te = slice(0, 700), slice(700, 850), slice(850, n)
    val_x = x[va].clone()
    val_x[:dup] = x[tr][:dup]
    info = DataInfo("synthetic", "classification", (5,), 2, num_classes=2)
    return DataBundle(Split(x[tr], y[tr]), Split(val_x, y[va]), Split(x[te], y[te]), info)


def test_imbalanced_95_5(healthy):
    r = verdict(ctx_with(healthy, data=synthetic(pos=0.05), make_model=lambda: mlp(k=2, d=5)), "class_imbalance")
    assert r.verdict == "warn" and r.evidence["ratio"] > 10


def test_imbalanced_initial_loss_wants_the_prior_bias(healthy):
    ctx = ctx_with(healthy, data=synthetic(pos=0.05), make_model=lambda: mlp(k=2, d=5))
    r = verdict(ctx, "initial_loss")
    assert r.verdict == "warn" and "output_bias" in r.fix  # ln 2 = 0.69 vs label entropy 0.2

    def prior_bias():
        m = mlp(k=2, d=5)
        with torch.no_grad():
            m[-1].weight.zero_()
            m[-1].bias.copy_(torch.tensor([0.95, 0.05]).log())
        return m

    assert verdict(ctx_with(ctx, make_model=prior_bias), "initial_loss").verdict == "ok"


def test_bf16_changes_the_loss(healthy):
    class Cancels(nn.Module):  # (logits + 512) - 512: bf16 keeps 8 bits, so the logits round to multiples of 4
        def forward(self, x):
            return (x + 512.0) - 512.0

    r = verdict(ctx_with(healthy, make_model=lambda: nn.Sequential(mlp(), Cancels())), "precision")
    assert r.verdict == "warn" and "bf16" in r.summary


def test_duplicated_rows_across_splits(healthy):
    r = verdict(ctx_with(healthy, data=synthetic(pos=0.5, dup=7), make_model=lambda: mlp(k=2, d=5)), "duplicates")
    assert r.verdict == "fail" and r.evidence["train_val"] == 7


def test_learning_rate_of_10():
    ctx = context_from_recipe(load_recipe("digits_mlp", ["optimizer={name: sgd, lr: 10}", "trainer.clip_norm=null"]))
    assert verdict(ctx, "learning_rate").verdict == "fail"
    r = verdict(ctx, "gradient_flow")  # one step moves the weights by far more than ~1e-3 of their norm
    assert r.verdict == "warn" and max(r.evidence["update_ratios"].values()) > 0.1
    # far too low an lr: full batches and no dropout, so the loss falls slowly but surely (with random
    # batches a loss that does not move ends above or below its first batch's by chance: "rose" then
    # failed instead of warning for 1 seed in 5)
    slow = context_from_recipe(load_recipe("digits_mlp", ["optimizer={name: sgd, lr: 1e-4}", "data.batch_size=full", "model.dropout=0"]))
    r = verdict(slow, "learning_rate")
    assert r.verdict == "warn" and "no progress" in r.summary


def test_fp16_overflow(healthy):
    def loud():
        m = mlp()
        with torch.no_grad():
            m[0].weight.mul_(1e5)
        return m

    assert verdict(ctx_with(healthy, make_model=loud), "precision").verdict == "warn"


def test_weight_decay_sensitivity_optional(healthy):
    assert "weight_decay" not in [r.name for r in run_doctor(healthy, ["forward_shape"]).results]
    assert CHECKS.get("weight_decay").flags["default"] is False
    assert verdict(healthy, "weight_decay").verdict == "ok"

    class Frozen(nn.Module):  # no trainable weights for decay to act on
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.zeros(1))
            self.net = mlp()
            self.net.requires_grad_(False)

        def forward(self, x):
            return self.net(x) + 0 * self.w

    assert verdict(ctx_with(healthy, make_model=Frozen), "weight_decay").verdict == "warn"


def test_fit_diagnosis():
    under = diagnose_fit([(i, 2.2) for i in range(10)], [(i, 2.25) for i in range(10)], baseline=2.3)
    assert under.verdict == "warn" and under.summary.startswith("underfitting")
    over = diagnose_fit([(i, 1.0 / (i + 1)) for i in range(30)], [(i, 0.5 + abs(i - 5) * 0.1) for i in range(30)], baseline=2.3)
    assert over.verdict == "warn" and over.summary.startswith("overfitting")
    good = diagnose_fit([(i, 0.3) for i in range(10)], [(i, 0.35) for i in range(10)], baseline=2.3)
    assert good.verdict == "ok"


def test_doctor_cli_exit_codes_and_json(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["doctor", "--checks", "forward_shape,duplicates", "--json", str(tmp_path / "d.json")]) == 0
    assert "forward_shape" in capsys.readouterr().out and (tmp_path / "d.json").exists()
    assert main(["doctor", "--set", "optimizer={name: sgd, lr: 10}", "--set", "trainer.clip_norm=null", "--checks", "learning_rate"]) == 1
    assert len(list((tmp_path / "runs").glob("doctor-*/doctor.json"))) == 1  # saved by default
    assert main(["doctor", "--checks", "forward_shap"]) == 2
    assert "did you mean 'forward_shape'" in capsys.readouterr().err


def test_labels_shifted_by_one_row(healthy):
    d = healthy.data
    shifted = DataBundle(Split(d.train.x, torch.roll(d.train.y, 1)), Split(d.val.x, torch.roll(d.val.y, 1)), d.test, d.info)
    assert verdict(ctx_with(healthy, data=shifted), "real_vs_noise").verdict == "fail"


def test_run_doctor_takes_a_recipe_name_or_components():
    assert run_doctor("digits_mlp", ["forward_shape"])["forward_shape"].verdict == "ok"
    data = context_from_recipe(load_recipe("digits_mlp")).data
    net = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10), nn.Softmax(dim=1))
    ctx = context_from_components(net, data, nn.functional.cross_entropy, loss_name="cross_entropy")
    report = run_doctor(ctx, ["forward_shape", "loss_api"])
    assert [r.verdict for r in report.results] == ["ok", "fail"]
    assert '"verdict": "fail"' in report.to_json() and "FAIL" in report.table()


def test_doctor_reads_a_finished_run(tmp_path, capsys):
    from steepest.track.store import MetricStore

    run = tmp_path / "over"
    run.mkdir()
    (run / "data_info.json").write_text(json.dumps({"task": "classification", "num_classes": 10}))
    store = MetricStore(run / "metrics.db")
    for step in range(1, 31):
        store.log(step * 10, {"train_loss": 1.0 / step, "val_loss": 0.5 + abs(step - 5) * 0.1})
    store.close()
    assert main(["doctor", "--run-dir", str(run)]) == 0  # fit findings are warnings, not failures
    out = capsys.readouterr().out
    assert "overfitting" in out and (run / "doctor.json").exists()
    assert main(["doctor", "--run-dir", str(tmp_path / "missing")]) == 2


def test_training_checks_on_token_ids(tmp_path):
    """Text inputs are token ids: the noise control draws random ids (Gaussian numbers are not ids),
    and a fine-tuning lr caps the checks' own Adam lr (a pretrained network collapses at 3e-3)."""
    for name, words in {"money": "bank price market shares fell", "sport": "goal match team score win"}.items():
        (tmp_path / name).mkdir()
        for i in range(30):
            (tmp_path / name / f"{i}.txt").write_text(" ".join(words.split()[i % 5:] + words.split()[: i % 5]))
    recipe = load_recipe("digits_mlp", [f"data={{format: text_folder, path: {tmp_path}, options: {{max_length: 24}}}}",
                                        "model={name: transformer_encoder, vocab_size: 259, d_model: 32, layers: 1, ff: 64}"])
    ctx = context_from_recipe(recipe)
    assert verdict(ctx, "real_vs_noise").verdict == "ok"
    fast = verdict(ctx, "overfit_tiny")
    assert fast.verdict == "ok"
    slow = verdict(ctx_with(ctx, lr=2e-5), "overfit_tiny")  # 2e-4 for the checks: memorizes, but slower than at 3e-3
    assert slow.verdict == "ok" and slow.evidence["n2"][2] > fast.evidence["n2"][2]
    r = verdict(ctx_with(ctx, lr=1e-6), "overfit_tiny")  # 1e-5 for the checks: too little to memorize, and the fix says so
    assert r.verdict == "fail" and "too low" in r.fix and "label" not in r.fix


@pytest.mark.parametrize("changes,finding", [
    (["schedule={name: constant}", "trainer.early_stopping=null"], "learning rate is constant"),
    (["optimizer={name: sgd, lr: 0.05}"], "plain SGD without momentum"),
])
def test_training_setup_warns_about_each_choice(changes, finding):
    result = verdict(context_from_recipe(load_recipe("digits_mlp", changes)), "training_setup")
    assert result.verdict == "warn" and finding in result.summary and result.fix


def test_training_setup_warns_about_a_recurrent_network_without_clipping():
    recipe = load_recipe("sine_lstm", ["trainer.clip_norm=null"])
    result = verdict(context_from_recipe(recipe), "training_setup")
    assert result.verdict == "warn" and "LSTM" in result.summary and "clip" in result.fix
    assert verdict(context_from_recipe(load_recipe("sine_lstm")), "training_setup").verdict == "ok"


def test_label_noise_finds_flipped_labels_and_not_clean_ones(healthy):
    from steepest.data import Split

    clean = verdict(healthy, "label_noise")
    assert clean.verdict == "ok" and clean.evidence["fraction"] < 0.02, clean.summary
    y = healthy.data.train.y.clone()
    g = torch.Generator().manual_seed(0)
    flipped = torch.randperm(len(y), generator=g)[: len(y) // 10]
    y[flipped] = (y[flipped] + 1 + torch.randint(0, 9, (len(flipped),), generator=g)) % 10  # 10% wrong labels
    noisy = dataclasses.replace(healthy.data, train=Split(healthy.data.train.x, y))
    found = verdict(ctx_with(healthy, data=noisy), "label_noise")
    assert found.verdict in ("warn", "fail") and 0.06 < found.evidence["fraction"] < 0.2, found.summary
    suspects = set(found.evidence["first_suspects"])
    assert len(suspects & set(flipped.tolist())) >= 0.8 * len(suspects)  # the listed ones are mostly the flipped ones


def test_identical_training_samples_with_different_labels(healthy):
    from steepest.data import Split

    x, y = healthy.data.train.x.clone(), healthy.data.train.y.clone()
    x[1], y[1] = x[0], (y[0] + 1) % 10
    found = verdict(ctx_with(healthy, data=dataclasses.replace(healthy.data, train=Split(x, y))), "duplicates")
    assert found.verdict == "warn" and found.evidence["train_conflicting_groups"] == 1
