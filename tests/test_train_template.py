"""The baseline train.py: model shapes and losses, sliding windows, the optimizers, fast fail.

The model and optimizer tests run train.py's own definitions (everything above its `Setup`
section, which is where the script starts doing work), so they test the file the agent
edits, not a copy. The fast-fail test runs train.py for real in a prepared workspace.
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
import torch

from autoresearch import capsliterals, profiles
from autoresearch.workspace import template_text
from support import template_definitions



@pytest.fixture(scope="module")
def tr():
    """train.py's definitions (constants, model, optimizers, schedules) as a namespace."""
    return template_definitions()


def small_config(tr, **overrides):
    values = dict(sequence_len=32, vocab_size=64, n_layer=2, n_head=2, n_embd=64, window_pattern="L")
    values.update(overrides)
    return tr.GPTConfig(**values)


def randomize_projections(model):
    """Zero-initialized output projections make every block the identity; undo that for tests."""
    with torch.no_grad():
        for block in model.blocks:
            block.attn.c_proj.weight.normal_(std=0.1)
            block.mlp.c_proj.weight.normal_(std=0.1)
            if block.attn.ve_gate is not None:
                block.attn.ve_gate.weight.normal_(std=0.1)


# ---------------------------------------------------------------------------
# constants

def test_hyperparameters_are_rewritable_literals_including_every_profile_name():
    text = template_text("llm", "train.py")
    found = capsliterals.read_constants(text)
    for name in ("DEPTH", "DEVICE_BATCH_SIZE", "TOTAL_BATCH_SIZE", "WINDOW_PATTERN", "ASPECT_RATIO",
                 "HEAD_DIM", "MATRIX_LR", "EMBEDDING_LR", "UNEMBEDDING_LR", "SCALAR_LR",
                 "WEIGHT_DECAY", "ADAM_BETAS", "WARMDOWN_RATIO", "SEED"):
        assert name in found, name
    assert found["ADAM_BETAS"].value == (0.8, 0.95)
    # all of them in the one hyperparameter block, between its ruler and the next
    lines = text.splitlines()
    start = lines.index("# Hyperparameters (one literal per line: tools rewrite these values in place)")
    end = next(i for i in range(start + 1, len(lines)) if lines[i].startswith("# ----"))
    assert all(start < c.line - 1 < end for c in found.values())
    for profile in profiles.PROFILES.values():
        rewritten = capsliterals.read_constants(capsliterals.write_constants(text, profile.train))
        assert {k: rewritten[k].value for k in profile.train} == profile.train


# ---------------------------------------------------------------------------
# model

def test_forward_shapes_and_per_token_losses(tr):
    torch.manual_seed(0)
    model = tr.GPT(small_config(tr))
    idx = torch.randint(0, 64, (3, 32))
    targets = torch.randint(0, 64, (3, 32))
    logits = model(idx)
    assert logits.shape == (3, 32, 64) and logits.dtype == torch.float32
    assert logits.abs().max() <= 15.0  # soft-capped
    loss = model(idx, targets)
    assert loss.shape == ()
    per_token = model(idx, targets, reduction="none")
    assert per_token.shape == (3, 32)
    assert per_token.mean().item() == pytest.approx(loss.item(), rel=1e-5)
    # each per-token loss is the cross-entropy of that position's logits
    expected = torch.nn.functional.cross_entropy(logits[1, 5], targets[1, 5])
    assert per_token[1, 5].item() == pytest.approx(expected.item(), rel=1e-5)
    # shorter sequences than the context work too
    assert model(idx[:, :7], targets[:, :7], reduction="none").shape == (3, 7)


def test_ignored_targets_cost_nothing(tr):
    model = tr.GPT(small_config(tr))
    idx = torch.randint(0, 64, (2, 16))
    targets = torch.randint(0, 64, (2, 16))
    targets[0, :4] = -1
    per_token = model(idx, targets, reduction="none")
    assert torch.all(per_token[0, :4] == 0) and torch.all(per_token[0, 4:] > 0)


def test_reference_shape_matches_the_original_model_size(tr):
    # depth 8, aspect 64, head dim 128, vocab 8192, sequence 2048: 50.3M parameters
    config = tr.GPTConfig(sequence_len=2048, vocab_size=8192, n_layer=8, n_head=4, n_embd=512,
                          window_pattern="SSSL")
    with torch.device("meta"):
        model = tr.GPT(config)
    assert model.num_params() / 1e6 == pytest.approx(50.3, abs=0.05)
    assert model.windows == [1024, 1024, 1024, 2048, 1024, 1024, 1024, 2048]
    assert sorted(int(k) for k in model.value_embeds) == [1, 3, 5, 7]  # alternating, last included
    # ~2.4e8 training FLOPs per token: what the original's MFU figures imply
    assert model.flops_per_token() == pytest.approx(2.4e8, rel=0.02)


def test_window_pattern_cycles_and_the_last_layer_sees_everything(tr):
    assert tr.window_sizes(small_config(tr, n_layer=5, window_pattern="SSL")) == [16, 16, 32, 16, 32]
    assert tr.window_sizes(small_config(tr, n_layer=3, window_pattern="S")) == [16, 16, 32]
    with pytest.raises(AssertionError):
        tr.window_sizes(small_config(tr, window_pattern="SX"))


def _attention_outputs(tr, model, layer, idx, T):
    x = tr.norm(model.wte(idx))
    attn = model.blocks[layer].attn
    ve = model.value_embeds[str(layer)](idx) if str(layer) in model.value_embeds else None
    return attn(x, ve, model.cos[:, :T], model.sin[:, :T], model.attention_mask(layer, T))


@pytest.mark.parametrize("flex", [False, True], ids=["sdpa-mask", "flex-block-mask"])
def test_sliding_window_hides_tokens_beyond_the_window(tr, flex):
    torch.manual_seed(0)
    T = 32  # window S = 16
    model = tr.GPT(small_config(tr, sequence_len=T, window_pattern="SL"))
    randomize_projections(model)
    if flex:
        model.use_flex()
        assert not isinstance(model.attention_mask(0, T), torch.Tensor)
    idx = torch.randint(0, 64, (1, T))
    changed = idx.clone()
    changed[0, 3] = (idx[0, 3] + 1) % 64
    with torch.no_grad():
        a = _attention_outputs(tr, model, 0, idx, T)
        b = _attention_outputs(tr, model, 0, changed, T)
        differs = (a - b).abs().amax(dim=-1)[0] > 1e-6
        # windowed layer: token 3 reaches positions 3..18 (i - 3 < 16), no further
        assert differs[3:19].all() and not differs[19:].any() and not differs[:3].any()
        # the full-context last layer: token 3 reaches every later position
        full = (_attention_outputs(tr, model, 1, idx, T)
                - _attention_outputs(tr, model, 1, changed, T)).abs().amax(dim=-1)[0] > 1e-6
        assert full[3:].all() and not full[:3].any()


def test_flex_block_mask_and_boolean_mask_agree(tr):
    torch.manual_seed(1)
    T = 64
    model = tr.GPT(small_config(tr, sequence_len=T, window_pattern="SL"))
    randomize_projections(model)
    idx = torch.randint(0, 64, (2, T))
    with torch.no_grad():
        plain = model(idx)
        model.use_flex()
        flex = model(idx)
    assert torch.allclose(plain, flex, atol=1e-4)


def test_training_steps_lower_the_loss_with_both_optimizers(tr):
    torch.manual_seed(0)
    model = tr.GPT(small_config(tr, window_pattern="SL"))
    shapes = [p.shape for p in model.parameters()]
    optimizers = tr.build_optimizers(model)
    # a learnable pattern: each token is followed by (token + 1) mod V
    idx = torch.randint(0, 64, (8, 32))
    targets = (idx + 1) % 64
    losses = []
    for _ in range(30):
        loss = model(idx, targets)
        loss.backward()
        for opt in optimizers:
            opt.step()
        model.zero_grad(set_to_none=True)
        losses.append(loss.item())
    assert [p.shape for p in model.parameters()] == shapes
    assert losses[-1] < 0.5 * losses[0], losses


# ---------------------------------------------------------------------------
# optimizer

@pytest.mark.parametrize("shape", [(4, 32, 64), (3, 96, 48)], ids=["wide", "tall"])
def test_polar_express_drives_singular_values_towards_one(tr, shape):
    torch.manual_seed(0)
    G = torch.randn(shape) * torch.logspace(-1, 1, shape[-1])  # condition number ~100
    X = tr.orthogonalize(G)
    assert X.shape == G.shape
    s = torch.linalg.svdvals(X)
    assert s.min() > 0.6 and s.max() < 1.25, s
    # it keeps the singular vectors: X is close to U V^T
    U, _, Vh = torch.linalg.svd(G, full_matrices=False)
    assert torch.nn.functional.cosine_similarity(X.flatten(1), (U @ Vh).flatten(1)).min() > 0.95


def test_muon_fits_a_least_squares_problem_and_keeps_shapes(tr):
    torch.manual_seed(0)
    targets = [0.1 * torch.randn(24, 48), 0.1 * torch.randn(24, 48), 0.1 * torch.randn(96, 24)]
    weights = [torch.nn.Parameter(torch.zeros_like(t)) for t in targets]
    inputs = [torch.randn(256, t.size(1)) for t in targets]
    muon = tr.Muon(weights, lr=0.05, momentum=0.9, weight_decay=0.0)
    assert len(muon.param_groups) == 2  # stacked by shape

    def loss_fn():
        return sum(((x @ w.T - x @ t.T) ** 2).mean() for x, w, t in zip(inputs, weights, targets))

    first = None
    for _ in range(60):
        loss = loss_fn()
        first = first if first is not None else loss.item()
        for w in weights:
            w.grad = None
        loss.backward()
        muon.step()
    assert [w.shape for w in weights] == [t.shape for t in targets]
    assert loss_fn().item() < 0.1 * first


def test_cautious_weight_decay_only_shrinks_where_the_update_agrees(tr):
    def step(weight_decay):
        w = torch.nn.Parameter(torch.tensor([[1.0, -1.0], [1.0, -1.0]]))
        w.grad = torch.ones(2, 2)  # the update lowers every weight
        tr.Muon([w], lr=1e-2, momentum=0.0, weight_decay=weight_decay).step()
        return w.detach()

    plain, decayed = step(0.0), step(1.0)
    # w = +1: the update moves it towards 0 and the decay (lr * wd * w = 0.01) joins in
    assert torch.allclose(decayed[:, 0], plain[:, 0] - 0.01)
    # w = -1: the update moves it away from 0; a decay would pull back against it, so none
    assert torch.equal(decayed[:, 1], plain[:, 1])


def test_lr_schedule_and_momentum_warmup(tr):
    assert tr.lr_multiplier(0.0) == 1.0
    assert tr.lr_multiplier(0.5) == 1.0
    assert tr.lr_multiplier(0.75) == pytest.approx(0.5)
    assert tr.lr_multiplier(1.0) == pytest.approx(0.0)
    assert tr.muon_momentum(0) == pytest.approx(0.85)
    assert tr.muon_momentum(150) == pytest.approx(0.90)
    assert tr.muon_momentum(10_000) == pytest.approx(0.95)


# ---------------------------------------------------------------------------
# the script, for real

@pytest.fixture(scope="module")
def workspace(tmp_path_factory, data_cache):
    ws = tmp_path_factory.mktemp("train") / "ws"
    r = subprocess.run([sys.executable, "-m", "autoresearch", "init", str(ws), "--profile", "cpu",
                        "--budget", "600"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([sys.executable, "-m", "autoresearch", "prepare"], cwd=ws, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return ws


@pytest.mark.heavy
def test_a_diverging_loss_fails_fast_with_FAIL(workspace):
    path = workspace / "train.py"
    text = capsliterals.write_constants(path.read_text(), {"DEVICE_BATCH_SIZE": 4, "TOTAL_BATCH_SIZE": 2**10})
    # an infinite embedding learning rate turns the weights to inf/NaN after the first step
    text, n = re.subn(r"^EMBEDDING_LR = [^ ]+", "EMBEDDING_LR = 1e999", text, flags=re.M)
    assert n == 1
    path.write_text(text)
    # the budget is 600 s: only the fast-fail path ends this run before the timeout
    r = subprocess.run([sys.executable, "train.py"], cwd=workspace, capture_output=True, text=True, timeout=240)
    assert r.returncode != 0
    assert "FAIL" in r.stdout.splitlines()
    assert "\n---\n" not in r.stdout and "val_bpb:" not in r.stdout
    assert re.search(r"training loss nan at step [12]\b", r.stderr), r.stderr[-2000:]
    # progress lines came before it, in the shared format
    assert re.search(r"^step 00001 \| progress [\d.]+% \| loss [\d.]+ \| lrm [\d.]+ \| dt \d+ms \| "
                     r"tok/s [\d,]+ \| mfu n/a \| epoch \d+ \| remaining \d+s$", r.stdout, re.M), r.stdout
