"""The evaluator's side of the hand-over (prepare.py's load_handover and score_handover).

train.py is an adversary of the score: it hands over a torch.export program of model(idx) ->
logits, and the evaluator computes the loss from the logits. Each test here is a way a program
could score near zero by reading the tokens it is asked to predict, or a hand-over file that
would hold or exhaust the evaluator. The attacks are real modules exported with the harness's
own hand_over and scored by its own score_handover on real prepared data (a tiny corpus, short
rows, so that a whole evaluation takes a fraction of a second).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import sys
import threading
import time
import zipfile

import pytest
import torch
from torch import nn

from autoresearch import proc
from harness_util import import_harness, write_harness
from support import template_definitions

VOCAB, SEQ, BATCH = 300, 64, 4   # 64 rows of 64 tokens are scored, 16 batches of 4
LEAK = 30.0                      # nats added to the logit of the next token: its loss goes to about 0


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def h(tmp_path_factory):
    """The real harness, with short rows and a small vocabulary, prepared once for the module."""
    root = tmp_path_factory.mktemp("handover")
    corpus = root / "corpus"
    corpus.mkdir()
    rng = random.Random(0)
    words = "alpha beta gamma delta the of and model token 12 345 6789 def return x = y + 1 ( ) : if".split()
    for i in range(60):
        lines = (" ".join(rng.choice(words) for _ in range(rng.randint(3, 15))) for _ in range(rng.randint(5, 40)))
        (corpus / f"doc{i:03d}.txt").write_text("\n".join(lines))
    path = write_harness(root / "ws", DATASET=f"files:{corpus}", VOCAB_SIZE=VOCAB, MAX_SEQ_LEN=SEQ,
                         EVAL_TOKENS=SEQ * 64, TOKENIZER_TRAIN_CHARS=100_000, VAL_PERCENT=20)
    harness = import_harness(path, root / "cache")
    harness.prepare()
    return harness


def hand_over(h, model, folder):
    h.hand_over(model, BATCH, folder)
    return folder


def score(h, folder):
    return h.score_handover(folder, "cpu")


# ---------------------------------------------------------------------------
# models: an honest one and the attacks built on it

class Bigram(nn.Module):
    """Honest: the logits of the next token from the current token alone (a fixed random table)."""

    def __init__(self, seed=0):
        super().__init__()
        self.table = nn.Parameter(torch.randn(VOCAB, VOCAB, generator=torch.Generator().manual_seed(seed)))

    def forward(self, idx):
        return nn.functional.embedding(idx, self.table)


def next_token(idx):
    """[B, T, VOCAB]: 1 at the token that follows each position (the one it is scored on), 0 at the last."""
    ahead = (idx[:, 1:, None] == torch.arange(VOCAB)).float()
    return torch.cat([ahead, torch.zeros_like(ahead[:, :1])], dim=1)


class Peeks(Bigram):
    """Reads the token it predicts, everywhere."""

    def forward(self, idx):
        return super().forward(idx) + LEAK * next_token(idx)


class CountsItsCalls(Bigram):
    """Attack 1: honest for the calls the old harness spent on its checks (three, on the first
    batch), then it reads the token it predicts. The count lives in a buffer it changes."""

    def __init__(self):
        super().__init__()
        self.register_buffer("calls", torch.zeros((), dtype=torch.long))

    def forward(self, idx):
        self.calls += 1
        scoring = (self.calls > 3).float()
        return super().forward(idx) + scoring * LEAK * next_token(idx)


class InflatesTheTolerance(Bigram):
    """Attack 2: a logit of -1e5 on a token that never occurs (the last reserved special token)
    costs nothing, and made the old tolerance (1e-3 + 1e-3 * max|logit|) 100: a leak of 30 hides."""

    def __init__(self):
        super().__init__()
        far = torch.zeros(VOCAB)
        far[VOCAB - 1] = -1e5
        self.register_buffer("far", far)

    def forward(self, idx):
        return super().forward(idx) + LEAK * next_token(idx) + self.far


class PredictsTheCuts(Bigram):
    """Attack 3: the old check cut the rows where torch.Generator().manual_seed(1234) said, which
    train.py can compute: it leaks everywhere but just before those cuts."""

    def __init__(self):
        super().__init__()
        cuts = torch.randint(1, SEQ, (BATCH,), generator=torch.Generator().manual_seed(1234))
        leak_at = torch.ones(SEQ)
        leak_at[cuts - 1] = 0.0
        self.register_buffer("leak_at", leak_at)

    def forward(self, idx):
        return super().forward(idx) + LEAK * next_token(idx) * self.leak_at[None, :, None]


class LeaksSometimes(Bigram):
    """Reads the token it predicts at one position in four: the check sees a row's position leak
    only when the row's cut falls right after it, so this is caught over the rows (all 64 rows
    missing it: odds of (47/63)^64, under 1e-8)."""

    def forward(self, idx):
        sometimes = (torch.arange(SEQ) % 4 == 1).float()[None, :, None]
        return super().forward(idx) + LEAK * next_token(idx) * sometimes


class ReadsTheNextRowAtTheEnd(Bigram):
    """Reads another row, at each row's last position only: the next row's first token, a
    row's true continuation where rows are consecutive pieces of one stream."""

    def forward(self, idx):
        out = super().forward(idx)
        ahead = (idx.roll(-1, dims=0)[:, 0, None] == torch.arange(VOCAB)).float()  # [B, VOCAB]
        last = (torch.arange(idx.shape[1]) == idx.shape[1] - 1).float()[None, :, None]
        return out + LEAK * last * ahead[:, None, :]


class WritesItsInput(Bigram):
    """Fills its input with one token and predicts that token: the targets are the same tokens
    shifted by one, in the same memory, so they would all become that token."""

    def forward(self, idx):
        idx.fill_(5)
        logits = torch.zeros(idx.shape[0], idx.shape[1], VOCAB) + self.table[0, 0] * 0
        return logits + LEAK * (torch.arange(VOCAB) == 5).float()


class ReadsUninitialisedMemory(Bigram):
    """torch.empty holds whatever an earlier call left in that memory: a memory between calls."""

    def forward(self, idx):
        scratch = torch.empty(idx.shape[0], idx.shape[1], VOCAB)
        return super().forward(idx) + 0.0 * scratch


class TrainsWhileScored(Bigram):
    """Takes a gradient step on data it carries before it answers: training in the evaluator's
    time. A graph traced through autograd holds ATen's *_backward operations."""

    def __init__(self):
        super().__init__()
        self.register_buffer("carried", torch.randn(VOCAB, VOCAB, generator=torch.Generator().manual_seed(1)))

    def forward(self, idx):
        out = torch.tanh(self.table)
        step = torch.ops.aten.tanh_backward(self.carried, out)  # d tanh / d table, by hand
        return nn.functional.embedding(idx, self.table - 0.1 * step)


class Remembers(nn.Module):
    """A program with a memory, as if one got past load_handover: honest for its first `honest`
    calls, then it reads the token it predicts."""

    def __init__(self, honest):
        super().__init__()
        self.bigram, self.honest, self.calls = Bigram(), honest, 0

    def forward(self, idx):
        self.calls += 1
        logits = self.bigram(idx)
        return logits + LEAK * next_token(idx) if self.calls > self.honest else logits


class ChangesWhenRepeated(Bigram):
    """A program with a memory that answers its third call (the first batch again) differently."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, idx):
        self.calls += 1
        logits = super().forward(idx)
        return logits + (torch.arange(VOCAB) == 7).float() if self.calls == 3 else logits


class InPlaceIntermediates(Bigram):
    """Honest, written with in-place operations on its own intermediates only."""

    def __init__(self):
        super().__init__()
        self.act = nn.ReLU(inplace=True)

    def forward(self, idx):
        h = super().forward(idx)
        h.mul_(2.0)
        h += 1.0
        return self.act(h)


class Shifted(Bigram):
    """Adds a huge constant to its logits at every `every`-th position: at 2**30 float32 holds
    only multiples of 128, so a log-sum-exp taken before the largest logit is subtracted rounds
    back onto it and every such position scored a loss of exactly 0."""

    def __init__(self, every=1, back=False):
        super().__init__()
        self.every, self.back = every, back

    def forward(self, idx):
        shift = ((torch.arange(idx.shape[1]) % self.every == 0).float() * 2.0 ** 30)[None, :, None]
        shifted = super().forward(idx) + shift
        # back: the same rounded logits, the constant taken off again (exactly: Sterbenz), so
        # that no log-sum-exp of them can lose anything to rounding
        return shifted - shift if self.back else shifted


class TellsInItsError(Bigram):
    """Reads tokens 1 to 5 of its first row out as an index out of range: the error's message
    is the validation data. With `at_bos`, only on rows that start at a document (as every
    validation row does, and random tokens almost never)."""

    def __init__(self, at_bos=None):
        super().__init__()
        self.at_bos = at_bos

    def forward(self, idx):
        code = (idx[0, 1:6] * VOCAB ** torch.arange(5)).sum().reshape(1) + 1
        if self.at_bos is not None:  # every row at a document's start: random rows never all are
            code = code * (idx[:, 0] == self.at_bos).all().long()
        return super().forward(idx) + torch.zeros(1)[code]  # an index tensor: shapes stay fixed


class NaNLogits(Bigram):
    def forward(self, idx):
        logits = super().forward(idx)
        return torch.where(idx[..., None] == idx[0, 1], torch.full_like(logits, float("nan")), logits)


def template_gpt():
    """The template train.py's GPT (everything above its Setup section), small, with the
    projections that start at zero made random so that every layer counts."""
    module = template_definitions()
    torch.manual_seed(0)
    config = module.GPTConfig(sequence_len=SEQ, vocab_size=VOCAB, n_layer=2, n_head=2, n_embd=64, window_pattern="SL")
    model = module.GPT(config)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model.eval()


# ---------------------------------------------------------------------------
# honest models are scored

def test_the_template_gpt_is_scored_as_it_scores_itself(h, tmp_path):
    model = template_gpt()
    record = score(h, hand_over(h, model, tmp_path / "gpt"))
    by_hand = h.evaluate_bpb(model, h.Tokenizer.from_directory(), BATCH)
    assert record["val_bpb"] == pytest.approx(by_hand, rel=1e-5)
    assert record["tokens"] > 0 and record["batch_size"] == BATCH


def test_an_honest_model_is_scored_even_with_in_place_operations_inside(h, tmp_path):
    plain = score(h, hand_over(h, Bigram(), tmp_path / "plain"))
    assert 1.0 < plain["val_bpb"] < 20.0
    record = score(h, hand_over(h, InPlaceIntermediates(), tmp_path / "in-place"))
    assert 0.0 < record["val_bpb"] < 20.0 and record["tokens"] == plain["tokens"]


def test_a_model_that_peeks_is_refused(h, tmp_path):
    with pytest.raises(h.HarnessError, match="not causal"):
        score(h, hand_over(h, Peeks(), tmp_path / "peeks"))


# ---------------------------------------------------------------------------
# attack 1: a program with a memory between calls

def test_a_program_that_counts_its_calls_in_a_buffer_is_refused(h, tmp_path):
    folder = hand_over(h, CountsItsCalls(), tmp_path / "counts")
    program = json.loads((folder / "program.json").read_text())
    # torch.export writes the count as in-place operations in the graph, not in the signature
    assert not any("mutation" in next(iter(spec)) for spec in program["graph_module"]["signature"]["output_specs"])
    with pytest.raises(h.HarnessError, match="pure function"):
        h.load_handover(folder, "cpu")
    with pytest.raises(h.HarnessError, match="buffer_mutation"):
        score(h, folder)


@pytest.mark.parametrize("target", ["torch.ops.aten.__getattr__.__call__", "torch.ops.aten.mm.no_such_overload",
                                    "torch.ops.aten.no_such_op.default"])
def test_a_call_shaped_like_an_aten_operation_that_is_none_is_refused(h, tmp_path, target):
    """Only overloads of registered ATen operations: `aten.__getattr__.__call__` has the shape of
    one and, looked up attribute by attribute, reaches Python methods instead."""
    folder = hand_over(h, Bigram(), tmp_path / "bigram")
    program = json.loads((folder / "program.json").read_text())
    program["graph_module"]["graph"]["nodes"][0]["target"] = target
    (folder / "program.json").write_text(json.dumps(program))
    with pytest.raises(h.HarnessError, match="not a plain PyTorch"):
        h.load_handover(folder, "cpu")


def test_a_batch_size_of_true_is_refused(h, tmp_path):
    folder = hand_over(h, Bigram(), tmp_path / "bigram")
    meta = json.loads((folder / "meta.json").read_text())
    meta["batch_size"] = True
    (folder / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(h.HarnessError, match="batch size"):
        h.load_handover(folder, "cpu")


def test_every_batch_is_checked_not_only_the_first(h, tmp_path, monkeypatch):
    """Should a memory get past load_handover, a program honest for the calls of the first batch
    (scored, checked, scored again) and reading the tokens it predicts afterwards is still caught."""
    monkeypatch.setattr(h, "load_handover", lambda folder, device: (Remembers(honest=3), BATCH))
    with pytest.raises(h.HarnessError, match="not causal"):
        score(h, tmp_path)


def test_a_program_that_answers_differently_when_repeated_is_refused(h, tmp_path, monkeypatch):
    monkeypatch.setattr(h, "load_handover", lambda folder, device: (ChangesWhenRepeated(), BATCH))
    with pytest.raises(h.HarnessError, match="not a pure function"):
        score(h, tmp_path)


@pytest.mark.filterwarnings("ignore::FutureWarning")  # PyTorch's own, from run_decompositions
def test_a_program_whose_signature_changes_a_buffer_is_refused(h, tmp_path):
    """The same attack, handed over already functionalised: the change is in the signature."""
    from torch._export.serde.serialize import serialize

    folder = hand_over(h, CountsItsCalls(), tmp_path / "counts")
    program = torch.export.export(CountsItsCalls(), (torch.zeros(BATCH, SEQ, dtype=torch.long),))
    artifact = serialize(program.run_decompositions({}))
    written = json.loads(artifact.exported_program)
    assert any("buffer_mutation" in spec for spec in written["graph_module"]["signature"]["output_specs"])
    (folder / "program.json").write_bytes(artifact.exported_program)
    (folder / "weights.pt").write_bytes(artifact.state_dict)
    (folder / "constants.pt").write_bytes(artifact.constants)
    with pytest.raises(h.HarnessError, match="buffer_mutation"):
        h.load_handover(folder, "cpu")


def test_a_program_that_writes_into_its_input_is_refused(h, tmp_path):
    with pytest.raises(h.HarnessError, match="user_input_mutation"):
        score(h, hand_over(h, WritesItsInput(), tmp_path / "writes"))


def test_a_program_with_gradient_operations_is_refused(h, tmp_path):
    with pytest.raises(h.HarnessError, match="tanh_backward.*gradients"):
        score(h, hand_over(h, TrainsWhileScored(), tmp_path / "trains"))


def test_a_program_that_reads_uninitialised_memory_is_refused(h, tmp_path):
    with pytest.raises(h.HarnessError, match="uninitialised memory"):
        score(h, hand_over(h, ReadsUninitialisedMemory(), tmp_path / "empty"))


# ---------------------------------------------------------------------------
# attacks 2 and 3: hiding a leak from the check

def test_an_enormous_logit_does_not_widen_the_tolerance(h, tmp_path):
    with pytest.raises(h.HarnessError, match="not causal"):
        score(h, hand_over(h, InflatesTheTolerance(), tmp_path / "inflates"))


def test_the_check_cuts_cannot_be_predicted(h, tmp_path):
    with pytest.raises(h.HarnessError, match="not causal"):
        score(h, hand_over(h, PredictsTheCuts(), tmp_path / "predicts"))


def test_a_leak_at_some_positions_only_is_caught_over_the_batches(h, tmp_path):
    with pytest.raises(h.HarnessError, match="not causal"):
        score(h, hand_over(h, LeaksSometimes(), tmp_path / "sometimes"))


def test_a_row_that_reads_another_row_at_its_last_position_is_refused(h):
    """Each row's last position is compared only when its cut falls past it (the row intact,
    only moved): one chance in T per row, as for a leak at any other one position. Rows of two
    tokens make that one in two, so sixteen rows all miss it once in 65,536 checks."""
    x = torch.randint(0, VOCAB - 4, (16, 2), generator=torch.Generator().manual_seed(0))
    with pytest.raises(h.HarnessError, match="rows are not independent"):
        h._scored_log_probs(ReadsTheNextRowAtTheEnd(), x, VOCAB)
    h._scored_log_probs(Bigram(), x, VOCAB)  # an honest model passes the same check


@pytest.mark.parametrize("every", [1, 8])
def test_logits_shifted_by_a_huge_constant_score_as_the_distribution_they_describe(h, tmp_path, every):
    """A constant added to a position's logits changes nothing of its distribution: the score is
    that of the (rounded) logits with the constant taken off again, not the 0 of a log-sum-exp
    rounded onto the largest logit."""
    shifted = score(h, hand_over(h, Shifted(every), tmp_path / f"shifted-{every}"))["val_bpb"]
    described = score(h, hand_over(h, Shifted(every, back=True), tmp_path / f"back-{every}"))["val_bpb"]
    assert shifted == pytest.approx(described, abs=1e-6) and shifted > 1.0


def first_validation_code(h):
    bos = h.get_token_bytes("cpu").numel() - len(h.SPECIAL_TOKENS)
    x, _, _ = next(h.make_dataloader(h._Bos(bos), BATCH, SEQ, "val"))
    return bos, int((x[0, 1:6] * VOCAB ** torch.arange(5)).sum()) + 1


def test_an_error_of_the_program_never_carries_validation_tokens_out(h, tmp_path):
    bos, code = first_validation_code(h)
    with pytest.raises(h.HarnessError, match="fails on any input: IndexError") as always:
        score(h, hand_over(h, TellsInItsError(), tmp_path / "always"))
    assert str(code) not in str(always.value)  # told, but of random tokens
    with pytest.raises(h.HarnessError, match="validation batches only, with IndexError") as only:
        score(h, hand_over(h, TellsInItsError(at_bos=bos), tmp_path / "validation"))
    assert str(code) not in str(only.value) and "index" not in str(only.value)


def test_nan_logits_are_refused(h, tmp_path):
    with pytest.raises(h.HarnessError, match="NaN"):
        score(h, hand_over(h, NaNLogits(), tmp_path / "nan"))


# ---------------------------------------------------------------------------
# attack 4: hand-over files that hold or exhaust the evaluator

def refused_within_seconds(h, folder, seconds=5.0):
    """score_handover's HarnessError, raised within `seconds` (a thread, so that a hang fails the
    test instead of hanging it)."""
    outcome = {}

    def run():
        started = time.monotonic()
        try:
            score(h, folder)
            outcome["result"] = "scored"
        except Exception as exc:  # reported by the test
            outcome["result"] = exc
        outcome["seconds"] = time.monotonic() - started

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    return thread, outcome


@pytest.mark.parametrize("kind", ["fifo", "link to /dev/zero", "huge sparse file"])
@pytest.mark.parametrize("name", ["weights.pt", "program.json"])
def test_a_hand_over_file_that_is_not_a_small_plain_file_is_refused_at_once(h, tmp_path, kind, name):
    folder = hand_over(h, Bigram(), tmp_path / "files")
    path = folder / name
    path.unlink()
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "link to /dev/zero":
        path.symlink_to("/dev/zero")
    else:
        with open(path, "wb") as fh:  # a hole: no disk is used
            fh.truncate(64 << 30)
    thread, outcome = refused_within_seconds(h, folder)
    hanging = thread.is_alive()
    if hanging and kind == "fifo":  # release a reader blocked on the FIFO
        os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
    assert not hanging, f"the evaluator is still reading the {kind}"
    assert isinstance(outcome["result"], h.HarnessError), outcome["result"]
    assert outcome["seconds"] < 2.0
    assert name in str(outcome["result"]) and "\n" not in str(outcome["result"])


def test_compressed_tensors_are_refused(h, tmp_path):
    """A compressed record of a few hundred kilobytes could unpack to gigabytes: torch.save writes
    none, so none is accepted."""
    folder = hand_over(h, Bigram(), tmp_path / "bomb")
    plain = folder / "weights.pt"
    with zipfile.ZipFile(plain) as src:
        records = [(info.filename, src.read(info.filename)) for info in src.infolist()]
    plain.unlink()
    with zipfile.ZipFile(plain, "w", compression=zipfile.ZIP_DEFLATED) as out:
        for filename, data in records:
            out.writestr(filename, data)
    with pytest.raises(h.HarnessError, match="compressed"):
        score(h, folder)


def test_a_hand_over_with_more_rows_than_are_scored_is_refused(h, tmp_path):
    """Extra rows would wrap the validation documents around, so a row's next tokens could be
    copied from a later copy of the same document in the same batch."""
    rows = h.EVAL_TOKENS // h.MAX_SEQ_LEN
    folder = tmp_path / "wide"
    h.hand_over(Bigram(), rows + 1, folder)
    with pytest.raises(h.HarnessError, match=f"from 1 to {rows}"):
        score(h, folder)


def _waiting_evaluator(tmp_path):
    """autoresearch.evaluator --wait on a harness that notes what the hand-over folder held
    when it warmed up and when it scored."""
    handover = tmp_path / "handover"
    handover.mkdir()
    harness = tmp_path / "prepare.py"
    harness.write_text(f"import os\nHANDOVER = {str(handover)!r}\nWARM = []\n"
                       "def warm():\n    WARM.append(sorted(os.listdir(HANDOVER)))\n"
                       "def score_handover(folder):\n"
                       "    return {'val_bpb': 1.5, 'when_warm': WARM[0], 'when_scored': sorted(os.listdir(folder))}\n")
    job = {"harness": str(harness), "harness_sha256": hashlib.sha256(harness.read_bytes()).hexdigest(),
           "handover": str(handover), "record": str(tmp_path / "record.json"), "metric": "val_bpb"}
    (tmp_path / "job.json").write_text(json.dumps(job))
    argv = [sys.executable, "-I", "-B", "-m", "autoresearch.evaluator", "--wait", str(tmp_path / "job.json")]
    return handover, proc.start(argv, tmp_path, dict(os.environ), tmp_path / "log", stdin=True)


def test_a_waiting_evaluator_reads_the_hand_over_only_after_go(tmp_path):
    handover, started = _waiting_evaluator(tmp_path)
    time.sleep(1.5)  # warmed up meanwhile, while "the trainer" runs
    (handover / "weights.pt").write_text("handed over")
    started.send(b"go\n")
    assert started.wait(30).returncode == 0, (tmp_path / "log").read_text()
    record = json.loads((tmp_path / "record.json").read_text())
    assert record["when_warm"] == [] and record["when_scored"] == ["weights.pt"] and record["val_bpb"] == 1.5


def test_a_waiting_evaluator_told_nothing_leaves_without_a_record(tmp_path):
    handover, started = _waiting_evaluator(tmp_path)
    started.send(b"")  # the trainer failed, or the engine went away: stdin ends
    assert started.wait(30).returncode == 3 and not (tmp_path / "record.json").exists()


def test_where_a_device_side_assertion_failed_never_reaches_run_log():
    """CUDA prints the block and thread of a failed device-side assertion: a program that fails
    at positions its validation tokens pick would spell them out (or count them) in the
    evaluator's output, which run.log (read by the agent) carries. Those lines go, however many
    and wherever a cut of the output falls, and one line says so."""
    from autoresearch.engine.runner import WITHHELD, without_device_asserts

    line = (b"/pytorch/aten/src/ATen/native/cuda/IndexKernel.cu:92: operator(): block: [3,0,0], thread: [%d,0,0] "
            b"Assertion `index out of bounds` failed.")
    out = b"scoring\n" + b"\n".join(line % i for i in range(4000)) + b"\nRuntimeError: CUDA error: device-side assert triggered\n"
    shown = without_device_asserts(out)
    assert b"thread: [" not in shown and b"block: [" not in shown and shown.count(WITHHELD) == 1
    assert shown == WITHHELD + b"\nscoring\nRuntimeError: CUDA error: device-side assert triggered\n"
    assert without_device_asserts(b"scoring\nval_bpb 1.0\n") == b"scoring\nval_bpb 1.0\n"
