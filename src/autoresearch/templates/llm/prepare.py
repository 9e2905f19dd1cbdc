"""
The fixed harness of this research workspace. Nobody edits this file, ever: the engine
checks its sha256 before and after every experiment.

It holds the constants that make experiments comparable, the data, the tokenizer, the
dataloader and the metric:

    python prepare.py      # fetch or collect the documents, train the tokenizer, tokenize
                           # (idempotent; resumes after an interruption)

    from prepare import MAX_SEQ_LEN, TIME_BUDGET, Tokenizer, make_dataloader, evaluate_bpb

The metric is validation bits per byte: the model's summed cross-entropy over a fixed
number of validation tokens, divided by the number of UTF-8 bytes those tokens stand for,
in bits. It does not depend on the vocabulary, so tokenizer changes compare fairly.
Under the engine, training runs in a sandbox that cannot see the validation split: there
`evaluate_bpb` hands the trained model over instead of scoring it (AUTORESEARCH_HANDOVER
names the folder): a torch.export program of `model(idx) -> logits`, its weights and no
Python from train.py. The engine's evaluator process then calls `score_handover` with this
very file (checked against its fingerprint) and the validation split: it computes the loss
from the logits itself. What train.py prints is never the score.
"""

import argparse
import hashlib
import json
import math
import os
import pickle
import random
import re
import sys
import sysconfig
import time
import urllib.error
import urllib.request
from bisect import bisect_right
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

# ---------------------------------------------------------------------------
# Constants: frozen when the workspace was made (autoresearch init --profile ...)

DATASET = "pysource"                   # climbmix | tinystories | pysource | files:PATH
MAX_SEQ_LEN = 256                      # context length of training and evaluation
TIME_BUDGET = 60                       # seconds of training per experiment
EVAL_TOKENS = 2**17                    # validation tokens scored by evaluate_bpb
VOCAB_SIZE = 2048                      # BPE vocabulary, special tokens included
NUM_TRAIN_SHARDS = 1                   # hub datasets: training shards to download
MAX_TRAIN_CHARS = 24_000_000           # cap on training text (characters)
MAX_VAL_CHARS = 2_000_000              # cap on validation text (characters)
TOKENIZER_TRAIN_CHARS = 8_000_000      # training text the tokenizer learns from

VAL_PERCENT = 5                        # local datasets: share of documents held out
SPECIAL_TOKENS = ["<|bos|>", "<|reserved_1|>", "<|reserved_2|>", "<|reserved_3|>"]
# GPT-4 style pre-tokenizer split, but numbers in groups of 1-2 digits instead of 1-3
SPLIT_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,2}| ?[^\s\p{L}\p{N}]++[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+"""
)

CACHE_DIR = Path(os.environ.get("AUTORESEARCH_CACHE_DIR") or Path.home() / ".cache" / "autoresearch")
HF_ENDPOINT = os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")
CLIMBMIX_REPO = "karpathy/climbmix-400b-shuffle"
CLIMBMIX_VAL_SHARD = 6542              # the last shard, pinned as validation
TINYSTORIES_REPO = "roneneldan/TinyStories"
MAX_FILE_CHARS = 1_000_000             # pysource/files: skip single documents larger than this


def deadline():
    """When the engine stops this training run, as a Unix time in seconds (time.time()), or None
    when it runs by hand. The engine kills the whole process at that moment, whatever its clocks
    say: a training loop ends early enough before it to hand the model over."""
    try:
        value = float(os.environ.get("AUTORESEARCH_DEADLINE", ""))
    except ValueError:
        return None
    return value if math.isfinite(value) else None


class HarnessError(Exception):
    """Bad input or a broken cache: one clear line, never a number."""


def _settings_key():
    """Names the prepared data: every constant that shapes it, plus the interpreter for pysource."""
    parts = [DATASET, VOCAB_SIZE, NUM_TRAIN_SHARDS, MAX_TRAIN_CHARS, MAX_VAL_CHARS,
             TOKENIZER_TRAIN_CHARS, VAL_PERCENT, SPLIT_PATTERN, SPECIAL_TOKENS, 2]
    if DATASET == "pysource":
        parts.append(sys.prefix)
    digest = hashlib.sha256(repr(parts).encode()).hexdigest()[:12]
    name = DATASET.split(":")[0]
    return f"{name}-{digest}"


PREPARED_DIR = CACHE_DIR / "prepared" / _settings_key()
TOKENIZER_DIR = PREPARED_DIR / "tokenizer"


def _progress(label, done, total, unit=""):
    if not sys.stderr.isatty():
        return
    width = 30
    filled = int(width * done / max(total, 1))
    sys.stderr.write(f"\r{label} [{'#' * filled}{'.' * (width - filled)}] {done}/{total}{unit}")
    if done >= total:
        sys.stderr.write("\n")
    sys.stderr.flush()


def _stable_hash(text):
    return int(hashlib.sha256(text.encode()).hexdigest()[:16], 16)


# ---------------------------------------------------------------------------
# Documents: each dataset becomes two lists of strings, train and val

def _download(url, dest, retries=5):
    """Fetch url to dest atomically (a .part file renamed into place), retrying with backoff."""
    if dest.exists():
        return
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    headers = {"User-Agent": "autoresearch-prepare"}
    if os.environ.get("HF_TOKEN"):
        headers["Authorization"] = "Bearer " + os.environ["HF_TOKEN"]
    for attempt in range(retries):
        try:
            request = urllib.request.Request(url, headers=headers)
            with urllib.request.urlopen(request, timeout=60) as response, open(part, "wb") as out:
                while chunk := response.read(1 << 20):
                    out.write(chunk)
            os.replace(part, dest)
            return
        except urllib.error.HTTPError as exc:
            part.unlink(missing_ok=True)
            if exc.code < 500 and exc.code != 429:
                raise HarnessError(f"cannot download {url}: HTTP {exc.code}") from None
            reason = f"HTTP {exc.code}"
        except (urllib.error.URLError, OSError) as exc:
            part.unlink(missing_ok=True)
            reason = str(getattr(exc, "reason", exc))
        if attempt + 1 < retries:
            time.sleep(min(0.5 * 2**attempt, 8.0))
    raise HarnessError(f"cannot download {url}: {reason} (no network? set HF_ENDPOINT for a mirror, "
                       f"or make a workspace with --dataset pysource)")


def _download_all(jobs, label):
    """Download [(url, dest)] with a few threads; a progress bar counts finished files."""
    todo = [(u, d) for u, d in jobs if not d.exists()]
    if not todo:
        return
    done = 0
    with ThreadPoolExecutor(max_workers=8) as pool:
        futures = [pool.submit(_download, u, d) for u, d in todo]
        for future in futures:
            future.result()
            done += 1
            _progress(label, done, len(todo), " files")


def _parquet_texts(path):
    import pyarrow.parquet as pq
    try:
        table = pq.read_table(path, columns=["text"])
    except Exception as exc:
        raise HarnessError(f"cannot read {path}: {exc}") from None
    return [t for t in table.column("text").to_pylist() if t]


def _take(texts, max_chars):
    out, total = [], 0
    for t in texts:
        if total >= max_chars:
            break
        t = t[: max_chars - total]
        out.append(t)
        total += len(t)
    return out


def hub_documents():
    """climbmix and tinystories: parquet shards from the Hugging Face hub (HF_ENDPOINT honoured)."""
    if DATASET == "climbmix":
        base = f"{HF_ENDPOINT}/datasets/{CLIMBMIX_REPO}/resolve/main"
        train = [f"{base}/shard_{i:05d}.parquet" for i in range(NUM_TRAIN_SHARDS)]
        val = [f"{base}/shard_{CLIMBMIX_VAL_SHARD:05d}.parquet"]
    else:
        base = f"{HF_ENDPOINT}/api/datasets/{TINYSTORIES_REPO}/parquet/default"
        train = [f"{base}/train/{i}.parquet" for i in range(NUM_TRAIN_SHARDS)]
        val = [f"{base}/validation/0.parquet"]
    folder = CACHE_DIR / "data" / DATASET
    jobs = [(u, folder / "train" / f"{i:05d}.parquet") for i, u in enumerate(train)]
    jobs.append((val[0], folder / "val" / "00000.parquet"))
    _download_all(jobs, f"downloading {DATASET}")
    train_docs = []
    for _, dest in jobs[:-1]:
        train_docs.extend(_parquet_texts(dest))
    return _take(train_docs, MAX_TRAIN_CHARS), _take(_parquet_texts(jobs[-1][1]), MAX_VAL_CHARS)


def _split_local(named_texts):
    """[(name, text)] -> (train, val): held-out by a hash of the name, capped, deterministic."""
    if len(named_texts) < 2:
        raise HarnessError(f"too few documents for a validation split: found {len(named_texts)}, need at least 2")
    ordered = sorted(named_texts, key=lambda nt: _stable_hash(nt[0]))
    val = [t for n, t in ordered if _stable_hash("val:" + n) % 100 < VAL_PERCENT]
    train = [t for n, t in ordered if _stable_hash("val:" + n) % 100 >= VAL_PERCENT]
    if not val:  # tiny corpora: hold out one document rather than none
        val, train = [ordered[0][1]], [t for _, t in ordered[1:]]
    if not train:
        raise HarnessError("too few documents for a validation split: nothing left to train on")
    return _take(train, MAX_TRAIN_CHARS), _take(val, MAX_VAL_CHARS)


def _read_text(path):
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None


TEST_FOLDERS = ("test", "tests")       # pysource: validation documents come only from folders so named


def _test_folder(root, rel):
    """The outermost folder named test or tests on the way from `root` to the file `rel` (None if none)."""
    parts = Path(rel).parts[:-1]
    for i, part in enumerate(parts):
        if part in TEST_FOLDERS:
            return root.joinpath(*parts[:i + 1])
    return None


def pysource_documents():
    """The .py files of this interpreter's stdlib and site-packages, one document per file.

    The validation documents come only from test folders (a `test` or `tests` package: the
    stdlib's test suite, the tests that packages ship), which no training program imports: the
    engine shows the folders they came from empty inside its sandbox, so a training run cannot
    read them back from the Python installation it runs on. Returns (train, val, the folders
    the validation documents came from)."""
    roots = []
    for key in ("stdlib", "purelib", "platlib"):
        path = sysconfig.get_paths().get(key)
        if path and Path(path).is_dir() and Path(path).resolve() not in [r for _, r in roots]:
            roots.append((key, Path(path).resolve()))
    candidates = []
    for key, root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if d != "__pycache__"
                                 and not (key == "stdlib" and d == "site-packages"))
            for f in filenames:
                if f.endswith(".py"):
                    rel = (Path(dirpath) / f).relative_to(root)
                    candidates.append((f"{key}/{rel.as_posix()}", root / rel, _test_folder(root, rel)))
    # read files in hash order and stop once each split has enough text
    candidates.sort(key=lambda c: _stable_hash(c[0]))
    train, val, sources = [], [], set()
    train_chars = val_chars = 0
    for name, path, folder in candidates:
        to_val = folder is not None and val_chars < MAX_VAL_CHARS and _stable_hash("val:" + name) % 2 == 0
        if not to_val and train_chars >= MAX_TRAIN_CHARS:
            if val_chars >= MAX_VAL_CHARS:
                break
            continue
        text = _read_text(path)
        if not text or not text.strip() or len(text) > MAX_FILE_CHARS:
            continue
        if to_val:
            val.append(text)
            val_chars += len(text)
            sources.add(str(folder))
        else:
            train.append(text)
            train_chars += len(text)
    if not val:
        raise HarnessError("pysource: this Python installation has no test folders (test/ or tests/) to hold "
                           "out as validation documents; use another dataset (files:PATH)")
    if not train:
        raise HarnessError("pysource: no training documents found in this Python installation")
    return _take(train, MAX_TRAIN_CHARS), _take(val, MAX_VAL_CHARS), sorted(sources)


def files_documents(folder):
    """files:PATH — a folder of .txt, .md, .jsonl (a "text" field per line) and .parquet files."""
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise HarnessError(f"files:{folder} is not a readable folder")
    named = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        text = _read_text(path) if path.suffix in (".txt", ".md", ".jsonl") else ""
        if text is None:
            raise HarnessError(f"cannot read {path} as UTF-8 text")
        if path.suffix in (".txt", ".md") and text.strip():
            named.append((rel, text[:MAX_FILE_CHARS]))
        for i, line in enumerate(text.splitlines() if path.suffix == ".jsonl" else []):
            try:
                record = json.loads(line) if line.strip() else {}
            except json.JSONDecodeError:
                raise HarnessError(f"{path}:{i + 1} is not valid JSON") from None
            if isinstance(record, dict) and isinstance(record.get("text"), str) and record["text"].strip():
                named.append((f"{rel}:{i}", record["text"]))
        if path.suffix == ".parquet":
            named.extend((f"{rel}:{i}", t) for i, t in enumerate(_parquet_texts(path)))
    if not named:
        raise HarnessError(f"files:{folder} holds no documents (.txt, .md, .jsonl or .parquet)")
    return _split_local(named)


def load_documents():
    """(train, val, the folders the validation documents came from, which the engine keeps out
    of the training sandbox whatever else it binds: see docs/trust.md)."""
    if DATASET in ("climbmix", "tinystories"):
        return (*hub_documents(), [str(CACHE_DIR.resolve())])
    if DATASET == "pysource":
        return pysource_documents()
    if DATASET.startswith("files:"):
        return (*files_documents(DATASET[len("files:"):]), [str(Path(DATASET[len("files:"):]).expanduser().resolve())])
    raise HarnessError(f"unknown dataset {DATASET!r}: use climbmix, tinystories, pysource or files:PATH")


# ---------------------------------------------------------------------------
# Tokenizer: BPE learned with rustbpe, applied with tiktoken

class Tokenizer:
    """Byte-level BPE; the first special token is the BOS that starts every row."""

    def __init__(self, encoding):
        self.enc = encoding
        self.bos_token_id = encoding.encode_single_token(SPECIAL_TOKENS[0])

    @classmethod
    def from_directory(cls, tokenizer_dir=None):
        path = Path(tokenizer_dir or TOKENIZER_DIR) / "tokenizer.pkl"
        if not path.exists():
            raise HarnessError(f"no tokenizer at {path}: run `python prepare.py` first")
        with open(path, "rb") as fh:
            return cls(pickle.load(fh))

    def get_vocab_size(self):
        return self.enc.n_vocab

    def get_bos_token_id(self):
        return self.bos_token_id

    def encode(self, text, prepend=None, num_threads=8):
        """A string -> list of ids; a list of strings -> list of lists. `prepend`: an id or special token."""
        if isinstance(prepend, str):
            prepend = self.enc.encode_single_token(prepend)
        if isinstance(text, str):
            ids = self.enc.encode_ordinary(text)
            return ([prepend] + ids) if prepend is not None else ids
        out = self.enc.encode_ordinary_batch(list(text), num_threads=num_threads)
        if prepend is not None:
            out = [[prepend] + ids for ids in out]
        return out

    def decode(self, ids):
        return self.enc.decode(list(ids))


def train_tokenizer(train_docs):
    import rustbpe
    import tiktoken

    def texts():
        seen = 0
        for doc in train_docs:
            if seen >= TOKENIZER_TRAIN_CHARS:
                return
            yield doc[: TOKENIZER_TRAIN_CHARS - seen]
            seen += len(doc)

    bpe = rustbpe.Tokenizer()
    bpe.train_from_iterator(texts(), VOCAB_SIZE - len(SPECIAL_TOKENS), pattern=SPLIT_PATTERN)
    ranks = {bytes(k): v for k, v in bpe.get_mergeable_ranks()}
    specials = {name: len(ranks) + i for i, name in enumerate(SPECIAL_TOKENS)}
    encoding = tiktoken.Encoding(name="autoresearch", pat_str=bpe.get_pattern(),
                                 mergeable_ranks=ranks, special_tokens=specials)
    # bytes per token for bits-per-byte; special tokens count zero bytes
    token_bytes = [len(encoding.decode_single_token_bytes(i)) for i in range(len(ranks))] + [0] * len(specials)
    tmp = TOKENIZER_DIR.with_name("tokenizer.tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    with open(tmp / "tokenizer.pkl", "wb") as fh:
        pickle.dump(encoding, fh)
    torch.save(torch.tensor(token_bytes, dtype=torch.int32), tmp / "token_bytes.pt")
    os.replace(tmp, TOKENIZER_DIR)


def get_token_bytes(device="cpu"):
    """Tensor [vocab] of each token's length in UTF-8 bytes (0 for special tokens)."""
    path = TOKENIZER_DIR / "token_bytes.pt"
    if not path.exists():
        raise HarnessError(f"no token byte table at {path}: run `python prepare.py` first")
    return torch.load(path, map_location="cpu").to(device)


# ---------------------------------------------------------------------------
# Tokenized data on disk: <split>.bin (uint16 ids, documents back to back, no BOS)
# and <split>.idx.npy (document start offsets, one extra at the end)

def _sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


def _val_digest():
    """The validation pin: one sha256 over everything the metric reads (the split's tokens, its
    document offsets and the token byte table), so none of them can change unnoticed."""
    h = hashlib.sha256()
    for path in (PREPARED_DIR / "val.bin", PREPARED_DIR / "val.idx.npy", TOKENIZER_DIR / "token_bytes.pt"):
        h.update(_sha256_file(path).encode())
    return h.hexdigest()


def tokenize_split(tokenizer, docs, split, batch=256):
    dtype = np.uint16 if VOCAB_SIZE <= 65536 else np.uint32
    bin_tmp = PREPARED_DIR / f"{split}.bin.tmp"
    offsets = [0]
    with open(bin_tmp, "wb") as out:
        for start in range(0, len(docs), batch):
            for ids in tokenizer.encode(docs[start:start + batch], num_threads=os.cpu_count() or 1):
                if ids:
                    np.asarray(ids, dtype=dtype).tofile(out)
                    offsets.append(offsets[-1] + len(ids))
            _progress(f"tokenizing {split}", min(start + batch, len(docs)), len(docs), " docs")
    np.save(PREPARED_DIR / f"{split}.idx.tmp.npy", np.asarray(offsets, dtype=np.int64))
    os.replace(PREPARED_DIR / f"{split}.idx.tmp.npy", PREPARED_DIR / f"{split}.idx.npy")
    os.replace(bin_tmp, PREPARED_DIR / f"{split}.bin")
    return len(offsets) - 1, offsets[-1]


def manifest():
    """The prepared data's record (val split sha256 and sizes), or None if not prepared."""
    path = PREPARED_DIR / "manifest.json"
    return json.loads(path.read_text()) if path.exists() else None


def prepare():
    """Idempotent: each stage is skipped when its output exists; the manifest is written last."""
    if manifest() is not None:
        print(f"data ready: {PREPARED_DIR}")
        return manifest()
    t0 = time.time()
    print(f"preparing {DATASET} into {PREPARED_DIR}", flush=True)
    train_docs, val_docs, val_sources = load_documents()
    chars = sum(map(len, train_docs))
    print(f"documents: {len(train_docs):,} train ({chars / 1e6:.1f}M chars), {len(val_docs):,} val", flush=True)
    PREPARED_DIR.mkdir(parents=True, exist_ok=True)
    if not (TOKENIZER_DIR / "tokenizer.pkl").exists():
        t1 = time.time()
        train_tokenizer(train_docs)
        print(f"tokenizer: {VOCAB_SIZE} tokens trained in {time.time() - t1:.1f}s", flush=True)
    tokenizer = Tokenizer.from_directory()
    sizes = {}
    for split, docs in (("train", train_docs), ("val", val_docs)):
        if not (PREPARED_DIR / f"{split}.bin").exists():
            sizes[split] = tokenize_split(tokenizer, docs, split)
        else:
            idx = np.load(PREPARED_DIR / f"{split}.idx.npy")
            sizes[split] = (len(idx) - 1, int(idx[-1]))
    record = {
        "dataset": DATASET, "vocab_size": VOCAB_SIZE, "max_seq_len": MAX_SEQ_LEN,
        "train_documents": sizes["train"][0], "train_tokens": sizes["train"][1],
        "val_documents": sizes["val"][0], "val_tokens": sizes["val"][1],
        "val_sha256": _val_digest(),
        "token_bytes_sha256": _sha256_file(TOKENIZER_DIR / "token_bytes.pt"),
        "val_sources": val_sources,
        "seconds": round(time.time() - t0, 1),
    }
    tmp = PREPARED_DIR / "manifest.json.tmp"
    tmp.write_text(json.dumps(record, indent=2))
    os.replace(tmp, PREPARED_DIR / "manifest.json")
    print(f"tokens: {record['train_tokens']:,} train, {record['val_tokens']:,} val "
          f"in {record['seconds']}s", flush=True)
    print(f"val_sha256: {record['val_sha256']}")
    return record


def _ready_manifest():
    record = manifest()
    if record is None:
        raise HarnessError(f"data not prepared for this workspace: run `python prepare.py` first")
    return record


# ---------------------------------------------------------------------------
# Dataloader: rows of MAX_SEQ_LEN + 1 tokens, each starting with BOS, packed best-fit

def _device_default():
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


class _Packer:
    """Fills rows from a pool of document pieces with no padding.

    For each row: take the longest piece that still fits (with its BOS); when none fits,
    crop a random piece to fill the row exactly and return its rest to the pool, so no
    token is thrown away and long documents spread over many batches instead of filling
    one. Every piece starts with BOS, so every row does too.
    """

    def __init__(self, tokens, offsets, shuffle, seed=1337, pool_size=1000):
        self.tokens, self.offsets = tokens, offsets
        self.shuffle, self.rng = shuffle, random.Random(seed)
        self.pool_size = pool_size
        self.order, self.next_doc, self.epoch = [], 0, 0
        self.lengths, self.pieces = [], []  # sorted lengths; pieces[i] = (start, end) for lengths[i]

    def _refill(self):
        while len(self.lengths) < self.pool_size:
            if self.next_doc >= len(self.order):
                self.order = list(range(len(self.offsets) - 1))
                if self.shuffle:
                    self.rng.shuffle(self.order)
                self.next_doc = 0
                self.epoch += 1
            d = self.order[self.next_doc]
            self.next_doc += 1
            self._add(int(self.offsets[d]), int(self.offsets[d + 1]))

    def _add(self, start, end):
        length = end - start + 1  # + BOS
        i = bisect_right(self.lengths, length)
        self.lengths.insert(i, length)
        self.pieces.insert(i, (start, end))

    def fill(self, row, bos):
        need, pos = len(row), 0
        while pos < need:
            self._refill()
            room = need - pos
            i = bisect_right(self.lengths, room) - 1
            if i >= 0:  # the longest piece that fits whole
                start, end = self.pieces.pop(i)
                self.lengths.pop(i)
            else:  # nothing fits: crop a random piece, keep its rest for later rows
                i = self.rng.randrange(len(self.lengths))
                start, end = self.pieces.pop(i)
                self.lengths.pop(i)
                cut = start + room - 1
                self._add(cut, end)
                end = cut
            row[pos] = bos
            row[pos + 1:pos + 1 + end - start] = self.tokens[start:end]
            pos += 1 + end - start


def _open_split(split):
    if split not in ("train", "val"):
        raise HarnessError(f"split must be 'train' or 'val', not {split!r}")
    dtype = np.uint16 if VOCAB_SIZE <= 65536 else np.uint32
    tokens = np.memmap(PREPARED_DIR / f"{split}.bin", dtype=dtype, mode="r")
    offsets = np.load(PREPARED_DIR / f"{split}.idx.npy")
    if len(offsets) < 2:
        raise HarnessError(f"the {split} split is empty")
    return tokens, offsets


def make_dataloader(tokenizer, B, T, split, device=None):
    """Yields (inputs, targets, epoch) forever: int64 [B, T] tensors on the device.

    Training documents are shuffled each epoch with a fixed seed; validation documents come
    in a fixed order, so every evaluation sees the same tokens.
    """
    _ready_manifest()
    tokens, offsets = _open_split(split)
    packer = _Packer(tokens, offsets, shuffle=(split == "train"))
    bos = tokenizer.get_bos_token_id()
    device = torch.device(device or _device_default())
    use_cuda = device.type == "cuda"
    host = torch.empty((B, T + 1), dtype=torch.int64, pin_memory=use_cuda)
    rows = host.numpy()
    while True:
        for b in range(B):
            packer.fill(rows[b], bos)
        if use_cuda:  # asynchronous copy from pinned memory; fresh buffer so the copy never races
            gpu = host.to(device, non_blocking=True)
            host = torch.empty((B, T + 1), dtype=torch.int64, pin_memory=True)
            rows = host.numpy()
        else:
            gpu = host.to(device, copy=True)
        yield gpu[:, :-1], gpu[:, 1:], packer.epoch


# ---------------------------------------------------------------------------
# Metric: validation bits per byte

def check_val_split():
    """The val split must be the one recorded at prepare time: a mismatch is an error, never a number."""
    record = _ready_manifest()
    actual = _val_digest()
    if actual != record["val_sha256"]:
        raise HarnessError(f"the validation split changed since prepare (sha256 {actual[:12]} != "
                           f"{record['val_sha256'][:12]}); refusing to evaluate")
    return record["val_sha256"]


@torch.no_grad()
def evaluate_bpb(model, tokenizer, batch_size):
    """Bits per byte over EVAL_TOKENS validation tokens at MAX_SEQ_LEN.

    Run by hand, the model is scored here: model(x, y, reduction='none') must return
    per-token losses in nats. Under the engine (AUTORESEARCH_HANDOVER set) the model is handed
    over to the engine's evaluator instead and NaN comes back: the evaluator scores it from
    model(x) -> logits [B, T, vocab] (see score_handover).
    """
    folder = os.environ.get("AUTORESEARCH_HANDOVER")
    if folder:
        hand_over(model, batch_size, Path(folder))
        return float("nan")
    device = next(model.parameters()).device
    check_val_split()
    losses = lambda x, y, first: model(x, y, reduction="none")
    return _score(losses, batch_size, device, Tokenizer.from_directory().get_bos_token_id())[0]


def _score(losses_of, batch_size, device, bos, workers=1):
    """(bits per byte, tokens, bytes): the summed cross-entropy of the logits over the first
    EVAL_TOKENS // MAX_SEQ_LEN validation rows, over the target tokens' UTF-8 bytes, in bits.
    Special tokens (BOS) count in neither sum; the rows scored do not depend on batch_size.
    losses_of(x, y, first) gives each batch's per-token losses; with `workers` > 1 that many
    batches are scored at once, each on one thread (a small model's forward pass uses one core
    far better than several), and summed in order, so the result does not depend on it."""
    token_bytes = get_token_bytes(device)
    rows = max(1, EVAL_TOKENS // MAX_SEQ_LEN)
    print(f"evaluating: {rows * MAX_SEQ_LEN:,} validation tokens", flush=True)
    loader = make_dataloader(_Bos(bos), batch_size, MAX_SEQ_LEN, "val", device=device)
    batches, done = [], 0
    while done < rows:
        x, y, _ = next(loader)
        batches.append((len(batches), x, y, min(batch_size, rows - done)))
        done += batches[-1][-1]

    def one(batch):
        i, x, y, take = batch
        loss = losses_of(x, y, i == 0).reshape(y.shape)[:take].reshape(-1).double()
        nbytes = token_bytes[y[:take].reshape(-1)]
        counted = nbytes > 0
        return torch.where(counted, loss, torch.zeros_like(loss)).sum(), nbytes.sum(), counted.sum()

    if workers > 1:
        with ThreadPoolExecutor(workers) as pool:
            futures = [pool.submit(one, b) for b in batches]
            try:
                parts = [f.result() for f in futures]
            except BaseException:  # a refused batch: the ones not started yet are not scored
                for f in futures:
                    f.cancel()
                raise
    else:
        parts = [one(b) for b in batches]
    nats, nbytes, tokens = (torch.stack(column).sum().item() for column in zip(*parts))
    return nats / (math.log(2) * nbytes), int(tokens), int(nbytes)


class _Bos:
    """What the dataloader needs of a tokenizer: its BOS id (the first special token)."""

    def __init__(self, bos):
        self.bos = bos

    def get_bos_token_id(self):
        return self.bos


def _checked_logits(logits, x, vocab):
    if not isinstance(logits, torch.Tensor) or tuple(logits.shape) != (*x.shape, vocab):
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise HarnessError(f"model(x) must return logits of shape {(*x.shape, vocab)}, got {shape}")
    return logits.float()


# ---------------------------------------------------------------------------
# Hand-over: the trained model leaves the sandbox as data, never as code

HANDOVER_FORMAT = 1
# operations a handed-over program may not use: files, printing, randomness (which would let a
# program behave differently when checked), host synchronisation, uninitialised memory (empty,
# resize: it holds whatever an earlier call left there, a memory that outlives the call), and
# gradients: a program traced through autograd could train on data it carries in the
# evaluator's time, which is not the budget's (the model is scored, not trained, there)
FORBIDDEN_OPS = re.compile(r"from_file|_print|save|load|rand|bernoulli|multinomial|normal|uniform|dropout|"
                           r"exponential|geometric|cauchy|poisson|binomial|_standard_gamma|_sample_dirichlet|"
                           r"rrelu|seed|_local_scalar|_philox|empty|resize|backward")
ALLOWED_TARGET = re.compile(r"torch\.ops\.aten\.[A-Za-z0-9_]+\.[A-Za-z0-9_]+|_operator\.getitem")
# the hand-over's files and the most bytes each may hold. Each is read whole into memory, so each
# is capped before it is opened: the graph's JSON is a few MB even for a large model; 16 GiB of
# tensors is a 4-billion-parameter model in float32, more than one run's budget trains on one
# accelerator, and still within what the evaluator's machine holds
HANDOVER_FILES = {"meta.json": 1 << 16, "program.json": 1 << 28, "weights.pt": 1 << 34, "constants.pt": 1 << 34}
# The check of every scored batch (_scored_log_probs) compares log-probabilities, clamped from
# below at CHECK_FLOOR, to within CHECK_TOL nats. Both are fixed: nothing the program returns
# widens them (a tolerance scaled by the largest logit was widened by one huge logit on a token
# that never occurs). A token whose log-probability is under the floor costs the program 50 nats
# wherever it is the target, so differences below it cannot buy a score. Measured on the CPU:
# the template GPT (fp32 and bf16, 1 and 2 threads, windows L and SSSL) gives bit-identical
# log-probs with its rows permuted and their later tokens changed (difference 0: each row's
# numbers go through the same kernels in the same order). The tolerance is room for a kernel
# that sums in another order: a float32 matmul of width 512 summed differently moves the
# log-probs by up to 4e-4 nats. A program can hide at most CHECK_TOL nats per token from the
# check: 2e-3 nats is about 0.001 bits per byte, below the noise between two runs.
CHECK_FLOOR = -50.0
CHECK_TOL = 2e-3


def hand_over(model, batch_size, folder):
    """Save model(idx) -> logits as a torch.export program (graph as JSON, tensors as tensors)."""
    from torch._export.serde.serialize import serialize

    model = getattr(model, "_orig_mod", model)  # a torch.compile wrapper: export the module itself
    device = next(model.parameters()).device
    example = torch.zeros((batch_size, MAX_SEQ_LEN), dtype=torch.long, device=device)
    t0 = time.time()
    try:
        with torch.autocast(device.type, enabled=False):
            program = torch.export.export(model, (example,))
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise HarnessError(f"cannot hand the model over: torch.export failed ({type(exc).__name__}: {first}); "
                           f"model(idx) must be exportable and return logits") from None
    artifact = serialize(program)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "program.json").write_bytes(artifact.exported_program)
    (folder / "weights.pt").write_bytes(artifact.state_dict)
    (folder / "constants.pt").write_bytes(artifact.constants)
    (folder / "meta.json").write_text(json.dumps({"format": HANDOVER_FORMAT, "batch_size": int(batch_size)}))
    print(f"handed over to the evaluator: torch.export program in {time.time() - t0:.1f}s", flush=True)


def _is_aten(target):
    """Whether `target` names an overload of a registered ATen operation (a name such as
    torch.ops.aten.__getattr__.__call__ has the shape of one but reaches Python methods)."""
    if target == "_operator.getitem":
        return True
    _, _, _, name, overload = target.split(".")
    try:
        packet = getattr(torch.ops.aten, name)
    except (AttributeError, RuntimeError):
        return False
    return isinstance(packet, torch._ops.OpOverloadPacket) and overload in packet.overloads()


def _program_problem(data):
    """Why a handed-over program's graph may not be loaded ("" when it may): anything but plain
    ATen operations, symbolic shapes (their text is evaluated when loaded) or custom objects."""
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for key, value in item.items():
                if key in ("expr_str", "as_expr", "as_custom_obj", "as_graph", "class_fqn"):
                    return f"it uses {key} (symbolic shapes, custom objects or subgraphs)"
                if key == "target":
                    if not isinstance(value, str) or not ALLOWED_TARGET.fullmatch(value) or not _is_aten(value):
                        return f"it calls {str(value)[:80]}, which is not a plain PyTorch (ATen) operation"
                    if FORBIDDEN_OPS.search(value.split(".")[3] if value.count(".") >= 3 else ""):
                        return (f"it calls {value}, which the evaluator does not run (files, printing, "
                                f"randomness, uninitialised memory or gradients)")
                stack.append(value)
        elif isinstance(item, list):
            stack.extend(item)
    return ""


def _signature_problem(inputs, outputs):
    """Why a program with a signature of these kinds is not a pure function model(idx) -> logits
    ("" when it is): it may take the tokens, its parameters, buffers and constants, and return the
    logits, nothing else. A mutation (buffer_mutation, user_input_mutation, ...) is a memory that
    outlives the call: a program that counts its calls can behave one way when it is checked and
    another when it is scored; gradients and effect tokens have no place in scoring."""
    for kind in inputs:
        if kind not in ("user_input", "parameter", "buffer", "tensor_constant", "constant_tensor"):
            return f"its signature takes {kind or 'an unknown input'}: model(idx) must be a pure function of idx"
    for kind in outputs:
        if kind != "user_output":
            return (f"its signature has {kind or 'an unknown output'} (a call changes a tensor that outlives it): "
                    f"model(idx) must be a pure function of idx")
    if inputs.count("user_input") != 1 or len(outputs) != 1:
        return "model(idx) must take one tensor of tokens and return one tensor of logits"
    return ""


def _graph_problem(program):
    """Why a loaded, functionalised program may not run ("" when it may): every call must be a plain
    ATen operation that writes to no tensor and is none of FORBIDDEN_OPS (functionalisation replaces
    operations, so the graph is checked again as it will run)."""
    import operator

    for node in program.graph.nodes:
        target = node.target
        if node.op in ("placeholder", "output") or (node.op == "call_function" and target is operator.getitem):
            continue
        if node.op != "call_function" or not isinstance(target, torch._ops.OpOverload) or target.namespace != "aten":
            return f"it calls {str(target)[:80]}, which is not a plain PyTorch (ATen) operation"
        name = target._schema.name.split("::")[-1]
        if target._schema.is_mutable:
            return f"it calls aten.{name}, which changes a tensor in place: model(idx) must be a pure function of idx"
        if FORBIDDEN_OPS.search(name):
            return (f"it calls aten.{name}, which the evaluator does not run (files, printing, randomness, "
                    f"uninitialised memory or gradients)")
    return ""


def _open_handover(folder, name):
    """The hand-over's file `name` opened for reading, or None when there is none. Only a plain file
    within its cap (HANDOVER_FILES) is opened: a FIFO would hold the evaluator until its timeout, a
    link to /dev/zero would fill its memory. O_NOFOLLOW and O_NONBLOCK keep a file swapped in after
    the first look from doing either (no link is followed, opening a FIFO does not wait), and the
    file that was opened is looked at again."""
    import stat

    path, cap = Path(folder) / name, HANDOVER_FILES[name]
    refused = f"the hand-over's {name} is not a plain file (a link, FIFO or device); refusing it"
    too_large = f"the hand-over's {name} is larger than the {cap >> 20} MiB it may hold; refusing it"
    try:
        info = os.lstat(path)
        if not stat.S_ISREG(info.st_mode):
            raise HarnessError(refused)
        if info.st_size > cap:
            raise HarnessError(too_large)
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise HarnessError(f"the hand-over's {name} cannot be opened ({exc.strerror}); refusing it") from None
    fh = os.fdopen(fd, "rb")
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_size > cap:
        fh.close()
        raise HarnessError(refused if not stat.S_ISREG(info.st_mode) else too_large)
    return fh


def _read_handover_json(folder, name):
    fh = _open_handover(folder, name)
    if fh is None:
        raise HarnessError("no model was handed over (evaluate_bpb did not run, or the run wrote no program)")
    with fh:
        raw = fh.read(HANDOVER_FILES[name] + 1)
    if len(raw) > HANDOVER_FILES[name]:
        raise HarnessError(f"the hand-over's {name} is larger than the {HANDOVER_FILES[name] >> 20} MiB it may hold")
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        raise HarnessError("the hand-over is not in this harness's format") from None


def _load_handover_tensors(folder, name):
    """The tensors of weights.pt or constants.pt ({} when there are none), loaded weights-only (no
    pickled code runs). torch.save stores its records uncompressed; a compressed record is refused
    before anything is loaded, since a few kilobytes of one can unpack to more than the memory of
    the machine. The records must also fit in the file (none may share its bytes with another)."""
    import zipfile

    fh = _open_handover(folder, name)
    if fh is None:
        return {}
    with fh:
        size = os.fstat(fh.fileno()).st_size
        if size == 0:
            return {}
        try:
            records = zipfile.ZipFile(fh).infolist()
        except Exception:
            raise HarnessError(f"the hand-over's {name} is not a file written by torch.save") from None
        if (any(r.compress_type != zipfile.ZIP_STORED or r.file_size != r.compress_size for r in records)
                or sum(r.file_size for r in records) > size):
            raise HarnessError(f"the hand-over's {name} holds compressed records (torch.save writes none); refusing it")
        fh.seek(0)
        try:
            tensors = torch.load(fh, map_location="cpu", weights_only=True)
        except Exception as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:120]
            raise HarnessError(f"the hand-over's {name} holds more than tensors: {first}") from None
    if not isinstance(tensors, dict) or not all(isinstance(t, torch.Tensor) for t in tensors.values()):
        raise HarnessError(f"the hand-over's {name} holds more than tensors")
    return tensors


def load_handover(folder, device):
    """The handed-over program as a callable x -> logits, loaded without running any pickled
    code: the graph is checked and rebuilt from JSON, the tensors are loaded weights-only.

    It must be a pure function of x: no call may change a tensor that outlives it. torch.export
    writes changes to buffers as in-place operations in the graph, not in its signature, so the
    program is functionalised first (in-place operations become plain ones, and whatever a call
    changes besides its own intermediates becomes an output of the signature), then refused if
    its signature has anything but the tokens in and the logits out."""
    import warnings
    from torch._export.serde import schema
    from torch._export.serde.serialize import ExportedProgramDeserializer, _dict_to_dataclass
    from torch.export.passes import move_to_device_pass

    meta = _read_handover_json(folder, "meta.json")
    data = _read_handover_json(folder, "program.json")
    graph_module = data.get("graph_module") if isinstance(data, dict) else None
    if (not isinstance(meta, dict) or meta.get("format") != HANDOVER_FORMAT or not isinstance(graph_module, dict)
            or not isinstance(graph_module.get("graph"), dict) or not isinstance(graph_module.get("signature"), dict)):
        raise HarnessError("the hand-over is not in this harness's format")
    batch = meta.get("batch_size")
    # no more rows than are scored: extra rows would wrap the validation documents around, and a
    # program could copy a row's next tokens from a later copy of the same document
    most = max(1, EVAL_TOKENS // MAX_SEQ_LEN)
    if type(batch) is not int or not 1 <= batch <= most:  # a bool is an int to isinstance
        raise HarnessError(f"the hand-over's batch size {batch!r} is not a whole number from 1 to {most} "
                           f"(the validation rows scored: EVAL_TOKENS // MAX_SEQ_LEN)")
    data["guards_code"] = []  # Python source in the program: never run; the shapes are fixed here
    data["range_constraints"] = {}
    for node in graph_module["graph"].get("nodes") or []:
        if isinstance(node, dict):
            node["metadata"] = {}  # stack traces and module paths: not needed to run it
    signature = graph_module["signature"]
    kinds = [[next(iter(spec), "") if isinstance(spec, dict) else "" for spec in signature.get(key) or []]
             for key in ("input_specs", "output_specs")]
    problem = _program_problem(data) or _signature_problem(*kinds)
    if problem:
        raise HarnessError(f"the model cannot be evaluated: {problem}")
    tensors = [_load_handover_tensors(folder, name) for name in ("weights.pt", "constants.pt")]
    try:
        serialized = _dict_to_dataclass(schema.ExportedProgram, data)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # PyTorch's own deprecation notices
            program = ExportedProgramDeserializer().deserialize(serialized, tensors[0], tensors[1])
            program = move_to_device_pass(program, device)  # tensors and the graph's device arguments
            program = program.run_decompositions({})  # functionalised only: no operation is decomposed
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise HarnessError(f"the handed-over program does not load: {type(exc).__name__}: {first}") from None
    specs = program.graph_signature
    problem = (_signature_problem([s.kind.name.lower() for s in specs.input_specs],
                                  [s.kind.name.lower() for s in specs.output_specs])
               or _graph_problem(program))
    if problem:
        raise HarnessError(f"the model cannot be evaluated: {problem}")
    try:
        module = program.module().to(device)
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise HarnessError(f"the handed-over program does not load: {type(exc).__name__}: {first}") from None
    return module, batch


def warm():
    """What the evaluator does while the trainer still runs (autoresearch.evaluator --wait): the
    imports that loading a hand-over needs (a second or so), none of which depends on it. The
    validation split is checked at scoring time, once."""
    import torch._export.serde.serialize  # noqa: F401
    import torch.export.passes  # noqa: F401  (pyflakes: imported for its cost, not its name)


def score_handover(folder, device=None):
    """The evaluator's side: the validation record of a handed-over model.

    The program must be a pure function (load_handover), and every scored batch is checked with
    one more call (_scored_log_probs): the log-probabilities of each row's prefix must not change
    where only later tokens, or other rows, changed (a model that reads the tokens it is asked to
    predict would otherwise score near zero). The first batch is also scored twice: the same
    input must give the same log-probabilities."""
    device = torch.device(device or _device_default())
    val_sha = check_val_split()
    token_bytes = get_token_bytes("cpu")
    bos = token_bytes.numel() - len(SPECIAL_TOKENS)  # the first special token; see train_tokenizer
    vocab = token_bytes.numel()
    t0 = time.perf_counter()
    module, batch = load_handover(folder, device)
    loaded = time.perf_counter() - t0

    def losses(x, y, first):  # the cross-entropy of the logits, computed here, never by the program
        with torch.inference_mode():  # per thread, like no_grad
            return -_scored_log_probs(module, x, vocab, again=first).of(y)

    # on the CPU, one batch per core at once, each on one thread (the trainer has exited: every
    # core it had is the evaluator's); an accelerator takes the batches one after the other
    workers = torch.get_num_threads() if device.type == "cpu" else 1
    if workers > 1:
        torch.set_num_threads(1)
    t0 = time.perf_counter()
    try:
        bpb, tokens, nbytes = _score(losses, batch, device, bos, workers)  # losses: no autograd (inference_mode)
    except _ProgramFailed as failed:  # raised by the program itself; the harness's own errors go as they are
        raise HarnessError(_failure(module, failed.__cause__, batch, vocab, device)) from None
    return {"val_bpb": bpb, "tokens": tokens, "bytes": nbytes, "val_sha256": val_sha, "batch_size": batch,
            "load_seconds": round(loaded, 3), "score_seconds": round(time.perf_counter() - t0, 3)}


def _failure(module, exc, batch, vocab, device):
    """What to say of a program that raised while it was scored. Its message holds whatever the
    program put there (a value computed from the batch's tokens, as an index out of range, is
    the validation data read out), so the message is told only when the program fails the same
    way on random tokens, which carry none; otherwise only the kind of error."""
    rng = torch.Generator().manual_seed(int.from_bytes(os.urandom(8), "little"))
    x = torch.randint(0, vocab, (batch, MAX_SEQ_LEN), generator=rng).to(device)
    try:
        with torch.inference_mode():
            module(x)
    except Exception as again:
        first = (str(again).strip().splitlines() or [""])[0][:200]
        return f"the model fails on any input: {type(again).__name__}: {first}"
    return (f"the model fails on validation batches only, with {type(exc).__name__} (its message is withheld: "
            f"it could carry validation tokens; random tokens of the same shape run)")


class _ProgramFailed(Exception):
    """An exception the handed-over program raised (see _failure), told from the harness's own."""


def _logits(module, x, vocab):
    """model(x) in float32. The program gets a copy of x, which shares its memory with the targets."""
    try:
        out = module(x.clone())
    except Exception as exc:
        raise _ProgramFailed() from exc
    return _checked_logits(out, x, vocab)


class _LogProbs:
    """The log-probabilities of one call's logits, kept as the logits, each position's largest
    logit (`top`) and the log-sum-exp of the logits less it (`rest`): a log-probability is
    (logit - top) - rest, made only where it is read.

    The largest logit is taken off first: a log-probability taken as logsumexp(logits) - logit
    loses everything to rounding when the logits are huge (at 2**30 float32 holds only multiples
    of 128, the log-sum-exp rounds back onto the largest logit and the loss came out 0), whereas
    logit - top is exact where it matters and `rest` lies between 0 and log(vocab): the score is
    that of the distribution the numbers describe, whatever constant they carry. A NaN or +inf
    logit makes its position's `rest` NaN, and amin catches -inf: two reductions, where
    isfinite(logits).all() would cost far more."""

    def __init__(self, logits):
        self.logits = logits
        self.top = logits.amax(dim=-1)
        self.rest = (logits - self.top.unsqueeze(-1)).exp_().sum(dim=-1).log_()

    def finite(self):
        return torch.isfinite(self.rest).all() & torch.isfinite(self.logits.amin())

    def of(self, y):
        """The log-probability of each position's token in y."""
        return (self.logits.gather(-1, y.unsqueeze(-1)).squeeze(-1) - self.top) - self.rest

    def clamped(self, index):
        """All log-probabilities at `index` (a row, a row's prefix), clamped from below at
        CHECK_FLOOR: a new tensor, made one pass at a time in place."""
        return ((self.logits[index] - self.top[index].unsqueeze(-1)).sub_(self.rest[index].unsqueeze(-1))
                .clamp_min_(CHECK_FLOOR))


def _largest_change(a, b):
    """The largest difference between two clamped log-probability tensors (in place in a)."""
    return a.sub_(b).abs_().amax()


def _scored_log_probs(module, x, vocab, again=False):
    """The log-probabilities of model(x) (_LogProbs), returned only after one more call has
    checked them.

    The check call gets a variant of x that the program cannot foresee: its rows in a random
    order, and each row's tokens from a random cut on replaced by other tokens (each differs
    from the token it replaces, so the one right at the cut does). A cut may fall past the last
    token: that row keeps its tokens and only moves, so its last position, which no other cut
    compares, is checked against the other rows too. The log-probabilities of each
    row before its cut must be the same in both calls: a program whose logits look at the tokens
    they predict (not causal) or at other rows is refused, and since every scored batch is
    checked, so is one that behaves differently when it is checked. The randomness comes from
    os.urandom for each batch: train.py can read this file, so a fixed seed would tell it where
    the cuts fall. With `again` (the first batch), x is also scored a second time and must give
    the same log-probabilities. The cost: one more forward per batch, and the comparison of each
    row's prefix only (the positions after its cut are not compared, so not computed)."""
    B, T = x.shape
    scored = _LogProbs(_logits(module, x, vocab))
    finite = scored.finite()
    rng = torch.Generator().manual_seed(int.from_bytes(os.urandom(8), "little"))
    order = torch.randperm(B, generator=rng)
    cuts = torch.randint(1, T + 1, (B,), generator=rng)  # T: the whole row compared, moved only
    later = (torch.arange(T)[None, :] >= cuts[:, None]).to(x.device)  # [B, T]: the tokens replaced, by row of x
    other = (x + torch.randint(1, vocab, (B, T), generator=rng).to(x.device)) % vocab
    variant = torch.where(later, other, x)[order.to(x.device)]  # its row i is row order[i] of x, changed
    checked = _logits(module, variant, vocab)  # compared before the cuts only
    finite &= torch.isfinite(checked.amax()) & torch.isfinite(checked.amin())
    worst = torch.zeros((), device=x.device)
    for i, (source, cut) in enumerate(zip(order.tolist(), cuts[order].tolist())):
        prefix = _LogProbs(checked[i, :cut]).clamped(slice(None))
        worst = torch.maximum(worst, _largest_change(prefix, scored.clamped((source, slice(None, cut)))))
    del checked
    changed = torch.zeros((), device=x.device)
    if again:
        repeated = _LogProbs(_logits(module, x, vocab))
        finite &= repeated.finite()
        for i in range(B):
            changed = torch.maximum(changed, _largest_change(repeated.clamped(i), scored.clamped(i)))
        del repeated
    finite, worst, changed = torch.stack([finite.float(), worst, changed]).tolist()
    if not finite:
        raise HarnessError("the model's logits hold NaN or infinity; refusing to score it")
    if not changed <= CHECK_TOL:
        raise HarnessError("the model's logits for the same tokens changed from one call to the next "
                           "(it is not a pure function); refusing to score it")
    if not worst <= CHECK_TOL:
        raise HarnessError("the model is not causal, or its rows are not independent: the logits of a row's "
                           "prefix changed with its later tokens or with the other rows; refusing to score it")
    return scored


# ---------------------------------------------------------------------------

def main():
    parser = argparse.ArgumentParser(description="Prepare this workspace's data and tokenizer (idempotent).")
    parser.add_argument("--json", action="store_true", help="print the manifest as JSON at the end")
    args = parser.parse_args()
    try:
        record = prepare()
    except HarnessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("interrupted: run `python prepare.py` again to resume", file=sys.stderr)
        sys.exit(130)
    if args.json:
        print(json.dumps(record))


if __name__ == "__main__":
    main()
