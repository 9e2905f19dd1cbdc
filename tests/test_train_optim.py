"""The hand-written optimizers of the baseline train.py, checked against references.

train.py trains at import time, so these tests pull the few top-level definitions they need
(by name, with `ast`) out of the template's source and run them in a fresh namespace: the
code under test is the template's own, never a copy.
"""

from __future__ import annotations

import ast
import math
from importlib import resources

import pytest
import torch

TEMPLATE = ("templates", "llm", "train.py")


def train_definitions(*names: str) -> dict:
    """Exec the named top-level functions, classes and assignments of train.py; return them."""
    source = resources.files("autoresearch").joinpath(*TEMPLATE).read_text()
    picked, found = [], set()
    for node in ast.parse(source).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            node_names = {node.name}
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            node_names = {t.id for t in targets if isinstance(t, ast.Name)}
        else:
            continue
        if node_names & set(names):
            picked.append(node)
            found |= node_names
    missing = set(names) - found
    assert not missing, f"train.py no longer defines {sorted(missing)} at top level"
    namespace = {"torch": torch, "nn": torch.nn, "F": torch.nn.functional, "math": math}
    exec(compile(ast.Module(body=picked, type_ignores=[]), "train.py", "exec"), namespace)
    return namespace


pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ---------------------------------------------------------------------------
# AdamW


def test_adamw_matches_torch_adamw():
    # train.py's AdamW is standard AdamW: bias-corrected moments, eps added to the bias-corrected
    # sqrt(v), and decoupled weight decay p *= 1 - lr * wd before the Adam step, one weight decay
    # for every group (the constructor argument). torch.optim.AdamW with amsgrad/maximize off
    # and the same lr per group, betas, eps and weight_decay computes exactly that.
    AdamW = train_definitions("AdamW")["AdamW"]
    lrs, betas, eps, weight_decay, steps = (1e-2, 3e-3), (0.8, 0.95), 1e-8, 0.1, 5

    gen = torch.Generator().manual_seed(0)
    shapes = [(16, 8), (32,), (4, 4, 3)]
    initial = [torch.randn(s, generator=gen) for s in shapes]
    # gradients over six orders of magnitude, so that eps (1e-8 against sqrt(v) down to ~1e-6)
    # visibly matters for the small ones and its placement is tested too
    grads = [[torch.randn(s, generator=gen) * torch.logspace(-6, 0, s[-1]) for s in shapes]
             for _ in range(steps)]

    def run(make_optimizer):
        params = [torch.nn.Parameter(p.clone()) for p in initial]
        groups = [dict(params=params[:2], lr=lrs[0]), dict(params=params[2:], lr=lrs[1])]
        opt = make_optimizer(groups)
        for step_grads in grads:
            for p, g in zip(params, step_grads):
                p.grad = g.clone()
            opt.step()
        return [p.detach() for p in params]

    ours = run(lambda groups: AdamW(groups, betas=betas, eps=eps, weight_decay=weight_decay))
    reference = run(lambda groups: torch.optim.AdamW(groups, betas=betas, eps=eps,
                                                     weight_decay=weight_decay, amsgrad=False,
                                                     maximize=False, foreach=False))
    for p, q, start in zip(ours, reference, initial):
        assert not torch.allclose(q, start, rtol=1e-3, atol=1e-4)  # the steps moved the weights
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------
# Muon: Polar Express orthogonalization


def spectrum_matrix(rows, cols, condition, gen):
    """A random matrix (random singular vectors) with singular values log-spaced in [1/condition, 1]."""
    k = min(rows, cols)
    U, _ = torch.linalg.qr(torch.randn(rows, k, generator=gen))
    V, _ = torch.linalg.qr(torch.randn(cols, k, generator=gen))
    return U @ torch.diag(torch.logspace(0, -math.log10(condition), k)) @ V.T


@pytest.mark.parametrize("shape", [(64, 64), (128, 32), (32, 128)], ids=["square", "tall", "wide"])
def test_muon_orthogonalization_is_near_orthogonal(shape):
    orthogonalize = train_definitions("POLAR_EXPRESS", "orthogonalize")["orthogonalize"]
    gen = torch.Generator().manual_seed(0)
    # The five Polar Express polynomials are tuned to lift singular values down to ~1e-2 of the
    # largest (after the Frobenius normalization) into the last polynomial's band, about
    # [0.86, 1.14]: measured 0.859..1.141 for every shape at condition number 10 and 100. Beyond
    # that (condition 1e3, 1e4) the smallest ones are only partly lifted (0.42, 0.05), which is
    # why the input has a prescribed spectrum rather than plain randn (whose square case has
    # seed-dependent near-zero singular values).
    G = 3.0 * spectrum_matrix(*shape, condition=100, gen=gen)
    k = min(shape)
    eye = torch.eye(k)

    def gram(M):  # the smaller-side Gram matrix: identity for a (semi-)orthogonal M
        return M @ M.T if M.size(0) <= M.size(1) else M.T @ M

    # negative control: the input itself is far from orthogonal, even rescaled to the best
    # spectral norm (1), so passing the checks below takes the orthogonalization
    g = torch.linalg.svdvals(G / torch.linalg.matrix_norm(G, 2))
    assert g.min() < 0.05 and g.max() == pytest.approx(1.0)
    assert torch.linalg.matrix_norm(gram(G / torch.linalg.matrix_norm(G, 2)) - eye, 2) > 0.9

    O = orthogonalize(G)
    assert O.shape == G.shape and O.dtype == torch.float32
    s = torch.linalg.svdvals(O)
    assert s.min() > 0.8 and s.max() < 1.2, s
    # O O^T (or O^T O for tall O) is within 0.35 of the identity in spectral norm
    # (= max |s^2 - 1|; measured 0.30)
    assert torch.linalg.matrix_norm(gram(O) - eye, 2) < 0.35
    # and it is the polar factor U V^T of G = U S V^T, not just any near-orthogonal matrix
    U, _, Vh = torch.linalg.svd(G, full_matrices=False)
    assert torch.linalg.matrix_norm(O - U @ Vh, 2) < 0.2
