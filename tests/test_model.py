import pytest
import torch

from reasonact.decoding import diffusion_step, generate
from reasonact.decoding.schedule import committed_target
from reasonact.model.arm import ActionReasoningModel
from reasonact.model.config import Config, SequenceConfig, model_config
from reasonact.model.layers import KVCache
from reasonact.model.layout import CLEAN, MARKER, NOISY, PREFIX, Span, allowed, prefix_span, training_span
from reasonact.tokenizers import Vocab

VOCAB = Vocab(text=300)


def make_model(decoder: str, mode: str = "depth+trace", seed: int = 0, **options) -> ActionReasoningModel:
    torch.manual_seed(seed)
    seq = SequenceConfig(reasoning=mode, decoder=decoder, depth_tokens=4, trace_points=2, horizon=2)
    cfg = Config(model_config("debug", **options), seq)
    return ActionReasoningModel(cfg, VOCAB).eval()


def fake_obs(model, B=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    s = model.cfg.model.image_size
    img = torch.rand(B, 3, s, s, generator=g)
    instr = torch.randint(VOCAB.offset("text"), VOCAB.offset("text") + 300, (B, 16), generator=g)
    instr[:, 5:] = VOCAB.pad
    return img, instr, torch.randn(B, 7, generator=g)


def fake_targets(model, B=2, seed=0):
    g = torch.Generator().manual_seed(seed + 1)
    out = {}
    for b in model.cfg.sequence.blocks:
        lo, hi = VOCAB.block_range(b)
        out[b] = torch.randint(lo, hi, (B, model.cfg.sequence.block_length(b)), generator=g)
    return out


# -- masks ------------------------------------------------------------------------------------------
def test_diffusion_training_mask_position_by_position():
    span, slices, markers = training_span(n_prefix=3, lengths=[2, 3], diffusion=True)
    full = prefix_span(3).cat(span)
    m = allowed(full, full, causal=False)
    # layout: P P P | m0 c0 c0 m1 | n0 n0 n1 n1 n1
    assert full.role.tolist() == [PREFIX] * 3 + [MARKER, CLEAN, CLEAN, MARKER] + [NOISY] * 5
    assert full.pos.tolist() == [0, 1, 2, 3, 4, 5, 6, 4, 5, 7, 8, 9]
    P, m0, c0, m1, n0, n1 = [0, 1, 2], 3, [4, 5], 6, [7, 8], [9, 10, 11]
    for q in P:
        assert m[q, P].all() and not m[q, 3:].any()  # the prefix sees only itself
    assert m[m0, P].all() and m[m0, m0] and not m[m0, c0].any()  # a marker precedes its block
    for q in c0:
        assert m[q, P + [m0] + c0].all() and not m[q, [m1] + n0 + n1].any()
    assert m[m1, P + [m0] + c0 + [m1]].all() and not m[m1, n0 + n1].any()
    for q in n0:  # noisy block 0: prefix, its marker, itself; never the clean copy of itself
        assert m[q, P + [m0] + n0].all() and not m[q, c0 + [m1] + n1].any()
    for q in n1:  # noisy block 1: the clean block 0 and both markers, itself
        assert m[q, P + [m0] + c0 + [m1] + n1].all() and not m[q, n0].any()
    assert [slices[0].start, slices[1].start] == [4, 6] and markers == [0, 3]


def test_ar_training_mask_is_causal_after_a_bidirectional_prefix():
    span, slices, markers = training_span(n_prefix=3, lengths=[2, 2], diffusion=False)
    full = prefix_span(3).cat(span)
    m = allowed(full, full, causal=True)
    n = len(full)
    for q in range(3):
        assert m[q, :3].all() and not m[q, 3:].any()
    for q in range(3, n):
        assert m[q, : q + 1].all() and not m[q, q + 1:].any()


def test_nothing_attends_to_a_later_block():
    for diffusion in (False, True):
        span, _, _ = training_span(5, [4, 3, 6], diffusion)
        full = prefix_span(5).cat(span)
        m = allowed(full, full, causal=not diffusion)
        later = (full.block[None, :] > full.block[:, None]) & (full.role[None, :] != PREFIX)
        assert not (m & later).any()


def test_rationale_dropout_shows_the_later_blocks_an_empty_rationale():
    """Sample 0 is unreasoned: the copy of its think block that later blocks attend to is <eot> then padding
    (the diffusion decoder still learns to write its rationale, the causal one is not taught one it did not
    see); sample 1 is untouched."""
    hide = torch.tensor([True, False])
    for decoder in ("diffusion", "ar"):
        model = make_model(decoder, mode="think+trace")
        targets = fake_targets(model)
        think = targets["think"]
        empty = torch.full_like(think[0], VOCAB.pad)
        empty[0] = VOCAB.eot
        ids0, _, plan0 = model.training_inputs(targets, None, torch.Generator().manual_seed(1))
        ids, span, plan = model.training_inputs(targets, None, torch.Generator().manual_seed(1), hide)
        marker = [i for i, r in enumerate(span.role.tolist()) if r == MARKER][0]
        seen = ids[:, marker + 1: marker + 1 + think.shape[1]]  # the clean copy (diffusion) or the block (ar)
        assert torch.equal(seen[0], empty) and torch.equal(seen[1], think[1])
        assert torch.equal(ids[1], ids0[1])
        (_, _, _, mask), (_, _, _, mask0) = plan[0], plan0[0]  # the think block's loss
        if decoder == "diffusion":
            assert torch.equal(mask, mask0) and mask[0].any()  # noisy copy: the true rationale is still learnt
        else:
            assert not mask[0].any() and torch.equal(mask[1], mask0[1])
        img, instr, st = fake_obs(model)
        with torch.no_grad():
            _, m_hidden = model(img, instr, st, targets, generator=torch.Generator().manual_seed(1), unreasoned=hide)
            _, m_plain = model(img, instr, st, targets, generator=torch.Generator().manual_seed(1))
        assert m_hidden["loss_act"] != m_plain["loss_act"]  # the actions saw another rationale


# -- cache ------------------------------------------------------------------------------------------
def test_kv_cached_ar_decoding_matches_a_full_forward_pass():
    model = make_model("ar")
    img, instr, st = fake_obs(model)
    targets = fake_targets(model)
    ids, span, plan = model.training_inputs(targets, None)
    px, pvalid = model.prefix(img, instr, st)
    full = prefix_span(px.shape[1]).cat(span)
    with torch.no_grad():
        h_full = model.run(torch.cat([px, model.embed(ids)], 1), full,
                           torch.cat([pvalid, torch.ones_like(ids, dtype=torch.bool)], 1))
        cache = KVCache(len(model.layers))
        h_pre = model.run(px, prefix_span(px.shape[1]), pvalid, cache, append=px.shape[1])
        steps = [h_pre]
        for j in range(ids.shape[1]):  # one token at a time
            one = Span(span.role[j: j + 1], span.block[j: j + 1], span.pos[j: j + 1])
            steps.append(model.run(model.embed(ids[:, j: j + 1]), one, torch.ones(2, 1, dtype=torch.bool), cache, append=1))
    h_inc = torch.cat(steps, 1)
    torch.testing.assert_close(model.logits(h_inc), model.logits(h_full), atol=1e-5, rtol=1e-5)


def test_kv_cached_diffusion_round_matches_the_training_layout():
    model = make_model("diffusion")
    img, instr, st = fake_obs(model)
    targets = fake_targets(model)
    g = torch.Generator().manual_seed(3)
    ids, span, plan = model.training_inputs(targets, None, g)
    px, pvalid = model.prefix(img, instr, st)
    with torch.no_grad():
        h_full = model.run(torch.cat([px, model.embed(ids)], 1), prefix_span(px.shape[1]).cat(span),
                           torch.cat([pvalid, torch.ones_like(ids, dtype=torch.bool)], 1))[:, px.shape[1]:]
        # Cached: prefix + <depth>, then clean depth + <trace>, then clean trace + <act>, then the noisy act block.
        Lp = px.shape[1]
        cache = KVCache(len(model.layers))
        sl = {b: s for b, s in zip(model.cfg.sequence.blocks, [p[1] for p in plan])}
        marker_at = [i for i, r in enumerate(span.role.tolist()) if r == MARKER]
        model.run(torch.cat([px, model.embed(ids[:, marker_at[0]: marker_at[0] + 1])], 1),
                  prefix_span(Lp).cat(Span(span.role[:1], span.block[:1], span.pos[:1])),
                  torch.cat([pvalid, torch.ones(2, 1, dtype=torch.bool)], 1), cache, append=Lp + 1)
        for b in range(2):  # clean block b and the next marker
            lo, hi = marker_at[b] + 1, marker_at[b + 1] + 1
            part = Span(span.role[lo:hi], span.block[lo:hi], span.pos[lo:hi])
            model.run(model.embed(ids[:, lo:hi]), part, torch.ones(2, hi - lo, dtype=torch.bool), cache, append=hi - lo)
        act = sl["act"]
        noisy = Span(span.role[act], span.block[act], span.pos[act])
        h_act = model.run(model.embed(ids[:, act]), noisy, torch.ones(2, len(noisy), dtype=torch.bool), cache)
    torch.testing.assert_close(h_act, h_full[:, act], atol=1e-5, rtol=1e-5)


# -- decoders ---------------------------------------------------------------------------------------
class Counting:
    def __init__(self, model):
        self.model, self.calls = model, 0
        self._run = model.run

    def __enter__(self):
        def run(*a, **k):
            self.calls += 1
            return self._run(*a, **k)

        self.model.run = run
        return self

    def __exit__(self, *exc):
        self.model.run = self._run


@pytest.mark.parametrize("steps", [1, 4, 12])
def test_diffusion_decoder_commits_everything_in_range_in_exactly_T_passes(steps):
    for mode, blocks in (("act", 1), ("depth+trace", 3)):
        model = make_model("diffusion", mode)
        img, instr, st = fake_obs(model, B=3)
        with Counting(model) as c:
            res = generate(model, img, instr, st, diffusion_steps=steps, generator=torch.Generator().manual_seed(0))
        assert c.calls == res.nfe == steps * blocks
        for b, toks in res.tokens.items():
            lo, hi = VOCAB.block_range(b)
            assert toks.shape == (3, model.cfg.sequence.block_length(b))
            assert (toks >= lo).all() and (toks < hi).all(), f"{b} tokens left their range"
            assert (toks != VOCAB.mask).all()


def test_ar_decoder_spends_one_pass_per_token_and_stays_in_range():
    model = make_model("ar")
    img, instr, st = fake_obs(model)
    with Counting(model) as c:
        res = generate(model, img, instr, st)
    total = sum(model.cfg.sequence.block_length(b) for b in model.cfg.sequence.blocks)
    assert c.calls == res.nfe == total
    for b, toks in res.tokens.items():
        lo, hi = VOCAB.block_range(b)
        assert (toks >= lo).all() and (toks < hi).all()


def test_a_given_block_is_used_verbatim():
    model = make_model("diffusion", "trace")
    img, instr, st = fake_obs(model)
    lo, _ = VOCAB.block_range("trace")
    trace = torch.full((2, 4), lo + 7)
    res = generate(model, img, instr, st, diffusion_steps=3, given={"trace": trace})
    assert torch.equal(res.tokens["trace"], trace) and res.nfe == 3


@pytest.mark.parametrize("decoder,steps", [("diffusion", 1), ("diffusion", 4), ("ar", 1)])
def test_mean_values_keep_a_belief_spread_over_many_bins_where_the_mode_picks_the_common_one(decoder, steps):
    # Every position believes 30% in bin 128 (zero motion) and 70% spread evenly over bins 140-159 (a small
    # move): the mode is bin 128, the mean bin 0.3 * 128 + 0.7 * 149.5 = 143.05.
    model = make_model(decoder, "trace")
    img, instr, st = fake_obs(model)
    lo, hi = VOCAB.block_range("act")
    belief = torch.full((hi - lo,), 1e-9)
    belief[128], belief[140:160] = 0.3, 0.7 / 20
    real = model.logits

    def logits(h, a, b):
        out = real(h, a, b)
        return belief.log().expand_as(out).clone() if (a, b) == (lo, hi) else out

    model.logits = logits
    trace = torch.full((2, 4), VOCAB.block_range("trace")[0] + 7)  # a given block stays as given
    res = {v: generate(model, img, instr, st, diffusion_steps=steps, given={"trace": trace}, values=v)
           for v in ("mode", "mean")}
    assert torch.equal(res["mode"].tokens["act"], res["mean"].tokens["act"]) and not res["mode"].means
    assert (res["mean"].tokens["act"] == lo + 128).all()
    torch.testing.assert_close(res["mean"].means["act"], torch.full_like(res["mean"].means["act"], lo + 143.05))
    assert torch.equal(res["mean"].means["trace"], trace.float())
    from reasonact.decoding import DecodeOptions

    with pytest.raises(ValueError, match="mode, mean"):
        DecodeOptions(values="median")


def test_schedule_commits_easy_first_and_remasks_doubtful_tokens():
    assert [committed_target(8, t, 4) for t in range(1, 5)] == [1, 3, 5, 8]
    assert [committed_target(4, t, 4) for t in range(1, 5)] == [1, 2, 3, 4]
    # Round 1 of 4: the single most confident position is committed (no Gumbel noise).
    probs = torch.full((1, 4, 3), 0.05)
    probs[0, :, 0] = torch.tensor([0.5, 0.9, 0.6, 0.95])
    tokens = torch.zeros(1, 4, dtype=torch.long)
    committed = torch.zeros(1, 4, dtype=torch.bool)
    tokens, committed, _ = diffusion_step(probs, tokens, committed, 1, 4, temperature=0.0)
    assert committed[0].tolist() == [False, False, False, True]
    # Round 2: position 3's token lost the model's confidence (0.05 < eta_2 = 0.25): re-masked and left
    # open for a later round; the two most confident open positions are committed.
    probs2 = torch.full((1, 4, 3), 0.05)
    probs2[0, :, 1] = torch.tensor([0.9, 0.05, 0.85, 0.05])
    probs2[0, 1, 0] = 0.8
    probs2[0, 3, 2] = 0.7
    tokens, committed, st = diffusion_step(probs2, tokens, committed, 2, 4, temperature=0.0)
    assert st["remasked"] == 1
    assert committed[0].tolist() == [True, False, True, False]
    assert tokens[0, 0] == 1 and tokens[0, 2] == 1
    # Final round: eta is 0, every position is committed, to the most likely token.
    tokens, committed, st = diffusion_step(probs2, tokens, committed, 4, 4, temperature=1.0)
    assert committed.all() and st["remasked"] == 0
    assert tokens[0].tolist() == [1, 0, 1, 2]


def test_decode_ablations_turn_off_remasking_easy_first_and_annealing():
    from reasonact.decoding import DecodeOptions

    # The round-2 situation above, with remasking off: the doubtful token stays committed.
    probs = torch.full((1, 4, 3), 0.05)
    probs[0, :, 1] = torch.tensor([0.9, 0.05, 0.85, 0.05])
    tokens = torch.tensor([[0, 0, 0, 0]])
    committed = torch.tensor([[False, False, False, True]])
    _, kept, st = diffusion_step(probs, tokens, committed, 2, 4, eta=0.0, temperature=0.0)
    assert st["remasked"] == 0 and kept[0, 3]
    # A random commit order ignores confidence: over seeds, the least confident position is sometimes
    # committed first, which easy-first never does.
    probs = torch.full((1, 4, 3), 0.05)
    probs[0, :, 0] = torch.tensor([0.2, 0.9, 0.6, 0.95])
    first = set()
    for seed in range(20):
        g = torch.Generator().manual_seed(seed)
        _, c, _ = diffusion_step(probs, torch.zeros(1, 4, dtype=torch.long), torch.zeros(1, 4, dtype=torch.bool),
                                 1, 4, order="random", generator=g)
        first.add(int(c[0].nonzero()[0, 0]))
        _, c, _ = diffusion_step(probs, torch.zeros(1, 4, dtype=torch.long), torch.zeros(1, 4, dtype=torch.bool),
                                 1, 4, temperature=0.0, generator=g)
        assert c[0].tolist() == [False, False, False, True]
    assert 0 in first and len(first) >= 3
    # Annealed, the noise has all but gone by the last open round; constant, it still reorders there. Round 3
    # of 4 at temperature 0.2 (0.05 annealed): how often the less confident of two open positions wins.
    probs = torch.full((1, 4, 3), 0.05)
    probs[0, :, 0] = torch.tensor([0.5, 0.9, 0.6, 0.95])
    tokens, committed = torch.zeros(1, 4, dtype=torch.long), torch.tensor([[False, True, False, True]])
    wins = {True: 0, False: 0}
    for anneal in (True, False):
        for seed in range(50):
            _, c, _ = diffusion_step(probs, tokens, committed, 3, 4, eta=0.0, temperature=0.2, anneal=anneal,
                                     generator=torch.Generator().manual_seed(seed))
            wins[anneal] += bool(c[0, 0])
    assert wins[False] >= wins[True] + 5, wins
    with pytest.raises(ValueError, match="commit order"):
        DecodeOptions(order="left-to-right")
    with pytest.raises(ValueError, match="eta"):
        DecodeOptions(eta=2.0)


def test_coordinate_tokens_carry_their_value_and_old_weights_load_with_it_off(tmp_path):
    from safetensors.torch import save_file

    from reasonact.checkpoint import load_weights

    model = make_model("diffusion", "trace")
    lo, hi = VOCAB.block_range("trace")
    other = torch.tensor([[VOCAB.offset("action"), VOCAB.offset("text"), VOCAB.mask]])
    coords = torch.tensor([[lo, lo + 1, lo + 128, hi - 1]])
    assert torch.equal(model.embed(coords), model.tok_emb(coords))  # the projection starts at zero
    torch.nn.init.normal_(model.coord_emb.proj.weight)
    assert torch.equal(model.embed(other), model.tok_emb(other))  # only coordinate bins get features
    f = model.coord_emb(coords)[0]
    assert (f[0] - f[1]).norm() < (f[0] - f[2]).norm()  # neighbouring bins start out alike
    # weights saved before coordinate features existed load, with the features off
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("coord_emb") and k != "head.weight"}
    save_file(state, str(tmp_path / "old.safetensors"))
    fresh = make_model("diffusion", "trace", seed=1)
    torch.nn.init.normal_(fresh.coord_emb.proj.weight)
    load_weights(fresh, tmp_path / "old.safetensors")
    assert torch.equal(fresh.tok_emb.weight, model.tok_emb.weight)
    assert not fresh.coord_emb.proj.weight.any()
    # the ablation: without features a coordinate bin is its learnt embedding alone
    plain = make_model("diffusion", "trace", coord_features=False)
    assert not any(k.startswith("coord_emb") for k in plain.state_dict())
    assert torch.equal(plain.embed(coords), plain.tok_emb(coords))
