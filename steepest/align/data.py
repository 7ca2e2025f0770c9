"""Instruction and preference data as tensors for a causal LM.

An instruction sample is {"instruction", "input" (optional), "output"}; the prompt is the
instruction template below and the response is the output. Training on it is next-token
prediction on the response only: prompt positions get the label -100 (ignored), so the model is
not taught to write prompts (the usual instruction-tuning loss; FLAN, InstructGPT's SFT stage).

A preference pair is (prompt, chosen response, rejected response); both sequences share the prompt,
and `spans` records where each response starts and where the sequence ends, so the log-probability
of a response can be summed over its own tokens.

    >>> from steepest.data.tokens import ByteTokenizer
    >>> print(format_prompt({"instruction": "Add the numbers.", "input": "2 3", "output": "5"}), end="")
    ### Instruction:
    Add the numbers.
    ### Input:
    2 3
    ### Response:
    >>> ids, labels = sft_tensors([{"instruction": "Say hi.", "output": "hi"}], ByteTokenizer(), max_len=64)
    >>> ByteTokenizer().decode(labels[0][labels[0] >= 0])       # what the loss trains on
    'hi'
"""

from __future__ import annotations

import torch

from steepest.data.tokens import ByteTokenizer

IGNORE = -100


def user_message(sample: dict) -> str:
    """The instruction and its input as one message (for a model's own chat template)."""
    return f"{sample['instruction']}\n\n{sample['input']}" if sample.get("input") else sample["instruction"]


def prompt_text(sample: dict, tokenizer) -> str:
    """The prompt for `sample`: the tokenizer's chat template when it has one, else the template below."""
    chat = getattr(tokenizer, "chat_prompt", None)
    return chat(sample) if chat is not None else format_prompt(sample)


def format_prompt(sample: dict) -> str:
    """The instruction template (Alpaca style); an empty or missing input leaves its block out."""
    text = f"### Instruction:\n{sample['instruction']}\n"
    if sample.get("input"):
        text += f"### Input:\n{sample['input']}\n"
    return text + "### Response:\n"


def encode(tokenizer: ByteTokenizer, prompt: str, response: str, max_len: int) -> tuple[list[int], int]:
    """[bos] prompt response [eos] and the prompt's length in tokens (bos included)."""
    head = tokenizer.encode(prompt, bos=True, eos=False)
    ids = head + tokenizer.encode(response, bos=False, eos=True)
    if len(ids) > max_len:
        raise ValueError(f"a sample needs {len(ids)} tokens, more than max_len={max_len}; raise max_len or shorten it "
                         f"(prompt starts {prompt[:40]!r})")
    return ids, len(head)


def sft_tensors(samples: list[dict], tokenizer: ByteTokenizer, max_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """ids (N, T) right-padded, labels (N, T): the ids on response tokens (and eos), -100 elsewhere."""
    for i, s in enumerate(samples):
        missing = [k for k in ("instruction", "output") if k not in s]
        if missing:
            raise ValueError(f"instruction sample {i} has no {', '.join(missing)} (keys: instruction, input, output)")
    encoded = [encode(tokenizer, prompt_text(s, tokenizer), s["output"], max_len) for s in samples]
    width = max(len(ids) for ids, _ in encoded)
    ids = torch.full((len(samples), width), tokenizer.pad_id, dtype=torch.long)
    labels = torch.full((len(samples), width), IGNORE, dtype=torch.long)
    for row, (seq, prompt_len) in enumerate(encoded):
        ids[row, : len(seq)] = torch.tensor(seq)
        labels[row, prompt_len : len(seq)] = torch.tensor(seq[prompt_len:])
    return ids, labels


def pair_tensors(pairs: list[tuple[str, str, str]], tokenizer: ByteTokenizer, max_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """ids (N, 2, T) for (prompt + chosen, prompt + rejected), spans (N, 2, 2) = (response start, length)."""
    encoded = [[encode(tokenizer, prompt, answer, max_len) for answer in (chosen, rejected)] for prompt, chosen, rejected in pairs]
    width = max(len(ids) for pair in encoded for ids, _ in pair)
    ids = torch.full((len(pairs), 2, width), tokenizer.pad_id, dtype=torch.long)
    spans = torch.zeros((len(pairs), 2, 2), dtype=torch.long)
    for row, pair in enumerate(encoded):
        for col, (seq, prompt_len) in enumerate(pair):
            ids[row, col, : len(seq)] = torch.tensor(seq)
            spans[row, col] = torch.tensor([prompt_len, len(seq)])
    return ids, spans
