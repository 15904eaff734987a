"""
Data for nanogrow: a text corpus tokenized with tiktoken into nanoGPT-style memmaps, then batches.

    python data.py                                   # offline default: stdlib .py files, byte tokenizer
    python data.py --source shakespeare --tokenizer gpt2   # downloads (needs the internet once)
    python data.py --source my_texts/ --tokenizer cl100k_base

writes data/<source>_<tokenizer>/{train.bin, val.bin, meta.json}, nanoGPT style (README: "Data").
"""
import argparse
import gzip
import itertools
import json
import os
import sys
import sysconfig
import time
import urllib.request

import numpy as np
import tiktoken
import torch

SHAKESPEARE_URL = 'https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt'
EOT = '<|endoftext|>'
DEFAULT = os.path.join('data', 'stdlib_byte')  # grow.py's --data: prepared offline on first use


class InputError(Exception):
    """Bad input (a flag or a file): data.py and grow.py print it as one line and exit with status 2."""


# ----------------------------------------------------------------------------- tokenizers

def get_tokenizer(name):
    """'byte': an offline tiktoken Encoding whose ranks are the 256 single bytes, plus <|endoftext|> = 256.
    Any other name is a tiktoken encoding ('gpt2', 'cl100k_base', ...), downloaded once and cached."""
    if name == 'byte':
        return tiktoken.Encoding(
            name='byte',
            # GPT-2's pre-tokenizer split; with byte ranks only it just bounds the pieces' length
            pat_str=r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""",
            mergeable_ranks={bytes([i]): i for i in range(256)},
            special_tokens={EOT: 256})
    try:
        return tiktoken.get_encoding(name)
    except ValueError:
        names = ', '.join(tiktoken.list_encoding_names())
        raise InputError(f"--tokenizer {name!r} is unknown; valid: byte, {names}")
    except Exception as e:  # tiktoken fetches the BPE file over the network on first use
        raise InputError(f"--tokenizer {name}: could not load it ({type(e).__name__}); it is downloaded "
                         f"once, so this needs the internet; use --tokenizer byte offline")


def model_vocab(n_vocab):
    """The model's vocabulary: the tokenizer's ids, then [MASK], padded to a multiple of 64 (fast matmuls)."""
    return (n_vocab + 1 + 63) // 64 * 64


# ----------------------------------------------------------------------------- sources: a document at a time

# files of records with a text field, read like hf: datasets
LOCAL_RECORDS = ('.jsonl', '.jsonl.gz', '.parquet')


def documents(source, split='train', text_field='text'):
    """The documents of a source, one string at a time (never the whole corpus in memory): 'stdlib',
    'shakespeare', 'hf:NAME[:CONFIG]' (a Hugging Face dataset, streamed), local .jsonl / .jsonl.gz / .parquet
    files or folders of them (the same record path as hf:), or text files and folders of them."""
    if source.startswith('hf:'):
        yield from hf_documents(source[3:], split, text_field)
        return
    if source == 'shakespeare':
        try:
            with urllib.request.urlopen(SHAKESPEARE_URL, timeout=30) as r:
                yield r.read().decode('utf-8')
            return
        except OSError as e:
            raise InputError(f"--source shakespeare: download from {SHAKESPEARE_URL} failed ({e}); "
                             f"offline, use --source stdlib or a local text file")
    if source == 'stdlib':  # the running Python's own library: real text found on every machine
        root = sysconfig.get_paths()['stdlib']
        paths = sorted(os.path.join(d, f) for d, dirs, files in os.walk(root) if 'site-packages' not in d
                       for f in files if f.endswith('.py'))
    elif os.path.isdir(source):
        paths = sorted(os.path.join(d, f) for d, dirs, files in os.walk(source) for f in files)
    elif os.path.isfile(source):
        paths = [source]
    else:
        raise InputError(f"--source {source!r} is neither stdlib, shakespeare, hf:NAME, a file nor a folder")
    records = [p for p in paths if p.endswith(LOCAL_RECORDS)]
    if records and len(records) < len(paths):
        raise InputError(f"--source {source}: mixes record files ({', '.join(LOCAL_RECORDS)}) with other "
                         f"files; give a folder of one kind")
    for p in paths:
        if records:
            yield from record_documents(p, text_field)
        else:
            with open(p, 'rb') as f:
                yield f.read().decode('utf-8', errors='replace')


def record_documents(path, text_field):
    """The text field of each record of a local .jsonl, .jsonl.gz or .parquet file, in order."""
    if path.endswith('.parquet'):
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise InputError(f"{path}: reading parquet needs pyarrow: pip install pyarrow (or datasets)")
        table = pq.ParquetFile(path)
        if text_field not in table.schema_arrow.names:
            fields = ', '.join(table.schema_arrow.names)
            raise InputError(f"{path}: no field {text_field!r} (fields: {fields}); choose one with "
                             f"--text_field")
        for batch in table.iter_batches(columns=[text_field], batch_size=1024):
            yield from (t or '' for t in batch.column(0).to_pylist())
        return
    with (gzip.open if path.endswith('.gz') else open)(path, 'rt', encoding='utf-8') as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                record = json.loads(line)
                if text_field not in record:
                    raise InputError(f"{path}, line {n}: no field {text_field!r} (fields: "
                                     f"{', '.join(record)}); choose one with --text_field")
                yield record[text_field]


def hf_documents(name, split, text_field):
    """A Hugging Face dataset, streamed: NAME or NAME:CONFIG, e.g. HuggingFaceFW/fineweb-edu:sample-10BT."""
    try:
        import datasets
    except ImportError:
        raise InputError("--source hf:... reads Hugging Face datasets: pip install datasets")
    path, _, config = name.partition(':')
    try:
        records = iter(datasets.load_dataset(path, config or None, split=split, streaming=True))
        first = next(records)
    except StopIteration:
        return
    except Exception as e:  # unknown name, no network, a split or config that does not exist
        raise InputError(f"--source hf:{name} (split {split}) cannot be read: {type(e).__name__}: "
                         f"{str(e).splitlines()[0][:160] if str(e) else ''}")
    if text_field not in first:
        raise InputError(f"--source hf:{name}: no field {text_field!r} (fields: {', '.join(first)}); "
                         f"choose one with --text_field")
    yield first[text_field]
    for record in records:
        yield record[text_field]


# ----------------------------------------------------------------------------- tokenizing, streamed to disk

def prepare(source='stdlib', tokenizer='byte', out_dir=None, max_bytes=None, verbose=True, split='train',
            text_field='text', max_tokens=None, chunk_bytes=16 << 20, val_tokens=10_000_000):
    """Tokenize a source into out_dir/{train,val}.bin and meta.json; returns out_dir. Streamed: chunks of
    about `chunk_bytes` of text, tokenized on threads, appended to the .bin files (memory bounded by a chunk).
    Validation: every 10th document (a sample of the whole corpus, not its tail) until it holds `val_tokens`,
    then every document trains; with none (under 10 documents, or --max_tokens first), the last 10% of tokens.
    Written as .tmp<process id> files renamed at the end, meta.json last: an interrupted preparation leaves no
    meta.json (not a corpus) and no .tmp; two runs preparing one folder at once never write the same file."""
    name = source if source in ('stdlib', 'shakespeare') else \
        source[3:].replace('/', '_').replace(':', '_') if source.startswith('hf:') else \
        os.path.basename(os.path.normpath(source))
    out_dir = out_dir or os.path.join('data', f'{name}_{tokenizer}')
    enc = get_tokenizer(tokenizer)
    eot = enc.encode_single_token(EOT)
    dtype = np.uint16 if enc.n_vocab <= 2 ** 16 else np.uint32
    docs = documents(source, split, text_field)
    first = next(docs, None)  # a source that cannot be read fails here, before anything is written
    if first is None:
        raise InputError(f"--source {source!r} holds no text")
    os.makedirs(out_dir, exist_ok=True)
    if os.path.exists(os.path.join(out_dir, 'meta.json')):  # start afresh: not a corpus until the end
        os.remove(os.path.join(out_dir, 'meta.json'))
    tmp = {f: os.path.join(out_dir, f'{f}.tmp{os.getpid()}') for f in ('train.bin', 'val.bin', 'meta.json')}
    try:
        counts, status = dict(train=0, val=0, docs=0, chars=0, peak_chunk=0), StatusLine(verbose, max_tokens)
        with open(tmp['train.bin'], 'wb') as train, open(tmp['val.bin'], 'wb') as val:
            for chunk in chunks(itertools.chain([first], docs), chunk_bytes, max_bytes):
                counts['peak_chunk'] = max(counts['peak_chunk'], sum(map(len, chunk)))
                for ids in enc.encode_ordinary_batch(chunk, num_threads=os.cpu_count() or 1):
                    to_val = counts['docs'] % 10 == 9 and counts['val'] < val_tokens
                    arr = np.array(ids + [eot], dtype=dtype)
                    if max_tokens is not None:
                        arr = arr[:max(0, max_tokens - counts['train'] - counts['val'])]
                    arr.tofile(val if to_val else train)
                    counts['val' if to_val else 'train'] += len(arr)
                    counts['docs'] += 1
                counts['chars'] += sum(map(len, chunk))
                status.show(counts)
                if max_tokens is not None and counts['train'] + counts['val'] >= max_tokens:
                    break
        if counts['train'] + counts['val'] == 0:
            raise InputError(f"--source {source!r} holds no text")
        if counts['val'] == 0:  # too few documents to sample (or a cap came first): the last 10% validate
            split_tokens(tmp, dtype, counts)
        meta = dict(source=source, split=split if source.startswith('hf:') else None, text_field=text_field,
                    tokenizer=tokenizer, vocab_size=enc.n_vocab, dtype=np.dtype(dtype).name, eot_id=eot,
                    mask_id=enc.n_vocab, n_ordinary=min(map(enc.encode_single_token, enc.special_tokens_set)),
                    documents=counts['docs'], train_tokens=counts['train'], val_tokens=counts['val'],
                    chunk_bytes=chunk_bytes, peak_chunk_chars=counts['peak_chunk'])
        with open(tmp['meta.json'], 'w') as f:
            json.dump(meta, f, indent=1)
        for fname, path in tmp.items():  # meta.json last: its presence means "complete"
            os.replace(path, os.path.join(out_dir, fname))
    finally:  # done or interrupted, none of this process's .tmp files stays behind
        for path in filter(os.path.exists, tmp.values()):
            os.remove(path)
    if verbose:
        print(f"\nprepared {out_dir}: {counts['train']:,} train and {counts['val']:,} val tokens from "
              f"{counts['docs']:,} documents ({tokenizer}, {source})")
    return out_dir


def chunks(docs, chunk_bytes, max_bytes=None):
    """Lists of consecutive documents of about chunk_bytes characters (a longer document is a chunk of its
    own); with max_bytes, the text stops there."""
    chunk, size, total = [], 0, 0
    for doc in docs:
        if max_bytes is not None:
            doc = doc[:max_bytes - total]
            total += len(doc)
        if chunk and size + len(doc) > chunk_bytes:
            yield chunk
            chunk, size = [], 0
        chunk.append(doc)
        size += len(doc)
        if max_bytes is not None and total >= max_bytes:
            break
    if chunk:
        yield chunk


def split_tokens(tmp, dtype, counts):
    """No document was sampled for validation: move the last 10% of the train tokens to val."""
    tokens = np.fromfile(tmp['train.bin'], dtype=dtype)
    cut = int(0.9 * len(tokens))
    tokens[cut:].tofile(tmp['val.bin'])
    tokens[:cut].tofile(tmp['train.bin'])
    counts['train'], counts['val'] = cut, len(tokens) - cut


class StatusLine:
    """One line, rewritten: documents, tokens, MB/s and (with --max_tokens) the ETA."""

    def __init__(self, enabled, max_tokens):
        self.enabled, self.max_tokens, self.start = enabled, max_tokens, time.perf_counter()

    def show(self, counts):
        if not self.enabled:
            return
        seconds = max(time.perf_counter() - self.start, 1e-9)
        tokens = counts['train'] + counts['val']
        eta = f", eta {(self.max_tokens - tokens) * seconds / max(tokens, 1):.0f}s" if self.max_tokens else ""
        rate = counts['chars'] / seconds / 1e6
        print(f"\r{counts['docs']:,} documents, {tokens:,} tokens, {rate:.1f} MB/s{eta}", end='', flush=True)


# ----------------------------------------------------------------------------- loading and batches

def load(data_dir):
    """(meta, train memmap, val memmap) of a prepared folder, with every inconsistency named. The default
    folder is prepared on first use (offline: stdlib + byte)."""
    meta_path = os.path.join(data_dir, 'meta.json')
    if data_dir == DEFAULT and not os.path.isfile(meta_path):
        print(f"{data_dir} not found: preparing it (stdlib .py files, byte tokenizer, offline)")
        prepare('stdlib', 'byte', data_dir, verbose=False)
    elif os.path.isfile(data_dir):  # a corpus file given where its prepared folder belongs
        name = os.path.join('data', os.path.basename(os.path.normpath(data_dir)) + '_byte')
        raise InputError(f"--data {data_dir} is a file; --data takes a folder prepared by data.py: run "
                         f"`python data.py --source {data_dir}` (it writes {name}), then --data {name}")
    elif not os.path.isdir(data_dir):
        raise InputError(f"--data {data_dir}: no such folder; prepare one with `python data.py --source TEXT "
                         f"--out_dir {data_dir}`")
    if not os.path.isfile(meta_path):
        raise InputError(f"--data {data_dir}: no meta.json there; prepare it with `python data.py`")
    with open(meta_path) as f:
        meta = json.load(f)
    splits = []
    for split in ('train', 'val'):
        path = os.path.join(data_dir, f'{split}.bin')
        itemsize = np.dtype(meta['dtype']).itemsize
        if not os.path.isfile(path):
            raise InputError(f"{path}: missing; prepare the folder again with `python data.py`")
        if os.path.getsize(path) == 0:
            raise InputError(f"{path}: holds no tokens; prepare the folder again with `python data.py`")
        if os.path.getsize(path) % itemsize:
            raise InputError(f"{path}: {os.path.getsize(path)} bytes is not a multiple of its dtype "
                            f"{meta['dtype']} ({itemsize} bytes); the file is damaged, prepare it again")
        splits.append(np.memmap(path, dtype=meta['dtype'], mode='r'))
    return meta, splits[0], splits[1]


EVAL_SEED = 1234  # the evaluation batches' own seed, apart from every run's


class Batches:
    """Random windows of one split. GPT: (x, y) with y = x shifted by one. BERT: (x masked, labels).

    The numpy Generator is the whole state: checkpoints save `rng.bit_generator.state`, so a resumed
    run draws exactly the batches the uninterrupted run would have."""

    def __init__(self, tokens, kind, meta, seed, mlm_prob=0.15):
        self.tokens, self.kind, self.meta, self.mlm_prob = tokens, kind, meta, mlm_prob
        self.rng = np.random.default_rng(seed)

    def next(self, batch_size, seq_len):
        need = seq_len + (self.kind == 'gpt')
        if len(self.tokens) < need:
            raise InputError(f"the data split has {len(self.tokens)} tokens, fewer than one window of {need}")
        starts = self.rng.integers(0, len(self.tokens) - need + 1, size=batch_size)
        w = np.stack([self.tokens[s:s + need] for s in starts]).astype(np.int64)
        if self.kind == 'gpt':  # (contiguous: a strided view would not reach the device asynchronously)
            x, y = np.ascontiguousarray(w[:, :-1]), np.ascontiguousarray(w[:, 1:])
            return torch.from_numpy(x), torch.from_numpy(y)
        return mask_tokens(w, self.rng, self.meta, self.mlm_prob)


def mask_tokens(x, rng, meta, mlm_prob=0.15):
    """BERT's masking: mlm_prob of the positions are predicted; of those 80% become [MASK], 10% a random
    ordinary token, 10% stay. Labels hold the original id there and -100 (ignored) elsewhere."""
    chosen = rng.random(x.shape) < mlm_prob
    labels = np.where(chosen, x, -100)
    r = rng.random(x.shape)
    x = np.where(chosen & (r < 0.8), meta['mask_id'], x)
    x = np.where(chosen & (r >= 0.8) & (r < 0.9), rng.integers(0, meta['n_ordinary'], size=x.shape), x)
    return torch.from_numpy(x), torch.from_numpy(labels)


def masked_positions(y, kind):
    """BERT: the flat indices of a batch's predicted positions (labels not -100), found on the host, where
    they cost no wait for the device; GPT: None (it predicts every position)."""
    return torch.from_numpy(np.flatnonzero(y.numpy() != -100)) if kind == 'bert' else None


def eval_batches(batches, n, batch_size, seq_len):
    """A fixed list of n batches of the validation split's `batches` (seeded with EVAL_SEED, their own): every
    method and every evaluation sees the same data."""
    return [batches.next(batch_size, seq_len) for _ in range(n)]


def inspect(data_dir, n_tokens=300):
    """What a prepared folder holds: meta.json's counts and the start of its validation split, decoded."""
    meta, train, val = load(data_dir)
    print(f"{data_dir}: {len(train):,} train and {len(val):,} val tokens ({meta['dtype']}), tokenizer "
          f"{meta['tokenizer']}, source {meta['source']}" + (f" ({meta.get('documents'):,} documents)"
                                                            if meta.get('documents') else ""))
    print(get_tokenizer(meta['tokenizer']).decode(val[:n_tokens].tolist()))
    return meta


def main(argv=None):
    p = argparse.ArgumentParser(description='Tokenize a corpus into data/<name>/ for grow.py.')
    p.add_argument('--source', default='stdlib', help="stdlib (offline default) | shakespeare | "
                   "hf:NAME[:CONFIG] (a Hugging Face dataset, streamed; needs datasets) | PATH: a text file, "
                   ".jsonl, .jsonl.gz, .parquet, or a folder of them")
    p.add_argument('--split', default='train', help="hf: the dataset split to read")
    p.add_argument('--text_field', default='text', help="hf:, .jsonl, .parquet: the field holding the text")
    p.add_argument('--tokenizer', default='byte', help="byte (offline default) | gpt2 | any tiktoken name")
    p.add_argument('--out_dir', default=None, help="default data/<source>_<tokenizer>")
    p.add_argument('--max_bytes', type=int, default=None, help="cap the text read, in characters (tests)")
    p.add_argument('--max_tokens', type=int, default=None, help="cap the tokens written (train and val)")
    p.add_argument('--inspect', default=None, metavar='DIR', help="check a prepared folder: its counts and "
                   "the start of its validation split, decoded; prepares nothing")
    args = p.parse_args(argv)
    try:
        if args.inspect:
            return inspect(args.inspect)
        for k in ('max_bytes', 'max_tokens'):
            if getattr(args, k) is not None and getattr(args, k) <= 0:
                raise InputError(f"--{k} must be positive, got {getattr(args, k)}")
        prepare(args.source, args.tokenizer, args.out_dir, args.max_bytes, split=args.split,
                text_field=args.text_field, max_tokens=args.max_tokens)
    except InputError as e:
        print(f"\ndata.py: error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == '__main__':
    main()
