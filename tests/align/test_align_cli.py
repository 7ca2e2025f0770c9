import json

from steepest.align.data import format_prompt
from steepest.align.files import NEGATIVE, POSITIVE, load_lm
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
    data = tmp_path / "data"
    assert main(["align", "demo-data", str(data)]) == 0
    assert main(["align", "sft", str(data / "instructions.jsonl"), "--run-dir", str(tmp_path / "sft"), "--epochs", "6"]) == 0
    arch = json.loads((tmp_path / "sft" / "lm.json").read_text())
    assert arch["stage"] == "sft" and arch["steps"] == 6 * 10
    noisy = held_out_accuracy(tmp_path / "sft")
    assert main(["align", "dpo", str(data / "pairs.jsonl"), "--from", str(tmp_path / "sft"), "--run-dir", str(tmp_path / "dpo"),
                 "--epochs", "15"]) == 0
    repaired = held_out_accuracy(tmp_path / "dpo")
    assert repaired >= 0.8 and repaired > noisy + 0.2, (noisy, repaired)
    capsys.readouterr()
    assert main(["align", "generate", str(tmp_path / "dpo"), "Is the review positive?", "--input", "good nice love"]) == 0
    assert capsys.readouterr().out.strip() in ("yes", "no")


def test_reward_stage_writes_its_head(tmp_path, capsys):
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
