import json

import pytest
import torch

from steepest.align.data import format_prompt
from steepest.align.files import NEGATIVE, POSITIVE, load_lm, save_lm
from steepest.align.pipeline import generate
from steepest.cli import main
from steepest.data.tokens import ByteTokenizer


def held_out_accuracy(run_dir, n=40):
    import random

    lm, _ = load_lm(run_dir)
    rng = random.Random(123)
    right = 0
    for _ in range(n):
        positive = rng.random() < 0.5
        text = " ".join(rng.choice(POSITIVE if positive else NEGATIVE) for _ in range(3))
        answer = generate(lm, ByteTokenizer(), format_prompt({"instruction": "Is the review positive?", "input": text}), 4)
        right += answer == ("yes" if positive else "no")
    return right / n


def test_sft_then_dpo_from_the_command_line(tmp_path, capsys):
    """The demo data, all defaults (dpo's lr 1e-3) but 7 epochs of DPO. Measured over --seed 0-9 (one thread): held-out
    accuracy 0.200 / 0.480 / 0.625 (min / mean / max) after the noisy SFT; after each DPO epoch 1-10 (the lr is
    constant, so a shorter run is the start of a longer one): after 7, 0.975 / 0.995 / 1.000, gains of at least 0.350;
    after 10 (the default, kept before) 0.900 / 0.980 / 1.000, gains of at least 0.275. Single epochs dip now and
    then, on other epochs than the 7th: 0.625 after 5 (seed 4), 0.775 after 8 (seed 9); after 6, min 0.925.
    Before (lr 2e-3, 15 epochs): 0.800 to 1.000 here, 0.6-0.7 on other CPUs; with 12 SFT epochs a seed collapsed
    to 0.000, greedy answers like "nooo" and "yyyy" (DPO over-optimized the tokens after the first)."""
    data = tmp_path / "data"
    assert main(["align", "demo-data", str(data)]) == 0
    assert main(["align", "sft", str(data / "instructions.jsonl"), "--run-dir", str(tmp_path / "sft"), "--epochs", "6"]) == 0
    arch = json.loads((tmp_path / "sft" / "lm.json").read_text())
    assert arch["stage"] == "sft" and arch["steps"] == 6 * 10
    noisy = held_out_accuracy(tmp_path / "sft")
    assert main(["align", "dpo", str(data / "pairs.jsonl"), "--from", str(tmp_path / "sft"), "--run-dir", str(tmp_path / "dpo"),
                 "--epochs", "7"]) == 0
    repaired = held_out_accuracy(tmp_path / "dpo")
    assert repaired >= 0.8 and repaired > noisy + 0.2, (noisy, repaired)
    capsys.readouterr()
    assert main(["align", "generate", str(tmp_path / "dpo"), "Is the review positive?", "--input", "good nice love"]) == 0
    assert capsys.readouterr().out.strip() in ("yes", "no")


def test_reward_stage_writes_its_head(tmp_path, capsys):
    """Measured over --seed 0-7: training pairs ranked right 93.3% / 98.4% / 100% (min / mean / max); bound 85%."""
    data = tmp_path / "data"
    main(["align", "demo-data", str(data)])
    assert main(["align", "reward", str(data / "pairs.jsonl"), "--run-dir", str(tmp_path / "rm"), "--epochs", "8"]) == 0
    assert (tmp_path / "rm" / "reward_head.safetensors").exists()
    share = float(capsys.readouterr().out.split("ranks ")[1].split("%")[0])
    assert share >= 85


def test_bad_inputs_are_one_line_errors(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"instruction": "x", "output": "y"}\n{"instruction": "x"\n')
    assert main(["align", "sft", str(bad), "--run-dir", str(tmp_path / "r")]) == 2
    assert "bad.jsonl:2: not valid JSON" in capsys.readouterr().err
    bad.write_text('{"instruction": "x"}\n')
    assert main(["align", "sft", str(bad), "--run-dir", str(tmp_path / "r")]) == 2
    assert "needs string field(s) output" in capsys.readouterr().err
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text('{"prompt": "p", "chosen": "a", "rejected": "b"}\n')
    assert main(["align", "dpo", str(pairs), "--run-dir", str(tmp_path / "r")]) == 2
    assert "--from" in capsys.readouterr().err
    assert main(["align", "generate", str(tmp_path), "hello"]) == 2
    assert "lm.json" in capsys.readouterr().err
    long = tmp_path / "long.jsonl"
    long.write_text(json.dumps({"instruction": "x" * 300, "output": "y"}) + "\n")
    assert main(["align", "sft", str(long), "--run-dir", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "max_len" in err and "Traceback" not in err


def one_line_error(capsys, *names):
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    assert all(name in err for name in names), err
    return err


@pytest.mark.parametrize("flags, names", [
    (["--batch-size", "0"], ["--batch-size", "at least 1"]),  # was: ZeroDivisionError
    (["--epochs", "0"], ["--epochs", "at least 1"]),  # was: "max_epochs must be ...", a name the command does not have
    (["--d-model", "15", "--heads", "2"], ["--d-model 15 is not divisible by --heads 2"]),  # was: AssertionError
    (["--layers", "0"], ["--layers", "positive whole number"]),  # was: IndexError
    (["--lr", "-1"], ["--lr", "positive"]),
    (["--d-model", "8192", "--layers", "200"], ["billion parameters", "choose smaller sizes"]),
])
def test_bad_flags_are_one_line_errors(tmp_path, capsys, flags, names):
    data = tmp_path / "i.jsonl"
    data.write_text('{"instruction": "x", "output": "y"}\n')
    assert main(["align", "sft", str(data), "--run-dir", str(tmp_path / "r"), *flags]) == 2
    one_line_error(capsys, *names)


@pytest.mark.parametrize("line2, names", [
    ('{"instruction": "x", "output": ' + "[" * 100_000 + "]" * 100_000 + "}", ["nested too deeply"]),  # was: RecursionError
    ('{"instruction": "caf\xe9", "output": "y"}', ["not UTF-8", "byte 0xe9 at column 21"]),  # Latin-1; was: UnicodeDecodeError
])
def test_bad_jsonl_is_a_one_line_error_naming_file_and_line(tmp_path, capsys, line2, names):
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b'{"instruction": "x", "output": "y"}\n' + line2.encode("latin-1") + b"\n")
    assert main(["align", "sft", str(bad), "--run-dir", str(tmp_path / "r")]) == 2
    one_line_error(capsys, "bad.jsonl:2:", *names)


def test_a_line_separator_inside_a_json_string_is_text(tmp_path, capsys):
    data = tmp_path / "i.jsonl"
    data.write_text(json.dumps({"instruction": "a\u2028b", "output": "y"}, ensure_ascii=False) + "\n", encoding="utf-8")
    assert main(["align", "sft", str(data), "--run-dir", str(tmp_path / "r"), "--epochs", "1", "--d-model", "8",
                 "--ff", "8", "--layers", "1"]) == 0


@pytest.mark.parametrize("arch, names", [
    ({"d_model": 4096, "heads": 32, "layers": 64, "ff": 16384, "max_len": 128}, ["51.6 GB", "lm.json"]),  # was: allocating it
    ({"d_model": 64, "heads": 2, "layers": 2, "ff": 128}, ["lm.json", "max_len must be a positive whole number, got None"]),
    ({"d_model": 64, "heads": 3, "layers": 2, "ff": 128, "max_len": 128}, ["d_model 64 is not divisible by heads 3"]),
    ([1, 2], ["lm.json is not a JSON object"]),
])
def test_an_absurd_or_broken_lm_json_is_refused_before_allocating(tmp_path, capsys, arch, names):
    (tmp_path / "lm.json").write_text(json.dumps(arch))
    (tmp_path / "lm.safetensors").write_bytes(b"")
    assert main(["align", "generate", str(tmp_path), "hello"]) == 2
    one_line_error(capsys, *names)


def test_generation_past_the_context_from_the_command_line(tmp_path, capsys):
    """A model that has not learned to stop answers on past its 128 positions (before the fix: IndexError: index
    out of range in self, once prompt + answer passed max_len); --max-len above the model's positions is refused."""
    from steepest.models.transformer import CausalLM

    torch.manual_seed(0)
    arch = {"d_model": 16, "heads": 2, "layers": 1, "ff": 32, "max_len": 128}
    lm = CausalLM(ByteTokenizer.vocab_size, dropout=0.0, **arch)
    with torch.no_grad():  # the output is a constant vector pointing at "a": greedy decoding never says eos
        lm.embed.weight[ord("a")] = 0.0
        lm.embed.weight[ord("a"), 0] = 100.0
        lm.norm.weight.zero_()
        lm.norm.bias.zero_()
        lm.norm.bias[0] = 1.0
    save_lm(lm, arch, tmp_path / "run", "sft", {})
    capsys.readouterr()
    assert main(["align", "generate", str(tmp_path / "run"), "Is the review positive?", "--max-new-tokens", "200"]) == 0
    assert capsys.readouterr().out == "a" * 200 + "\n"
    data = tmp_path / "heldout.jsonl"
    data.write_text('{"instruction": "Is the review positive?", "output": "yes"}\n')
    assert main(["align", "eval", str(data), "--from", str(tmp_path / "run"), "--max-new-tokens", "200"]) == 0
    assert "exact-match accuracy 0.000" in capsys.readouterr().out
    assert main(["align", "sft", str(data), "--from", str(tmp_path / "run"), "--max-len", "256", "--run-dir",
                 str(tmp_path / "r")]) == 2
    one_line_error(capsys, "--max-len 256", "128 positions")


def test_an_alignment_stage_never_overwrites_a_run_silently(tmp_path, capsys):
    data = tmp_path / "data"
    assert main(["align", "demo-data", str(data)]) == 0
    sft = ["align", "sft", str(data / "instructions.jsonl"), "--epochs", "1", "--d-model", "16", "--heads", "2", "--layers", "1", "--ff", "32"]
    assert main([*sft, "--run-dir", str(tmp_path / "sft")]) == 0
    before = (tmp_path / "sft" / "lm.safetensors").read_bytes()
    capsys.readouterr()
    assert main([*sft, "--run-dir", str(tmp_path / "sft")]) == 2
    assert "already holds" in capsys.readouterr().err
    dpo = ["align", "dpo", str(data / "pairs.jsonl"), "--from", str(tmp_path / "sft"), "--epochs", "1"]
    assert main([*dpo, "--run-dir", str(tmp_path / "sft")]) == 2
    err = capsys.readouterr().err
    assert "replace the model it starts from" in err and err.count("\n") == 1
    assert (tmp_path / "sft" / "lm.safetensors").read_bytes() == before
    assert main([*sft, "--run-dir", str(tmp_path / "sft"), "--overwrite"]) == 0
