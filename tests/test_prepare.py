"""The fixed harness: tokenizer, dataloader, metric, data preparation and its bad inputs."""

from __future__ import annotations

import json
import math
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from harness_util import import_harness, write_harness


def _docs_folder(folder: Path, n: int = 40, seed: int = 0) -> Path:
    """A files: corpus of small prose-and-code documents."""
    rng = random.Random(seed)
    words = "alpha beta gamma delta the of and model token 12 345 6789 def return x = y + 1".split()
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        text = "\n".join(" ".join(rng.choice(words) for _ in range(rng.randint(3, 15))) for _ in range(rng.randint(5, 40)))
        (folder / f"doc{i:03d}.txt").write_text(text)
    return folder


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """A harness on a files: corpus, prepared once for the module."""
    root = tmp_path_factory.mktemp("small")
    corpus = _docs_folder(root / "corpus")
    path = write_harness(root / "ws", DATASET=f"files:{corpus}", VOCAB_SIZE=300, MAX_SEQ_LEN=32,
                         EVAL_TOKENS=4096, TOKENIZER_TRAIN_CHARS=100_000)
    result = subprocess.run([sys.executable, "prepare.py"], cwd=path.parent, capture_output=True, text=True,
                            env={**os.environ, "AUTORESEARCH_CACHE_DIR": str(root / "cache")})
    assert result.returncode == 0, result.stderr
    return import_harness(path, root / "cache"), corpus


def _documents(h, split):
    tokens = np.fromfile(h.PREPARED_DIR / f"{split}.bin", dtype=np.uint16)
    offsets = np.load(h.PREPARED_DIR / f"{split}.idx.npy")
    return [tokens[offsets[i]:offsets[i + 1]].tolist() for i in range(len(offsets) - 1)]


def test_tokenizer_round_trips_text_and_has_four_specials(small):
    h, _ = small
    tok = h.Tokenizer.from_directory()
    assert tok.get_vocab_size() == 300
    assert tok.get_bos_token_id() == 296  # first of the four specials, after the 296 regular tokens
    for text in ["def f(x):\n    return x + 12345\n", "unicode: héllo → wörld ✓", ""]:
        assert tok.decode(tok.encode(text)) == text
    assert tok.encode(["ab", "cd"], prepend="<|bos|>")[1][0] == tok.get_bos_token_id()
    # digits split in groups of at most two before BPE
    assert all(len(tok.decode([t]).strip()) <= 2 for t in tok.encode("123456789") if tok.decode([t]).strip().isdigit())


def test_token_bytes_count_utf8_and_zero_for_specials(small):
    h, _ = small
    tok = h.Tokenizer.from_directory()
    table = h.get_token_bytes()
    assert table.shape == (300,)
    assert table[tok.get_bos_token_id()] == 0 and table[296:].sum() == 0
    ids = tok.encode("héllo world")
    assert int(table[ids].sum()) == len("héllo world".encode())


def test_dataloader_rows_start_with_bos_have_no_padding_and_come_from_documents(small):
    h, _ = small
    tok = h.Tokenizer.from_directory()
    bos = tok.get_bos_token_id()
    docs = ["|".join(map(str, d)) for d in _documents(h, "train")]
    loader = h.make_dataloader(tok, 4, 32, "train", device="cpu")
    for _ in range(30):
        x, y, epoch = next(loader)
        assert x.shape == y.shape == (4, 32) and x.dtype == torch.int64
        assert torch.equal(x[:, 1:], y[:, :-1])  # targets are inputs shifted by one
        assert (x[:, 0] == bos).all()
        row = torch.cat([x, y[:, -1:]], dim=1)
        assert (row < 300).all() and (row >= 0).all()
        for r in row.tolist():
            pieces, current = [], None
            for t in r:
                if t == bos:
                    current = []
                    pieces.append(current)
                else:
                    current.append(t)
            for piece in pieces:
                if piece:  # every piece is a contiguous run of one real document
                    key = "|".join(map(str, piece))
                    assert any(key in d for d in docs), piece
    assert epoch >= 1


def test_dataloader_is_deterministic(small):
    h, _ = small
    tok = h.Tokenizer.from_directory()
    for split in ("train", "val"):
        a = h.make_dataloader(tok, 3, 32, split, device="cpu")
        b = h.make_dataloader(tok, 3, 32, split, device="cpu")
        for _ in range(10):
            assert torch.equal(next(a)[0], next(b)[0])


class Uniform(torch.nn.Module):
    def __init__(self, vocab):
        super().__init__()
        self.vocab = vocab
        self.bias = torch.nn.Parameter(torch.zeros(vocab))

    def forward(self, x, y, reduction="mean"):
        logits = self.bias.expand(*x.shape, self.vocab)
        return torch.nn.functional.cross_entropy(logits.reshape(-1, self.vocab), y.reshape(-1), reduction=reduction)


def test_evaluate_bpb_of_uniform_model_is_log2_vocab_times_tokens_over_bytes(small, tmp_path, monkeypatch):
    h, _ = small
    tok = h.Tokenizer.from_directory()
    table = h.get_token_bytes()
    batch = 4
    steps = h.EVAL_TOKENS // (batch * h.MAX_SEQ_LEN)
    loader = h.make_dataloader(tok, batch, h.MAX_SEQ_LEN, "val", device="cpu")
    tokens = nbytes = 0
    for _ in range(steps):
        _, y, _ = next(loader)
        b = table[y.reshape(-1)]
        tokens += int((b > 0).sum())
        nbytes += int(b.sum())
    bpb = h.evaluate_bpb(Uniform(300), tok, batch)
    assert bpb == pytest.approx(math.log2(300) * tokens / nbytes, rel=1e-6)  # float32 losses


def test_evaluate_bpb_matches_the_entropy_rate_of_a_known_source(tmp_path):
    """Letters drawn i.i.d.; a byte-level vocabulary (no merges) and an oracle model."""
    probs = {"a": 0.5, "b": 0.25, "c": 0.125, "d": 0.125}
    entropy = -sum(p * math.log2(p) for p in probs.values())  # 1.75 bits per byte
    rng = random.Random(1)
    corpus = tmp_path / "iid"
    corpus.mkdir()
    for i in range(60):
        (corpus / f"{i}.txt").write_text("".join(rng.choices(list(probs), weights=list(probs.values()), k=3000)))
    path = write_harness(tmp_path / "ws", DATASET=f"files:{corpus}", VOCAB_SIZE=260, MAX_SEQ_LEN=64,
                         EVAL_TOKENS=2**15, VAL_PERCENT=20)
    cache = tmp_path / "cache"
    subprocess.run([sys.executable, "prepare.py"], cwd=path.parent, check=True, capture_output=True,
                   env={**os.environ, "AUTORESEARCH_CACHE_DIR": str(cache)})
    h = import_harness(path, cache)
    tok = h.Tokenizer.from_directory()
    logp = torch.full((260,), -1e9)
    for ch, p in probs.items():
        [token] = tok.encode(ch)
        logp[token] = math.log(p)

    class Oracle(Uniform):
        def forward(self, x, y, reduction="mean"):
            logits = (logp + 0 * self.bias).expand(*x.shape, 260)
            return torch.nn.functional.cross_entropy(logits.reshape(-1, 260), y.reshape(-1), reduction=reduction)

    assert h.evaluate_bpb(Oracle(260), tok, 8) == pytest.approx(entropy, abs=0.02)


def test_a_changed_validation_split_is_refused(tmp_path):
    corpus = _docs_folder(tmp_path / "corpus")
    path = write_harness(tmp_path / "ws", DATASET=f"files:{corpus}", VOCAB_SIZE=300, MAX_SEQ_LEN=32, EVAL_TOKENS=2048)
    cache = tmp_path / "cache"
    subprocess.run([sys.executable, "prepare.py"], cwd=path.parent, check=True, capture_output=True,
                   env={**os.environ, "AUTORESEARCH_CACHE_DIR": str(cache)})
    h = import_harness(path, cache)
    tok = h.Tokenizer.from_directory()
    val = h.PREPARED_DIR / "val.bin"
    data = bytearray(val.read_bytes())
    data[0] ^= 1
    val.write_bytes(bytes(data))
    with pytest.raises(h.HarnessError, match="validation split changed"):
        h.evaluate_bpb(Uniform(300), tok, 2)


def test_prepare_is_idempotent_and_resumes_after_an_interruption(tmp_path):
    corpus = _docs_folder(tmp_path / "corpus")
    path = write_harness(tmp_path / "ws", DATASET=f"files:{corpus}", VOCAB_SIZE=300)
    env = {**os.environ, "AUTORESEARCH_CACHE_DIR": str(tmp_path / "cache")}

    def prepare():
        r = subprocess.run([sys.executable, "prepare.py", "--json"], cwd=path.parent, capture_output=True, text=True, env=env)
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout.strip().splitlines()[-1])

    first = prepare()
    h = import_harness(path, tmp_path / "cache")
    stamp = (h.PREPARED_DIR / "train.bin").stat().st_mtime_ns
    assert prepare() == first  # second run does nothing
    assert (h.PREPARED_DIR / "train.bin").stat().st_mtime_ns == stamp
    # an interruption before the val split and the manifest were written
    (h.PREPARED_DIR / "manifest.json").unlink()
    (h.PREPARED_DIR / "val.bin").unlink()
    (h.PREPARED_DIR / "val.bin.tmp").write_bytes(b"torn")
    again = prepare()
    assert again["val_sha256"] == first["val_sha256"]
    assert not (h.PREPARED_DIR / "val.bin.tmp").exists()


def _run_prepare(folder, cache, **env):
    return subprocess.run([sys.executable, "prepare.py"], cwd=folder, capture_output=True, text=True,
                          env={**os.environ, "AUTORESEARCH_CACHE_DIR": str(cache), **env})


def _assert_one_clear_error(result, pattern):
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert pattern in lines[0]


@pytest.mark.parametrize("case", ["unknown", "missing", "empty", "one_doc", "unreadable"])
def test_bad_input_gets_one_clear_line_and_leaves_nothing_looking_complete(tmp_path, case):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    expected = {
        "unknown": "unknown dataset",
        "missing": "is not a readable folder",
        "empty": "holds no documents",
        "one_doc": "too few documents",
        "unreadable": "cannot read",
    }[case]
    dataset = f"files:{corpus}"
    if case == "unknown":
        dataset = "imagenet"
    elif case == "missing":
        dataset = f"files:{tmp_path / 'nope'}"
    elif case == "one_doc":
        (corpus / "a.txt").write_text("only one document here")
    elif case == "unreadable":
        (corpus / "a.txt").write_text("fine")
        (corpus / "b.txt").write_bytes(b"\xff\xfe\x00 not utf-8 \xc3")
    path = write_harness(tmp_path / "ws", DATASET=dataset)
    result = _run_prepare(path.parent, tmp_path / "cache")
    _assert_one_clear_error(result, expected)
    assert not list((tmp_path / "cache").rglob("manifest.json"))
