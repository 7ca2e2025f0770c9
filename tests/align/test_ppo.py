"""PPO, RLHF's third stage: each piece of the objective against its formula written out here (reward normalization
included), PPO raising a reward model's score on the byte-level sentiment demo within a KL bound (with and without
reward normalization), the value head saved and loaded, and `steepest align ppo` (continuing a PPO run included)."""

import copy
import csv
import dataclasses
import json
import math
import random
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file, save_file

from steepest.align.data import format_prompt
from steepest.align.files import (
    load_lm,
    load_reward_model,
    read_jsonl,
    read_pairs,
    review,
    save_lm,
    write_demo_data,
)
from steepest.align.objectives import RewardModel, token_logprobs
from steepest.align.pipeline import fit_reward_model, fit_sft
from steepest.align.ppo import (
    LOG_COLUMNS,
    PolicyWithValue,
    PPOConfig,
    PPOState,
    RewardNormalizer,
    evaluate_policy,
    fit_ppo,
    initial_scores,
    load_value_head,
    make_rollout,
    save_value_head,
)
from steepest.align.rl_objectives import (
    adaptive_kl_beta,
    clipped_surrogate,
    clipped_value_loss,
    gae,
    kl_penalty_rewards,
    merge_moments,
    sequence_kl,
    whiten,
)
from steepest.cli import main
from steepest.data.tokens import ByteTokenizer
from steepest.errors import CheckpointError
from steepest.models.transformer import CausalLM

TOK = ByteTokenizer()


def random_batch(seed, n=6, length=11):
    """float64 tensors (n, length) and a mask with one contiguous span per row (the response), spans of 1 to length."""
    gen = torch.Generator().manual_seed(seed)
    rand = lambda scale=1.0: torch.randn(n, length, generator=gen, dtype=torch.float64) * scale  # noqa: E731
    spans = []
    for _ in range(n):
        start = int(torch.randint(0, length, (1,), generator=gen))
        spans.append((start, int(torch.randint(start + 1, length + 1, (1,), generator=gen))))
    mask = torch.zeros(n, length, dtype=torch.float64)
    for row, (start, end) in enumerate(spans):
        mask[row, start:end] = 1.0
    return rand, spans, mask


@pytest.mark.parametrize("seed, gamma, lam", [(0, 1.0, 0.95), (1, 0.9, 0.8), (2, 0.99, 1.0), (3, 0.7, 0.0)])
def test_gae_is_the_backward_recursion_and_the_discounted_sum_of_td_errors(seed, gamma, lam):
    rand, spans, mask = random_batch(seed)
    rewards, values = rand() * mask, rand() * mask
    advantages, returns = gae(rewards, values, mask, gamma, lam)
    for row, (start, end) in enumerate(spans):
        r, v = rewards[row].tolist(), values[row].tolist()
        value_after = [*v[1:end], 0.0]  # V(s_{t+1}); 0 after the response's last token: the episode ends there
        delta = [r[t] + gamma * value_after[t] - v[t] for t in range(end)]
        recursion, running = [0.0] * len(r), 0.0
        for t in range(end - 1, start - 1, -1):  # A_t = delta_t + gamma lambda A_{t+1}
            running = delta[t] + gamma * lam * running
            recursion[t] = running
        summed = [sum((gamma * lam) ** k * delta[t + k] for k in range(end - t)) if start <= t < end else 0.0
                  for t in range(len(r))]  # A_t = sum_k (gamma lambda)^k delta_{t+k}
        assert advantages[row].tolist() == pytest.approx(recursion, abs=1e-12)
        assert advantages[row].tolist() == pytest.approx(summed, abs=1e-12)
        assert returns[row].tolist() == pytest.approx([(recursion[t] + v[t]) * (start <= t < end) for t in range(len(r))], abs=1e-12)
        if lam == 1.0 and gamma == 1.0:  # Monte Carlo: the rewards still to come, less the value
            assert advantages[row, start].item() == pytest.approx(sum(r[start:end]) - v[start], abs=1e-12)


def test_the_reward_is_the_score_at_the_last_token_less_the_kl_penalty_at_every_token():
    rand, spans, mask = random_batch(4)
    logprobs, ref_logprobs = -rand().abs(), -rand().abs()
    scores = torch.randn(len(spans), dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    rewards = kl_penalty_rewards(logprobs, ref_logprobs, scores, mask, beta=0.3)
    for row, (start, end) in enumerate(spans):
        expected = [(-0.3 * (logprobs[row, t] - ref_logprobs[row, t]).item() + (scores[row].item() if t == end - 1 else 0.0))
                    if start <= t < end else 0.0 for t in range(mask.shape[1])]
        assert rewards[row].tolist() == pytest.approx(expected, abs=1e-12)
        kl = sum(logprobs[row, t].item() - ref_logprobs[row, t].item() for t in range(start, end))
        assert sequence_kl(logprobs, ref_logprobs, mask)[row].item() == pytest.approx(kl, abs=1e-12)


@pytest.mark.parametrize("seed, clip", [(6, 0.2), (7, 0.1), (8, 0.3)])
def test_clipped_surrogate_element_by_element(seed, clip):
    rand, _, mask = random_batch(seed)
    old, advantages = -rand().abs(), rand()
    logprobs = (old + rand(0.4)).requires_grad_(True)  # ratios from about 0.3 to 3: many tokens clipped
    loss, clip_fraction = clipped_surrogate(logprobs, old, advantages, mask, clip)
    loss.backward()
    terms, clipped, grads = [], 0, torch.zeros_like(old)
    n = int(mask.sum())
    for i, j in mask.nonzero().tolist():
        ratio = math.exp(logprobs[i, j].item() - old[i, j].item())
        a = advantages[i, j].item()
        unclipped, clipped_term = ratio * a, min(max(ratio, 1 - clip), 1 + clip) * a
        terms.append(min(unclipped, clipped_term))
        clipped += clipped_term < unclipped
        grads[i, j] = -ratio * a / n if unclipped <= clipped_term else 0.0  # the clipped branch passes no gradient
    assert loss.item() == pytest.approx(-sum(terms) / n, abs=1e-12)
    assert clip_fraction.item() == pytest.approx(clipped / n, abs=1e-12) and 0 < clipped < n
    assert torch.allclose(logprobs.grad, grads, rtol=0, atol=1e-12)


@pytest.mark.parametrize("seed, clip", [(9, 0.2), (10, 0.5)])
def test_clipped_value_loss_element_by_element(seed, clip):
    rand, _, mask = random_batch(seed)
    old_values, returns = rand(), rand()
    values = old_values + rand(0.4)
    loss, clip_fraction = clipped_value_loss(values, old_values, returns, mask, clip)
    errors, larger = [], 0
    for i, j in mask.nonzero().tolist():
        v, v_old, r = values[i, j].item(), old_values[i, j].item(), returns[i, j].item()
        v_clipped = v_old + min(max(v - v_old, -clip), clip)
        errors.append(max((v - r) ** 2, (v_clipped - r) ** 2))
        larger += (v_clipped - r) ** 2 > (v - r) ** 2
    assert loss.item() == pytest.approx(0.5 * sum(errors) / len(errors), abs=1e-12)
    assert clip_fraction.item() == pytest.approx(larger / len(errors), abs=1e-12)


def test_whitening_and_the_adaptive_kl_controller():
    rand, _, mask = random_batch(11)
    x = rand(3.0) + 2.0
    white = whiten(x, mask)
    picked = x[mask.bool()]
    mean, var = picked.mean(), ((picked - picked.mean()) ** 2).mean()
    assert torch.allclose(white[mask.bool()], (picked - mean) / torch.sqrt(var + 1e-8), atol=1e-12)
    assert (white[~mask.bool()] == 0).all()
    # beta <- beta (1 + clip(KL / target - 1, -0.2, 0.2) n / horizon)
    assert adaptive_kl_beta(0.1, kl=1.1, target=1.0, n_steps=100, horizon=1000) == pytest.approx(0.1 * (1 + 0.1 * 0.1))
    assert adaptive_kl_beta(0.1, kl=50.0, target=1.0, n_steps=100, horizon=1000) == pytest.approx(0.1 * (1 + 0.2 * 0.1))
    assert adaptive_kl_beta(0.1, kl=0.0, target=1.0, n_steps=100, horizon=1000) == pytest.approx(0.1 * (1 - 0.2 * 0.1))


def test_policy_with_value_gives_the_lms_log_probs_and_a_zero_value_at_first():
    torch.manual_seed(0)
    lm = CausalLM(TOK.vocab_size, d_model=16, heads=2, layers=1, ff=32, dropout=0.0, max_len=32).eval()
    ids = torch.randint(0, 256, (3, 12))
    logprobs, values = PolicyWithValue(lm, 16)(ids)
    assert torch.allclose(logprobs, token_logprobs(lm(ids), ids), atol=1e-6)
    assert values.shape == (3, 11) and (values == 0).all()


def moments(values):
    """Mean and population variance (divided by n), written out in float64."""
    mean = sum(values) / len(values)
    return mean, sum((v - mean) ** 2 for v in values) / len(values)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_merge_moments_gives_the_moments_of_all_the_values_together(seed):
    """Chan et al.'s parallel update, batch after batch (one of one value: Welford's step; one empty), against the
    mean and variance of everything seen so far written out."""
    gen = torch.Generator().manual_seed(seed)
    chunks = [torch.randn(int(torch.randint(2, 9, (1,), generator=gen)), generator=gen, dtype=torch.float64) * 3 + 5
              for _ in range(5)]
    chunks[2:2] = [torch.zeros(0, dtype=torch.float64), torch.tensor([7.5], dtype=torch.float64)]
    count, mean, var, seen = 0, 0.0, 0.0, []
    for chunk in chunks:
        count, mean, var = merge_moments(count, mean, var, chunk)
        seen += chunk.tolist()
        expected_mean, expected_var = moments(seen)
        assert count == len(seen)
        assert mean == pytest.approx(expected_mean, abs=1e-12) and var == pytest.approx(expected_var, rel=1e-12)


EPS = 1e-8  # RewardNormalizer.eps


def test_reward_normalization_against_its_formulas():
    """none: s' = s. initial: s' = (s - m0) / sqrt(v0 + 1e-8) with m0, v0 the mean and population variance of the
    scores it was fitted on (the initial policy's), fixed from then on. running: the same with the mean and variance
    of every score so far, this batch's included. Scores from N(-2, 4^2) in batches of 8, 3, 16, 1, 5."""
    gen = torch.Generator().manual_seed(12)
    batches = [torch.randn(n, generator=gen, dtype=torch.float64) * 4 - 2 for n in (8, 3, 16, 1, 5)]
    assert torch.equal(RewardNormalizer("none")(batches[0]), batches[0])
    initial, running, seen = RewardNormalizer("initial"), RewardNormalizer("running"), []
    with pytest.raises(ValueError, match="no moments yet"):
        initial(batches[0])
    fitted_on = torch.randn(256, generator=gen, dtype=torch.float64) * 2 + 1
    initial.fit(fitted_on)
    m0, v0 = moments(fitted_on.tolist())
    for batch in batches:
        seen += batch.tolist()
        m, v = moments(seen)
        for s, a, b in zip(batch.tolist(), initial(batch).tolist(), running(batch).tolist()):
            assert a == pytest.approx((s - m0) / math.sqrt(v0 + EPS), abs=1e-10)
            assert b == pytest.approx((s - m) / math.sqrt(v + EPS), abs=1e-10)
    assert (initial.count, running.count) == (256, len(seen))
    white = initial(fitted_on)  # the initial policy's own scores: mean 0, standard deviation 1
    assert float(white.mean()) == pytest.approx(0.0, abs=1e-12) and float(white.std(correction=0)) == pytest.approx(1.0, abs=1e-7)

    again = RewardNormalizer.from_state_dict(json.loads(json.dumps(running.state_dict())))
    assert again.state_dict() == running.state_dict() == {"mode": "running", "count": 33, "mean": running.mean, "var": running.var}
    for bad in ({"mode": "batch", "count": 1, "mean": 0.0, "var": 1.0}, {"mode": "initial", "count": -1, "mean": 0.0, "var": 1.0},
                {"mode": "initial", "count": 3, "mean": float("nan"), "var": 1.0}, {"mode": "initial", "count": 3, "mean": 0.0},
                {"mode": "running", "count": 3, "mean": 0.0, "var": -1.0}, [1, 2]):
        with pytest.raises(CheckpointError, match="reward_norm must be"):
            RewardNormalizer.from_state_dict(bad, "lm.json")


def tiny_lm_and_scorer(seed=0):
    torch.manual_seed(seed)
    lm = CausalLM(TOK.vocab_size, d_model=16, heads=2, layers=1, ff=32, dropout=0.0, max_len=96)
    scorer = RewardModel(CausalLM(TOK.vocab_size, d_model=16, heads=2, layers=1, ff=32, dropout=0.0, max_len=96), 16, TOK.pad_id)
    with torch.no_grad():
        scorer.score.weight.normal_()  # scores of a few units, different for each completion
    return lm, scorer


def test_the_rewards_take_the_normalized_scores_and_initial_moments_come_from_the_initial_policy():
    """With beta 0, gamma = lambda = 1, V = 0 (a new value head) and no whitening, each return of a completion is its
    score as normalized: s (none), (s - m0) / sqrt(v0 + 1e-8) (initial: m0, v0 those of the 24 = reward_norm_samples
    scores of the initial policy's completions, drawn before the first step), (s - m) / sqrt(v + 1e-8) (running: m, v
    over the initial policy's 24 scores and this batch's 8)."""
    rng = random.Random(3)
    prompts = [format_prompt({"instruction": "Is the review positive?", "input": review(rng)}) for _ in range(10)]
    encoded = [TOK.encode(p, bos=True, eos=False) for p in prompts]
    config = PPOConfig(lr=1e-3, beta=0.0, gamma=1.0, lam=1.0, whiten_advantages=False, max_new_tokens=4, minibatch_size=4,
                       reward_norm="initial", reward_norm_samples=24)
    lm, scorer = tiny_lm_and_scorer()
    first = initial_scores(lm, scorer, encoded, TOK, config, batch_size=8, seed=0)
    assert first.shape == (24,) and float(first.std()) > 0.1
    state = PPOState.new(lm, 16, config)
    fit_ppo(lm, scorer, prompts, TOK, hidden=16, config=config, steps=1, batch_size=8, state=state)
    m0, v0 = moments(first.double().tolist())
    assert state.normalizer.count == 24
    assert state.normalizer.mean == pytest.approx(m0, abs=1e-9) and state.normalizer.var == pytest.approx(v0, rel=1e-9)

    running = RewardNormalizer("running")
    running.fit(first)
    for normalizer in (None, state.normalizer, running):
        policy = PolicyWithValue(lm, 16)
        rollout = make_rollout(policy, copy.deepcopy(lm), scorer, encoded[:8], TOK, config, 0.0,
                               torch.Generator().manual_seed(1), normalizer)
        scores = rollout.scores.double().tolist()
        if normalizer is None:
            expected = scores
        elif normalizer.mode == "initial":
            expected = [(s - m0) / math.sqrt(v0 + EPS) for s in scores]
        else:
            m, v = moments(first.double().tolist() + scores)
            expected = [(s - m) / math.sqrt(v + EPS) for s in scores]
        for row, e in enumerate(expected):
            picked = rollout.returns[row][rollout.mask[row].bool()]
            assert picked.numel() > 0 and picked.tolist() == pytest.approx([e] * picked.numel(), abs=1e-5), (normalizer, row)


def test_the_value_head_saves_and_loads_to_the_same_values(tmp_path):
    """save_value_head -> load_value_head: the values V(s_t) (3, 11) of the same ids are equal to the bit; the file is
    safetensors (weight (1, 16), bias (1,)). A missing, corrupt, truncated, mis-sized or non-finite file is one
    CheckpointError line."""
    torch.manual_seed(0)
    lm = CausalLM(TOK.vocab_size, d_model=16, heads=2, layers=1, ff=32, dropout=0.0, max_len=32).eval()
    trained = PolicyWithValue(lm, 16)
    with torch.no_grad():
        trained.value_head.weight.normal_()
        trained.value_head.bias.fill_(0.3)
    save_value_head(trained.value_head, tmp_path / "value_head.safetensors")
    ids = torch.randint(0, 256, (3, 12))
    with torch.no_grad():
        values = trained(ids)[1]
        loaded = PolicyWithValue(lm, 16, load_value_head(tmp_path, lm, 16))(ids)[1]
    assert values.shape == (3, 11) and values.abs().min() > 0 and torch.equal(values, loaded)
    raw = (tmp_path / "value_head.safetensors").read_bytes()
    assert {k: tuple(v.shape) for k, v in load_file(str(tmp_path / "value_head.safetensors")).items()} == {"weight": (1, 16), "bias": (1,)}

    (tmp_path / "empty").mkdir()
    (tmp_path / "garbage.safetensors").write_bytes(b"not a safetensors file at all")
    (tmp_path / "truncated.safetensors").write_bytes(raw[:-7])
    save_file({"weight": torch.full((1, 16), float("nan")), "bias": torch.zeros(1)}, str(tmp_path / "nan.safetensors"))
    save_file({"weight": torch.zeros(1, 16), "bias": torch.zeros(1), "extra": torch.zeros(2)}, str(tmp_path / "extra.safetensors"))
    for path, hidden, message in ((tmp_path / "missing", 16, "does not exist"), (tmp_path / "empty", 16, "has no value_head.safetensors"),
                                  (tmp_path / "garbage.safetensors", 16, "does not load"),
                                  (tmp_path / "truncated.safetensors", 16, "does not load"),
                                  (tmp_path / "value_head.safetensors", 32, "not a value head for hidden size 32"),
                                  (tmp_path / "extra.safetensors", 16, "not a value head for hidden size 16"),
                                  (tmp_path / "nan.safetensors", 16, "non-finite")):
        with pytest.raises(CheckpointError, match=message) as error:
            load_value_head(path, lm, hidden)
        assert "\n" not in str(error.value), str(error.value)


# The demo: SFT on the demo's instructions (half the answers wrong), a reward model on its (correct) pairs, PPO on
# its prompts. The SFT model trains 6 epochs: after 3 some seeds answer the same for nearly every review (share of
# the likelier answer 0.89 on average, seed 0), which leaves PPO no other answer to sample; after 6 it is 0.56-0.69.
D_MODEL = 48
PPO = PPOConfig(lr=3e-4, beta=1.0, minibatch_size=16, max_new_tokens=8)
PPO_STEPS = 20
RISE, KL_BOUND = 0.3, 2.0


def small_lm(seed):
    torch.manual_seed(seed)
    return CausalLM(TOK.vocab_size, d_model=D_MODEL, heads=2, layers=1, ff=2 * D_MODEL, dropout=0.0, max_len=96)


def train_demo(folder, seed=0):
    """The demo data, then an SFT run and a reward-model run saved as `steepest align` writes them."""
    write_demo_data(folder / "data")
    instructions = read_jsonl(folder / "data" / "instructions.jsonl", ("instruction", "output"))
    lm = small_lm(seed)
    fit_sft(lm, instructions, max_len=96, lr=3e-3, max_epochs=6, batch_size=32, seed=seed)
    reward = fit_reward_model(small_lm(seed + 100), D_MODEL, read_pairs(folder / "data" / "pairs.jsonl", TOK), max_len=96,
                              lr=3e-3, max_epochs=6, batch_size=16, seed=seed)
    arch = {"d_model": D_MODEL, "heads": 2, "layers": 1, "ff": 2 * D_MODEL, "max_len": 96}
    save_lm(lm, arch, folder / "sft", "sft", {})
    save_lm(reward.backbone, arch, folder / "rm", "reward", {})
    save_file(reward.score.state_dict(), str(folder / "rm" / "reward_head.safetensors"))
    prompts = [format_prompt(row) for row in read_jsonl(folder / "data" / "prompts.jsonl", ())]
    return SimpleNamespace(data=folder / "data", sft=folder / "sft", rm=folder / "rm", prompts=prompts)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return train_demo(tmp_path_factory.mktemp("ppo"))


def held_out_prompts(n=100, seed=1234):
    rng = random.Random(seed)
    return [format_prompt({"instruction": "Is the review positive?", "input": review(rng)}) for _ in range(n)]


def ppo_outcome(runs, seed=0, config=PPO, before=None):
    """Mean reward-model score and KL to the SFT model on 100 held-out reviews (4 samples each), before and after PPO.
    `before`: the SFT model's figures for this seed when already computed (they do not depend on the PPO config, and
    fit_ppo seeds torch itself, so skipping their evaluation leaves the PPO run as it was)."""
    lm, _ = load_lm(runs.sft)
    reward, _ = load_reward_model(runs.rm)
    reference = copy.deepcopy(lm)
    held_out = held_out_prompts()
    if before is None:
        before = evaluate_policy(lm, reward, reference, held_out, TOK, samples=4, max_new_tokens=8, seed=seed)
    log = fit_ppo(lm, reward, runs.prompts, TOK, hidden=D_MODEL, reference=reference, config=config, steps=PPO_STEPS,
                  batch_size=32, seed=seed)
    after = evaluate_policy(lm, reward, reference, held_out, TOK, samples=4, max_new_tokens=8, seed=seed)
    return before, after, log


@pytest.fixture(scope="module")
def sft_outcome(demo):
    """The SFT model's held-out reward and KL (seed 0): the `before` of both PPO tests, evaluated once."""
    lm, _ = load_lm(demo.sft)
    reward, _ = load_reward_model(demo.rm)
    return evaluate_policy(lm, reward, copy.deepcopy(lm), held_out_prompts(), TOK, samples=4, max_new_tokens=8, seed=0)


def test_ppo_raises_the_reward_models_score_within_a_kl_bound(demo, sft_outcome):
    """20 PPO steps of 32 prompts (beta 1, lr 3e-4, 2 PPO epochs). Measured over seeds 0-19, the whole pipeline seeded
    (SFT, reward model, PPO), one thread: held-out reward rise 0.82 / 1.77 / 3.28 and KL to the SFT model 0.11 / 0.40 /
    0.88 nats (min / mean / max), against the bounds 0.3 and 2.0. The reward model scores right answers about +2 to +6
    and wrong ones as far below. With 4 PPO epochs one seed of the 20 degenerated at step 20 ("yees", "yeees": KL 3.1)."""
    before, after, log = ppo_outcome(demo, before=sft_outcome)
    assert before["kl"] == pytest.approx(0.0, abs=1e-6)  # the policy is the reference at the start
    assert after["reward"] >= before["reward"] + RISE, (before, after)
    assert 0.0 < after["kl"] <= KL_BOUND, (before, after)
    assert [row["step"] for row in log] == list(range(1, PPO_STEPS + 1)) and log[-1]["beta"] == PPO.beta


NORMALIZED_BETA = 0.3  # per standard deviation of the initial policy's scores (3.2 to 4.6 on the demo, seeds 0-9):
# about the strength of the default beta 1 on the raw scores


def test_ppo_raises_the_reward_models_score_with_reward_normalization(demo, sft_outcome, mode="running"):
    """The demo test with the scores normalized (beta 0.3 per standard deviation). Measured over seeds 0-9 (SFT, reward
    model and PPO seeded, one thread), held-out rise of the raw score min / mean / max: initial 1.03 / 1.88 / 3.47 at
    KL 0.14 / 0.37 / 0.73 nats; running 0.81 / 1.87 / 3.38 at KL 0.07 / 0.36 / 0.63; without normalization (beta 1)
    0.90 / 1.88 / 3.28 at KL 0.10 / 0.39 / 0.71: normalization rescales beta and changes nothing else here. Bounds as
    above, 0.3 and 2.0; at beta 1 per standard deviation the rise fell to 0.23 (initial) and 0.29 (running) on seed 2.
    Run for `running` only (the suite's time; `initial` differs only in where the moments come from, which the
    formula tests check)."""
    config = dataclasses.replace(PPO, beta=NORMALIZED_BETA, reward_norm=mode)
    before, after, log = ppo_outcome(demo, config=config, before=sft_outcome)
    assert after["reward"] >= before["reward"] + RISE, (before, after)
    assert 0.0 < after["kl"] <= KL_BOUND, (before, after)
    assert len(log) == PPO_STEPS


def one_line_error(capsys, *names):
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    assert all(name in err for name in names), err


def test_ppo_from_the_command_line(demo, tmp_path, capsys):
    run = tmp_path / "ppo"
    args = ["align", "ppo", str(demo.data / "prompts.jsonl"), "--from", str(demo.sft), "--reward", str(demo.rm), "--run-dir",
            str(run), "--steps", "2", "--batch-size", "8", "--max-new-tokens", "8", "--target-kl", "0.5", "--kl-horizon", "80"]
    assert main(args) == 0
    assert "mean reward of the rollouts" in capsys.readouterr().out
    with open(run / "ppo_log.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == [1, 2] and tuple(rows[0]) == LOG_COLUMNS
    kl = float(rows[0]["kl"])  # beta moved by the adaptive controller after step 1: beta (1 + clip(kl / 0.5 - 1) 8 / 80)
    assert float(rows[1]["beta"]) == pytest.approx(1.0 * (1 + min(max(kl / 0.5 - 1, -0.2), 0.2) * 8 / 80), rel=1e-5)
    saved = json.loads((run / "lm.json").read_text())
    assert saved["stage"] == "ppo" and saved["steps"] == 2 and saved["reference"] == {"run": str(demo.sft.resolve())}
    assert saved["reward_norm"]["mode"] == "none" and (run / "value_head.safetensors").is_file()
    assert main(["align", "generate", str(run), "Is the review positive?", "--input", "good nice love", "--max-new-tokens", "4"]) == 0
    capsys.readouterr()

    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"text": "no prompt here"}\n')
    base = ["align", "ppo", str(demo.data / "prompts.jsonl"), "--from", str(demo.sft), "--run-dir", str(tmp_path / "bad")]
    for extra, names in (([], ["needs --reward"]),
                         (["--reward", str(demo.sft)], ["reward_head.safetensors"]),
                         (["--reward", str(demo.rm), "--ppo-epochs", "0"], ["--ppo-epochs must be at least 1"]),
                         (["--reward", str(demo.rm), "--lam", "1.5"], ["--lam must be between 0 and 1"])):
        assert main([*base, *extra]) == 2
        one_line_error(capsys, *names)
    assert main(["align", "ppo", str(prompts), "--from", str(demo.sft), "--reward", str(demo.rm), "--run-dir", str(tmp_path / "bad")]) == 2
    one_line_error(capsys, "prompts.jsonl", "needs a 'prompt' or an 'instruction'")
    assert main(["align", "ppo", str(demo.data / "prompts.jsonl"), "--from", str(demo.sft), "--reward", str(demo.rm),
                 "--run-dir", str(demo.rm), "--overwrite"]) == 2
    one_line_error(capsys, "the policy would replace the reward model")


def test_a_ppo_run_continues_from_its_output(demo, tmp_path, capsys, monkeypatch):
    """A PPO run (2 steps, adaptive beta, initial reward normalization over 16 completions) then `--from` its folder
    for 1 step: the second run starts from the first's saved value head (equal to the bit), its beta after the
    controller's last update, its normalization's moments (initial: fixed, not refitted) and the same frozen reference
    (the SFT model, not the first run's policy). A missing or corrupt value head, a reference run that is gone, a
    corrupt reward_norm: one line each, exit 2."""
    from steepest.align import ppo

    first, second = tmp_path / "first", tmp_path / "second"
    common = ["--reward", str(demo.rm), "--batch-size", "8", "--max-new-tokens", "8", "--target-kl", "0.5", "--kl-horizon", "80"]
    assert main(["align", "ppo", str(demo.data / "prompts.jsonl"), "--from", str(demo.sft), "--run-dir", str(first), "--steps", "2",
                 "--reward-norm", "initial", "--reward-norm-samples", "16", *common]) == 0
    assert "reward normalization 'initial': mean" in capsys.readouterr().out
    saved = json.loads((first / "lm.json").read_text())
    assert saved["reward_norm"]["mode"] == "initial" and saved["reward_norm"]["count"] == 16 and saved["reward_norm"]["var"] > 0
    with open(first / "ppo_log.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    kl, beta = float(rows[1]["kl"]), float(rows[1]["beta"])  # the controller's update after step 2 is the saved beta
    assert saved["beta"] == pytest.approx(beta * (1 + min(max(kl / 0.5 - 1, -0.2), 0.2) * 8 / 80), rel=1e-5)

    seen = {}
    real_fit = ppo.fit_ppo

    def spy(lm, reward_model, prompts, tokenizer, *, reference, state, **kwargs):
        seen.update(head={k: v.clone() for k, v in state.value_head.state_dict().items()}, norm=state.normalizer.state_dict(),
                    beta=state.beta, reference={k: v.clone() for k, v in reference.state_dict().items()})
        return real_fit(lm, reward_model, prompts, tokenizer, reference=reference, state=state, **kwargs)

    monkeypatch.setattr(ppo, "fit_ppo", spy)
    assert main(["align", "ppo", str(demo.data / "prompts.jsonl"), "--from", str(first), "--run-dir", str(second), "--steps", "1",
                 *common]) == 0
    out = capsys.readouterr().out
    assert "value head from" in out and f"reference: {demo.sft.resolve()}" in out and "continues from" in out
    saved_head = load_file(str(first / "value_head.safetensors"))
    assert saved_head["weight"].abs().sum() > 0 and all(torch.equal(seen["head"][k], saved_head[k]) for k in ("weight", "bias"))
    assert seen["norm"] == saved["reward_norm"] and seen["beta"] == saved["beta"]
    sft, policy = load_lm(demo.sft)[0].state_dict(), load_lm(first)[0].state_dict()
    assert all(torch.equal(seen["reference"][k], sft[k]) for k in sft)
    assert not all(torch.equal(seen["reference"][k], policy[k]) for k in policy)
    again = json.loads((second / "lm.json").read_text())
    assert again["reward_norm"] == saved["reward_norm"] and again["reference"] == saved["reference"] and again["total_steps"] == 3

    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("lm.json", "lm.safetensors"):
        (broken / name).write_bytes((first / name).read_bytes())
    base = ["align", "ppo", str(demo.data / "prompts.jsonl"), "--from", str(broken), "--run-dir", str(tmp_path / "bad"), *common]
    assert main(base) == 2
    one_line_error(capsys, "has no value_head.safetensors", "--value-head new")
    (broken / "value_head.safetensors").write_bytes(b"\x00" * 40)
    assert main(base) == 2
    one_line_error(capsys, "value_head.safetensors does not load")
    assert main([*base, "--value-head", str(tmp_path / "nowhere.safetensors")]) == 2
    one_line_error(capsys, "nowhere.safetensors does not exist")
    (broken / "value_head.safetensors").write_bytes((first / "value_head.safetensors").read_bytes())
    for edit, names in (({"reference": {"run": str(tmp_path / "gone")}}, ["gone", "does not exist", "--reference"]),
                        ({"reward_norm": {"mode": "initial", "count": 16, "mean": 0.0, "var": -1.0}}, ["reward_norm must be"])):
        (broken / "lm.json").write_text(json.dumps({**saved, **edit}))
        assert main(base) == 2
        one_line_error(capsys, *names)
