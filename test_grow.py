"""nanogrow's tests, by feature: CPU only, tiny models, fixed seeds. Run: python -m pytest -q test_grow.py

Sections: helpers; data; models; growth operators; training and checkpoints; schedules; Apollo; CompoundGrow;
compare mode; DDP and compile; export; bad input."""
import copy
import csv
import importlib.machinery
import importlib.util
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import time
import types
from dataclasses import asdict, replace

import numpy as np
import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

import bench
import model as model_lib
import compare
import data
import flags
import export
import finetune
import grow
import runtime
import sample
import schedule
from model import (Config, Transformer, carry_moments, deepen, flops_per_step, growth_map, make_optimizer,
                   map_layers, middle_copy, new_block, path_scales, rope_tables, rotate, widen)
from schedule import depth_probabilities, draw_depth, random_path


# ----------------------------------------------------------------------------- helpers

# optional: the plots are checked where it is
HAVE_MATPLOTLIB = importlib.util.find_spec('matplotlib') is not None
TINY = ['--n_layer', '2', '--n_embd', '32', '--n_head', '2', '--block_size', '32', '--batch_size', '8',
        '--eval_batches', '2', '--sample_tokens', '0', '--size', 'tiny', '--device', 'cpu',
        '--method', 'scratch', '--optimizer', 'adamw']


@pytest.fixture(scope='session')
def corpus(tmp_path_factory):
    """A capped stdlib corpus with the offline byte tokenizer (no network)."""
    return data.prepare('stdlib', 'byte', str(tmp_path_factory.mktemp('data') / 'stdlib'), max_bytes=400_000,
                        verbose=False)


def command(argv):
    """The main that `python grow.py ARGV` runs: grow.py's, or the script of its mode (grow.MODES)."""
    names = {a.split('=')[0] for a in argv if isinstance(a, str)}
    script = next((script for flag, script in grow.MODES if f'--{flag}' in names), 'grow.py')
    scripts = {'grow.py': grow, 'compare.py': compare, 'sample.py': sample, 'export.py': export}
    return scripts[script].main


def run(corpus, out, *argv):
    argv = TINY + ['--data', corpus, '--out_dir', str(out)] + [str(a) for a in argv]
    return command(argv)(argv)


def records(out, kind):
    with open(os.path.join(out, 'log.jsonl')) as f:
        return [r for r in map(json.loads, f) if r['type'] == kind]


def strip(rs):
    """Log records without their wall-clock fields (the only ones a rerun may change)."""
    return [{k: v for k, v in r.items() if k not in ('time', 'tok_per_s')} for r in rs]


def assert_resumes(corpus, tmp_path, argv, stop_at):
    """Stopped after step `stop_at` and resumed, a run logs exactly what the uninterrupted run logs."""
    run(corpus, tmp_path / 'full', *argv)
    run(corpus, tmp_path / 'half', *argv, '--stop_at', stop_at)
    assert torch.load(tmp_path / 'half' / 'ckpt.pt', weights_only=False)['run']['step'] == stop_at
    grow.main(['--resume', '--out_dir', str(tmp_path / 'half')])
    for kind in ('train', 'skip', 'growth', 'stage', 'eval'):
        assert strip(records(tmp_path / 'half', kind)) == strip(records(tmp_path / 'full', kind)), kind
    assert records(tmp_path / 'full', 'train')  # (not two empty logs)


CPU = runtime.Runtime('cpu', 'float32')


# the model options beside the defaults: every growth guarantee must hold under each of them
# (CompleteP at m = 1/2: its depth rule at the base depth, muP's width rules at half the base width)
OPTIONS = {'rope': dict(pos='rope'), 'other LN': dict(pre_ln='flip'),
           'CompleteP': dict(base_depth=3, base_width=64)}


def small(kind, **kw):
    if kw.get('pre_ln') == 'flip':  # the LayerNorm placement the kind does not use by default
        kw['pre_ln'] = kind != 'gpt'
    return Config(**{**dict(kind=kind, vocab_size=320, block_size=16, n_layer=3, n_head=2, n_embd=32,
                            d_ff=64), **kw})


def unshared_copy(shared, how='interpolate'):
    """The model owning one block per executed layer that computes what `shared` computes at depth n_layer:
    block t is a copy of the shared block that layer t runs."""
    unshared = Transformer(replace(shared.cfg, n_blocks=shared.cfg.n_layer))
    unshared.load_state_dict({k: v for k, v in shared.state_dict().items() if not k.startswith('blocks.')},
                             strict=False)
    for t, i in enumerate(map_layers(len(shared.blocks), shared.cfg.n_layer, how)):
        unshared.blocks[t].load_state_dict(shared.blocks[i].state_dict())
    return unshared


def blocks_equal(a, b):
    return all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))


def perturbed(kind, **kw):
    torch.manual_seed(0)
    m = Transformer(small(kind, **kw))
    for p in m.parameters():  # away from init: LayerNorm gains and biases no longer 1 and 0
        p.data += 0.05 * torch.randn_like(p)
    return m.eval()  # dropout is off anyway; BERT sees the same masked input below


def outputs(m, x):
    return m(x, x)[0] if m.cfg.kind == 'gpt' else m(x)[0]


def fails(capsys, argv, *needles, main=None):
    """Bad input: one line on stderr naming what is wrong (the needles), exit status 2."""
    with pytest.raises(SystemExit) as e:
        (main or command(argv))(argv)
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and len(err.splitlines()) == 1, err
    for n in needles:
        assert n in err, err


DOCS = [f"document {i}: " + "the quick brown fox jumps over the lazy dog. " * (i + 1) + "héllo ✓"
        for i in range(23)]


def write_texts(folder):
    """The documents as text files, one each, in folder/text (no optional package needed)."""
    os.makedirs(folder / 'text')
    for i, d in enumerate(DOCS):
        (folder / 'text' / f'doc_{i:03d}.txt').write_text(d, encoding='utf-8')


def write_records(folder):
    """The same documents as text files, .jsonl, .jsonl.gz and .parquet (three files of records)."""
    import gzip
    import pyarrow as pa
    import pyarrow.parquet as pq
    write_texts(folder)
    lines = [json.dumps(dict(id=i, text=d)) + '\n' for i, d in enumerate(DOCS)]
    (folder / 'records.jsonl').write_text(''.join(lines[:10]), encoding='utf-8')
    with gzip.open(folder / 'records.jsonl.gz', 'wt', encoding='utf-8') as f:
        f.write(''.join(lines[10:]))
    os.makedirs(folder / 'records')
    (folder / 'records' / 'a.jsonl').write_text(''.join(lines[:10]), encoding='utf-8')
    pq.write_table(pa.table(dict(text=DOCS[10:])), folder / 'records' / 'b.parquet')


def prepared(out):
    meta, train, val = data.load(str(out))
    return meta, train.tolist(), val.tolist()


class FixedPredictions(torch.nn.Module):
    """Returns logits whose argmax is `guesses` (shaped like the real model's output) and a loss of 2."""

    def __init__(self, guesses):
        super().__init__()
        self.guesses = guesses

    def forward(self, x, y, **depth):
        return torch.nn.functional.one_hot(self.guesses, 8).float(), torch.tensor(2.0)


def grow_process(corpus, out, *argv):
    """grow.py in a child process (the same threads for every run of a test: results are bit-exact)."""
    cmd = [sys.executable, 'grow.py', *TINY, '--data', corpus, '--out_dir', str(out), *map(str, argv)]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=os.path.dirname(os.path.abspath(__file__)),
                            env={**os.environ, 'OMP_NUM_THREADS': '1'})


def fake_run(folder, flops, losses, growth_at=None, tokens=1000):
    os.makedirs(folder)
    with open(os.path.join(folder, 'log.jsonl'), 'w') as f:
        for i, (fl, loss) in enumerate(zip(flops, losses)):
            row = dict(type='eval', step=i, flops=fl, time=fl / 10, tokens=tokens * i, val_loss=loss)
            f.write(json.dumps(row) + '\n')
        if growth_at is not None:
            f.write(json.dumps(dict(type='growth', step=1, flops=growth_at, time=growth_at / 10)) + '\n')
        f.write(json.dumps(dict(type='stage', step=len(flops), micro_batches=10, mean_depth=3.0)) + '\n')


def ddp_worker(rank, world, port, argv, out):
    """One torchrun-like process: the environment torchrun would set, then grow.py's main."""
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR='127.0.0.1',
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    summary = grow.main(argv)
    torch.save(dict(state=summary['model'].state_dict(), depths=summary['depths'], paths=summary['paths'],
                    val=summary['val_loss']),
               os.path.join(out, f'rank{rank}.pt'))


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def ddp_stop_worker(rank, world, port, argv, out):
    """Rank 1 alone is asked to stop (as by SIGTERM) after step 3; rank 0 is not."""
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR='127.0.0.1',
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    agreed, calls = runtime.StopRequest.agreed, []

    def asked_on_rank_1(self, rt):
        calls.append(1)
        if rank == 1 and len(calls) == 4:  # checked before steps 1, 2, 3, then 4
            self.signum = signal.SIGTERM
        return agreed(self, rt)
    runtime.StopRequest.agreed = asked_on_rank_1
    with pytest.raises(runtime.Interrupted):
        grow.train(flags.parse_args(argv))
    with open(os.path.join(out, f'stopped{rank}.json'), 'w') as f:
        json.dump(len(calls), f)


def data_fails(capsys, argv, *needles):
    fails(capsys, argv, *needles, main=data.main)


# ----------------------------------------------------------------------------- data

def test_byte_tokenizer_round_trip():
    enc = data.get_tokenizer('byte')
    text = 'def f(x):\n    return "héllo ✓"  # ünïcode\n'
    ids = enc.encode_ordinary(text)
    assert ids == list(text.encode('utf-8'))  # one token per byte
    assert enc.decode(ids) == text
    assert enc.encode('<|endoftext|>', allowed_special='all') == [256] and enc.n_vocab == 257


def test_prepare_capped_stdlib(corpus):
    meta, train, val = data.load(corpus)
    assert meta['tokenizer'] == 'byte' and meta['vocab_size'] == 257 and meta['dtype'] == 'uint16'
    assert meta['mask_id'] == 257 and meta['eot_id'] == 256 and meta['n_ordinary'] == 256
    assert len(train) == meta['train_tokens'] and len(val) == meta['val_tokens']
    # the cap bounds the characters read; every document ends with <|endoftext|>
    assert 300_000 < len(train) + len(val) < 420_000 and 0.02 < len(val) / (len(train) + len(val)) < 0.25
    assert train.max() <= 256 and (train == 256).sum() >= 5
    assert not any('.tmp' in f for f in os.listdir(corpus))
    assert data.model_vocab(257) == 320 and data.model_vocab(50257) == 50304


def test_gpt_batches_are_shifted_windows(corpus):
    meta, train, _ = data.load(corpus)
    x, y = data.Batches(train, 'gpt', meta, seed=0).next(4, 16)
    assert x.shape == y.shape == (4, 16) and x.dtype == torch.int64
    assert torch.equal(x[:, 1:], y[:, :-1])


@pytest.mark.parametrize('rate', [0.15, 0.4])
def test_mlm_masking_rates(corpus, rate):
    meta, train, _ = data.load(corpus)
    x, labels = data.Batches(train, 'bert', meta, seed=0, mlm_prob=rate).next(512, 64)  # 32768 positions
    chosen = labels != -100
    assert abs(chosen.float().mean().item() - rate) < 0.01
    orig = labels[chosen]
    got = x[chosen]
    frac_mask = (got == meta['mask_id']).float().mean().item()
    # includes random tokens that happen to equal the original
    frac_same = (got == orig).float().mean().item()
    assert abs(frac_mask - 0.8) < 0.02 and abs(frac_same - 0.1) < 0.02
    assert got.max() <= meta['mask_id'] and (x[~chosen] != meta['mask_id']).all()


def test_eval_batches_are_fixed():
    """Pinned: the same evaluation windows (and BERT masks) for every run, method and version."""
    meta = dict(mask_id=257, n_ordinary=256)
    tokens = np.arange(60_000)  # a window's first token is its start
    val = data.Batches(tokens, 'gpt', meta, data.EVAL_SEED)
    starts = [x[:, 0].tolist() for x, _ in data.eval_batches(val, 2, 4, 16)]
    assert starts == [[58745, 58586, 59260, 22805], [10278, 55380, 6291, 15697]]
    x, y = data.eval_batches(data.Batches(tokens % 256, 'bert', meta, data.EVAL_SEED), 1, 2, 32)[0]
    assert torch.nonzero(y != -100).tolist() == [[0, 4], [0, 19], [0, 23], [0, 27], [1, 5], [1, 15], [1, 31]]
    assert x[y != -100].tolist() == [257, 125, 257, 257, 257, 257, 257]
    trained = data.Batches(tokens, 'gpt', meta, seed=1337).next(4, 16)[0][:, 0].tolist()
    assert trained != starts[0]  # training draws other windows


def test_records_and_hf_stream_into_the_same_tokens_as_text(tmp_path, monkeypatch):
    """.jsonl, .jsonl.gz and .parquet files (and hf: datasets, streamed) take the text path's tokens."""
    pytest.importorskip('pyarrow', reason='parquet needs pyarrow (pip install pyarrow)')
    write_records(tmp_path)
    data.prepare(str(tmp_path / 'text'), 'byte', str(tmp_path / 'from_text'), verbose=False)
    data.prepare(str(tmp_path / 'records'), 'byte', str(tmp_path / 'from_records'), verbose=False)
    _, train, val = prepared(tmp_path / 'from_text')
    meta, train2, val2 = prepared(tmp_path / 'from_records')
    assert (train2, val2) == (train, val) and meta['documents'] == 23 and meta['val_tokens'] == len(val) > 0
    assert val == [t for i, d in enumerate(DOCS) if i % 10 == 9 for t in list(d.encode()) + [256]]
    datasets = pytest.importorskip('datasets', reason='hf: needs datasets (pip install datasets)')
    calls = []

    def fake_load_dataset(path, config, split, streaming):  # what the hub would stream, offline
        calls.append((path, config, split, streaming))
        return iter([dict(text=d, url='x') for d in DOCS])
    monkeypatch.setattr(datasets, 'load_dataset', fake_load_dataset)
    data.prepare('hf:org/corpus:sample', 'byte', str(tmp_path / 'from_hf'), verbose=False)
    meta, train3, val3 = prepared(tmp_path / 'from_hf')
    assert (train3, val3) == (train, val) and calls == [('org/corpus', 'sample', 'train', True)]
    assert meta['source'] == 'hf:org/corpus:sample' and meta['split'] == 'train'


def test_preparation_is_streamed_in_bounded_chunks(tmp_path):
    write_texts(tmp_path)
    longest, total = max(map(len, DOCS)), sum(map(len, DOCS))
    data.prepare(str(tmp_path / 'text'), 'byte', str(tmp_path / 'whole'), verbose=False)
    data.prepare(str(tmp_path / 'text'), 'byte', str(tmp_path / 'chunked'), verbose=False, chunk_bytes=2000)
    meta = prepared(tmp_path / 'chunked')[0]
    assert total > 5 * 2000 and meta['peak_chunk_chars'] <= max(2000, longest)  # never more than a chunk
    assert prepared(tmp_path / 'chunked')[1:] == prepared(tmp_path / 'whole')[1:]
    data.prepare(str(tmp_path / 'text'), 'byte', str(tmp_path / 'capped'), verbose=False, max_tokens=1000)
    meta = prepared(tmp_path / 'capped')[0]
    assert meta['train_tokens'] + meta['val_tokens'] == 1000


def test_an_interrupted_preparation_leaves_no_corpus(tmp_path, monkeypatch):
    write_texts(tmp_path)
    out = tmp_path / 'out'
    data.prepare(str(tmp_path / 'text'), 'byte', str(out), verbose=False)  # a complete folder first
    real = data.documents

    def dies_half_way(*args):
        for i, doc in enumerate(real(*args)):
            if i == 12:
                raise KeyboardInterrupt
            yield doc
    monkeypatch.setattr(data, 'documents', dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        data.prepare(str(tmp_path / 'text'), 'byte', str(out), verbose=False, chunk_bytes=500)
    assert not (out / 'meta.json').exists()  # not a corpus: grow.py refuses it, and a rerun starts afresh
    monkeypatch.setattr(data, 'documents', real)
    data.prepare(str(tmp_path / 'text'), 'byte', str(out), verbose=False)
    assert sorted(os.listdir(out)) == ['meta.json', 'train.bin', 'val.bin']
    assert prepared(out)[0]['documents'] == 23
    assert data.main(['--inspect', str(out)])['train_tokens'] == len(prepared(out)[1])


def test_two_preparations_of_one_folder_at_once_do_not_mix_files(tmp_path, monkeypatch):
    """Two runs started together on a fresh clone both prepare the default folder: each writes .tmp files of its
    own (named by its process id), so neither truncates nor renames the other's half-written file."""
    write_texts(tmp_path)
    out, real = tmp_path / 'out', data.documents
    data.prepare(str(tmp_path / 'text'), 'byte', str(tmp_path / 'alone'), verbose=False, chunk_bytes=500)

    def another_run_prepares_meanwhile(*args):
        for i, doc in enumerate(real(*args)):
            if i == 12:  # half way through this preparation's files, a second process prepares the folder
                with monkeypatch.context() as m:
                    m.setattr(os, 'getpid', lambda: 1)
                    m.setattr(data, 'documents', real)
                    data.prepare(str(tmp_path / 'text'), 'byte', str(out), verbose=False, chunk_bytes=500)
                assert prepared(out) == prepared(tmp_path / 'alone')
            yield doc
    monkeypatch.setattr(data, 'documents', another_run_prepares_meanwhile)
    data.prepare(str(tmp_path / 'text'), 'byte', str(out), verbose=False, chunk_bytes=500)
    assert sorted(os.listdir(out)) == ['meta.json', 'train.bin', 'val.bin']
    assert prepared(out) == prepared(tmp_path / 'alone')

# ----------------------------------------------------------------------------- models


@pytest.mark.parametrize('kind', ['gpt', 'bert'])
def test_shapes(kind):
    torch.manual_seed(0)
    m = Transformer(small(kind))
    x = torch.randint(0, 256, (2, 16))
    logits, loss = m(x)
    assert logits.shape == ((2, 1, 320) if kind == 'gpt' else (2, 16, 320)) and loss is None
    y = torch.randint(0, 256, (2, 16))
    y = y if kind == 'gpt' else torch.where(torch.arange(16) % 5 == 0, y, -100)
    logits, loss = m(x, y)
    assert logits.shape == ((2, 16, 320) if kind == 'gpt' else (8, 320))  # BERT: masked positions only
    assert abs(loss.item() - np.log(320)) < 0.3  # near uniform at init


def test_causality():
    torch.manual_seed(0)
    x = torch.randint(0, 256, (1, 16))
    x2 = x.clone()
    x2[0, 10] = (x[0, 10] + 1) % 256
    gpt, bert = Transformer(small('gpt')), Transformer(small('bert'))
    g1, g2 = gpt(x, x)[0], gpt(x2, x2)[0]  # with targets: logits at every position
    assert torch.equal(g1[:, :10], g2[:, :10]) and not torch.allclose(g1[:, 10:], g2[:, 10:])
    b1, b2 = bert(x)[0], bert(x2)[0]
    assert not torch.allclose(b1[:, :10], b2[:, :10])  # BERT looks both ways


def test_layer_map_examples():
    assert map_layers(3, 7) == [0, 0, 0, 1, 1, 2, 2]
    assert map_layers(3, 7, 'stack') == [0, 1, 2, 0, 1, 2, 2]  # (the official stack_meta_layer's)
    assert map_layers(3, 8, 'stack') == [0, 1, 2, 0, 1, 2, 1, 2] and map_layers(1, 3, 'stack') == [0, 0, 0]
    for k in range(1, 13):  # whole rounds of the k blocks, then the top blocks, ending with the last
        for d in range(k, 25):
            stacked = map_layers(k, d, 'stack')
            assert stacked[:d - d % k] == list(range(k)) * (d // k) and stacked[d - d % k:] == \
                list(range(k - d % k, k)), (k, d)
    assert map_layers(5, 5) == map_layers(5, 5, 'stack') == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError):
        map_layers(4, 3)


def test_layer_map_is_exact_for_all_depths():
    from fractions import Fraction
    for d in range(1, 49):
        for k in range(1, d + 1):
            exact = [int(t / Fraction(d, k)) for t in range(d)]  # floor(t / (d / k)) in exact arithmetic
            assert map_layers(k, d) == exact, (k, d)
    # the official float version int(t / (d / k)) is off here; ours is not
    assert [int(t / (18 / 14)) for t in range(18)] != map_layers(14, 18)


def test_rotary_attention_depends_on_relative_positions_only():
    """RoPE: q . k of two positions is unchanged when both move by the same offset; rotation keeps norms."""
    torch.manual_seed(0)
    q, k = torch.randn(1, 1, 1, 16).expand(1, 40, 1, 16), torch.randn(1, 1, 1, 16).expand(1, 40, 1, 16)
    # the same vectors at every position, rotated by their position
    rq, rk = rotate(q, *rope_tables(40, 16)), rotate(k, *rope_tables(40, 16))
    scores = rq[0, :, 0] @ rk[0, :, 0].T
    assert torch.allclose(scores[3, 7], scores[23, 27], atol=1e-5)
    assert torch.allclose(scores[9, 2], scores[30, 23], atol=1e-5)
    assert not torch.allclose(scores[3, 7], scores[3, 8], atol=1e-3)
    torch.testing.assert_close(rq.norm(dim=-1), q.norm(dim=-1))
    torch.testing.assert_close(rq[:, 0], q[:, 0])  # position 0 is not rotated
    # compiled, rotate writes the same product in reals (dynamo traces it; no C++ compiler needed here)
    traced = torch.compile(rotate, backend='aot_eager', fullgraph=True)(q.contiguous(), *rope_tables(40, 16))
    torch.testing.assert_close(traced, rq)


@pytest.mark.parametrize('kind', ['gpt', 'bert'])
@pytest.mark.parametrize('how, options', [('interpolate', None), ('stack', None), ('interpolate', 'rope'),
                                          ('interpolate', 'other LN')])
def test_shared_depth_equals_unshared_copy(kind, how, options):
    """k blocks run at depth d compute what a d-block model holding the mapped copies computes."""
    torch.manual_seed(0)
    shared = Transformer(small(kind, n_layer=7, n_blocks=3, **OPTIONS.get(options, {})))
    unshared = unshared_copy(shared, how)
    x = torch.randint(0, 256, (2, 16))
    torch.testing.assert_close(shared(x, depth=7, layer_map=how)[0], unshared(x)[0], rtol=0, atol=0)
    assert not torch.allclose(shared(x, depth=3)[0], unshared(x)[0])


@pytest.mark.parametrize('kind', ['gpt', 'bert'])
def test_shared_block_gets_the_sum_of_its_uses_gradients(kind):
    torch.manual_seed(0)
    shared = Transformer(small(kind, n_layer=4, n_blocks=2))
    unshared = unshared_copy(shared)  # blocks 0, 0, 1, 1
    x, y = torch.randint(0, 256, (2, 16)), torch.randint(0, 256, (2, 16))
    if kind == 'bert':
        y = torch.where(torch.arange(16) % 4 == 0, y, -100)
    shared(x, y, depth=4)[1].backward()
    unshared(x, y)[1].backward()
    for name, p in shared.blocks[0].named_parameters():
        uses = [dict(unshared.blocks[t].named_parameters())[name].grad for t in (0, 1)]
        torch.testing.assert_close(p.grad, uses[0] + uses[1], rtol=1e-5, atol=1e-7)
        assert not torch.allclose(uses[0], uses[1])  # two different uses, really summed


@pytest.mark.parametrize('kind, n_head, d_ff, T, depth, pool', [
    *[(kind, 4, 256, 64, depth, 1) for kind in ('gpt', 'bert') for depth in (2, 4)],
    *[(kind, 2, 64, 16, 3, 1) for kind in ('gpt', 'bert')],  # a narrow, short stage
    ('bert', 4, 256, 64, 3, 4)])  # pooled by 4
def test_flops_match_flop_counter(kind, n_head, d_ff, T, depth, pool):
    torch.manual_seed(0)
    cfg = Config(kind=kind, vocab_size=320, block_size=64, n_layer=4, n_head=n_head, n_embd=64, d_ff=d_ff,
                 n_blocks=2)
    m = Transformer(cfg)
    x, y = torch.randint(0, 256, (4, T)), torch.randint(0, 256, (4, T))
    if kind == 'bert':
        y = torch.where(torch.rand(4, T) < 0.15, y, -100)
    counter = FlopCounterMode(display=False)
    with sdpa_kernel(SDPBackend.MATH), counter:  # the math backend's matmuls are what the counter sees
        m(x, y, depth=depth, pool=pool)[1].backward()
    queries = int((y != -100).sum(1).max()) if pool > 1 else 0
    ours = flops_per_step(cfg, depth, x.numel(), T, int((y != -100).sum()), pool, queries)
    assert abs(ours / counter.get_total_flops() - 1) < 0.05


# ----------------------------------------------------------------------------- growth operators

@pytest.mark.parametrize('kind', ['gpt', 'bert'])
@pytest.mark.parametrize('op, expected', [('stack', [0, 1, 2, 0, 1, 2]), ('interpolate', [0, 0, 1, 1, 2, 2])])
def test_deepen_copies_mapped_blocks(kind, op, expected):
    torch.manual_seed(0)
    old = Transformer(small(kind, n_layer=6, n_blocks=3))
    new, src = deepen(old, 6, op)
    assert src == expected and len(new.blocks) == new.cfg.n_blocks == 6 and old.cfg.n_blocks == 3
    for i, j in enumerate(src):
        assert blocks_equal(new.blocks[i], old.blocks[j])
    rest = lambda m: {k: v for k, v in m.state_dict().items() if not k.startswith('blocks.')}  # noqa: E731
    assert all(torch.equal(v, rest(old)[k]) for k, v in rest(new).items())
    ptrs = [p.data_ptr() for p in new.parameters()] + [p.data_ptr() for p in old.parameters()]
    assert len(set(ptrs)) == len(ptrs)  # fresh storage: nothing aliased, within or across models


def test_middle_copy_and_gstack_maps_worked_by_hand():
    """MIDAS copies the middle block of b = k_new - k_old layers right after itself; G_stack stacks x4."""
    assert middle_copy(6, 8) == [0, 1, 2, 3, 2, 3, 4, 5]  # blocks 01|23|45: the middle one, 23, twice
    assert middle_copy(4, 6) == [0, 1, 0, 1, 2, 3]  # blocks 01|23: block ceil(2/2) = the first
    assert middle_copy(10, 12) == [0, 1, 2, 3, 4, 5, 4, 5, 6, 7, 8, 9]
    assert middle_copy(6, 12) == map_layers(6, 12, 'stack') == [0, 1, 2, 3, 4, 5] * 2  # one block: stacking
    with pytest.raises(ValueError):
        middle_copy(3, 7)  # more than doubling: there is no middle block that large
    torch.manual_seed(0)
    old = Transformer(small('gpt', n_layer=12, n_blocks=3))
    new, src = deepen(old, 12, 'stack')  # G_stack's one growth, 3 -> 12
    assert src == [0, 1, 2] * 4 and all(blocks_equal(new.blocks[i], old.blocks[j]) for i, j in enumerate(src))
    new, src = deepen(Transformer(small('gpt', n_layer=12, n_blocks=6)), 8, 'middle')
    assert src == [0, 1, 2, 3, 2, 3, 4, 5]


def test_depth_noise_perturbs_the_later_copies_by_its_definition():
    """--depth_noise s: the first copy of each block is exact, every later copy is
    W + s * std(W) * N(0, 1)."""
    torch.manual_seed(0)
    old = Transformer(small('gpt', n_layer=12, n_blocks=3, n_embd=64, d_ff=256))
    exact, _ = deepen(old, 12, 'stack', noise=0.0)
    assert all(blocks_equal(exact.blocks[i], old.blocks[i % 3]) for i in range(12))
    new, src = deepen(old, 12, 'stack', noise=0.2)
    assert all(blocks_equal(new.blocks[i], old.blocks[i]) for i in range(3))  # the first copies
    for i in range(3, 12):
        for (name, p), q in zip(new.blocks[i].named_parameters(), old.blocks[src[i]].parameters()):
            if q.std() == 0:  # constant tensors (LayerNorm at init) get no noise
                assert torch.equal(p, q), name
            elif q.numel() >= 4096:  # enough draws to test the mean and the spread of the noise
                z = (p - q) / q.std()
                assert abs(z.mean().item()) < 4 * 0.2 / q.numel() ** 0.5, name
                assert abs(z.std().item() / 0.2 - 1) < 0.05, name
    assert not blocks_equal(new.blocks[3], new.blocks[6])  # two copies of block 0, two different draws


def test_random_path_keeps_the_ends_and_draws_the_rest_uniformly():
    rng = np.random.default_rng(0)
    paths = [random_path(12, 8, rng) for _ in range(3000)]
    assert all(len(p) == 8 and p[0] == 0 and p[-1] == 11 and p == sorted(set(p)) for p in paths)
    counts = np.bincount(np.concatenate(paths), minlength=12)
    assert counts[0] == counts[11] == 3000
    np.testing.assert_allclose(counts[1:11] / 3000, 6 / 10, atol=0.04)  # 6 of the 10 middle layers, uniformly
    assert random_path(6, 6, rng) == list(range(6)) and map_layers(12, 3, [0, 4, 11]) == [0, 4, 11]
    with pytest.raises(ValueError):
        random_path(6, 1, rng)


def test_raptr_scales_the_drawn_layers_and_keeps_the_ends_unscaled():
    """RaPTr's path runs its first and last layer as they are and multiplies the residual branches of each drawn
    layer by 1 / q, q = (p - 2) / (L - 2) its chance to be drawn; the full path is the plain model."""
    assert path_scales([0, 2, 5], 6) == [1.0, 4.0, 1.0] and path_scales(list(range(6)), 6) == [1.0] * 6
    for kind in ('gpt', 'bert'):
        torch.manual_seed(0)
        m = Transformer(small(kind, n_layer=6)).eval()
        seen = {}
        for i in (0, 2, 5):
            for name, module in (('block', m.blocks[i]), ('attn', m.blocks[i].attn), ('mlp', m.blocks[i].mlp)):
                module.register_forward_hook(
                    lambda mod, inp, out, key=(i, name): seen.update({key: (inp[0], out)}))
        m(torch.randint(0, 300, (2, 16)), depth=3, layer_map=[0, 2, 5])
        for i, scale in ((0, 1.0), (2, 4.0), (5, 1.0)):
            (x, y), (_, a), (h, f) = seen[(i, 'block')], seen[(i, 'attn')], seen[(i, 'mlp')]
            b = m.blocks[i]
            if kind == 'gpt':  # pre-LN: x + s * attn(ln_1(x)), then + s * mlp(ln_2(.))
                torch.testing.assert_close(h, b.ln_2(x + scale * a))
                torch.testing.assert_close(y, x + scale * a + scale * f)
            else:  # post-LN: ln_1(x + s * attn(x)), then ln_2(. + s * mlp(.))
                torch.testing.assert_close(h, b.ln_1(x + scale * a))
                torch.testing.assert_close(y, b.ln_2(h + scale * f))


def test_raptr_runs_paths_of_each_stage_and_evaluates_the_full_model(corpus, tmp_path):
    summary = run(corpus, tmp_path, '--method', 'raptr', '--n_layer', 6, '--max_steps', 16,
                  '--log_interval', 1, '--eval_interval', 8)
    train, evals = records(tmp_path, 'train'), records(tmp_path, 'eval')
    assert [r['depth'] for r in train] == [3] * 4 + [4] * 4 + [5] * 4 + [6] * 4  # 3-4-5-6, equal stages
    assert [len(p) for p in summary['paths']] == [r['depth'] for r in train]
    assert all(p[0] == 0 and p[-1] == 5 for p in summary['paths'])
    assert len(set(map(tuple, summary['paths']))) > 4
    # all blocks from the start
    assert {r['depth'] for r in evals} == {6} and len(summary['model'].blocks) == 6
    cfg = Config(kind='gpt', vocab_size=320, block_size=32, n_layer=6, n_head=2, n_embd=32, d_ff=128)
    flops = [b['flops'] - a['flops'] for a, b in zip([dict(flops=0)] + train, train)]
    assert flops == [flops_per_step(cfg, r['depth'], 8 * 32, 32) for r in train]  # only the executed layers
    growths = records(tmp_path, 'growth')
    assert [(g['old_path'], g['new_path'], g['old_n_blocks'], g['new_n_blocks']) for g in growths] == \
        [(3, 4, 6, 6), (4, 5, 6, 6), (5, 6, 6, 6)]


def test_gstack_and_midas_schedules():
    cfg = Config(kind='gpt', vocab_size=320, block_size=32, n_layer=12, n_head=4, n_embd=32, d_ff=128)

    def plan(*argv):
        stages, op = schedule.stages_for(flags.parse_args(['--size', 'tiny', '--max_steps', '210', *argv]), cfg)
        return [(s.n_blocks, s.start) for s in stages], op
    assert plan('--method', 'gstack') == ([(3, 0), (12, 52)], 'stack')  # (0.25 of 210 rounds to 52)
    # MIDAS: blocks of 2 layers, stage i lasting in proportion to i (1+2+...+6 = 21 parts of 10 steps)
    assert plan('--method', 'midas') == ([(2, 0), (4, 10), (6, 30), (8, 60), (10, 100), (12, 150)], 'middle')
    with pytest.raises(data.InputError, match="double"):
        plan('--method', 'midas', '--stages', '2,6,12', '--stage_at', '0.2,0.5')


def test_onelayer_grows_once_late_from_one_block_or_from_none(corpus, tmp_path):
    """Zero/one-layer progressive training: 1 block (or 0) until 80% of the steps, then one growth to L; the
    copied block's growth and the fresh one's both keep a pre-LN GPT's loss on the probe."""
    argv = ['--method', 'onelayer', '--n_layer', 4, '--max_steps', 20, '--eval_interval', 10, '--decay',
            'wsd']
    run(corpus, tmp_path / 'one', *argv)
    growth, = records(tmp_path / 'one', 'growth')
    assert (growth['step'], growth['old_n_blocks'], growth['new_n_blocks'], growth['src'], growth['op']) == \
        (16, 1, 4, [0, 0, 0, 0], 'stack')
    assert [r['depth'] for r in records(tmp_path / 'one', 'train')] == [1] + [4]  # (log steps 10 and 20)
    run(corpus, tmp_path / 'zero', *argv, '--stages', '0,4', '--depth_op', 'fresh')
    growth, = records(tmp_path / 'zero', 'growth')
    assert (growth['step'], growth['src']) == (16, [None] * 4)
    assert growth['loss_after'] == pytest.approx(growth['loss_before'], abs=1e-5)
    stage, _ = records(tmp_path / 'zero', 'stage')
    assert stage['depth_hist'] == {'0': 16}
    evals = records(tmp_path / 'zero', 'eval')
    assert evals[-1]['val_loss'] < evals[1]['val_loss']  # (it learns after the growth)


@pytest.mark.parametrize('kind, options', [('gpt', {}), ('gpt', OPTIONS['rope']), ('bert', dict(pre_ln=True)),
                                           ('bert', dict(pre_ln=True, pos='rope'))])
def test_identity_growth_preserves_the_function_of_pre_ln_models(kind, options):
    torch.manual_seed(0)
    old = Transformer(small(kind, n_layer=6, n_blocks=3, **options))
    for p in old.parameters():  # away from init, so the check is not trivially about small weights
        p.data += 0.05 * torch.randn_like(p)
    new, src = deepen(old, 6, 'identity')
    x = torch.randint(0, 256, (2, 16))
    torch.testing.assert_close(outputs(new, x), outputs(old, x), rtol=1e-5, atol=1e-5)
    # StackBERT's identity.py: the old blocks in place, new ones on top: output projections and every bias
    # zero, every other weight (LayerNorm gains too) N(0, 1 / its first dimension)
    assert src == [0, 1, 2, None, None, None] and all(blocks_equal(new.blocks[i], old.blocks[i]) for i in range(3))
    top = dict(new.blocks[3].named_parameters())
    assert all(not p.any() for n, p in top.items() if n.endswith('bias') or n.endswith('c_proj.weight'))
    for name in ('ln_1.weight', 'attn.c_attn.weight', 'mlp.c_fc.weight'):  # (over the three new blocks)
        values = torch.cat([dict(new.blocks[i].named_parameters())[name].flatten() for i in (3, 4, 5)])
        assert values.std().item() == pytest.approx(top[name].size(0) ** -0.5, rel=0.25), name
    with pytest.raises(ValueError):  # a post-LN block with zero projections is LN(x), not x
        deepen(Transformer(small(kind, n_layer=6, n_blocks=3, pre_ln=False)), 6, 'identity')


@pytest.mark.parametrize('kind, options', [('gpt', {}), ('gpt', OPTIONS['rope']),
                                           ('bert', dict(pre_ln=True))])
@pytest.mark.parametrize('k_old', [0, 1])
def test_fresh_growth_preserves_the_function_of_pre_ln_models(kind, options, k_old):
    """--depth_op fresh: the old blocks stay at the bottom, the new ones are initialised as at the start with
    zeroed output projections, so a pre-LN model (0 blocks too: embeddings and head) computes the same
    function; their AdamW moments start afresh, the kept block's follow it."""
    old = perturbed(kind, n_layer=4, n_blocks=k_old, **options)
    new, src = deepen(old, 4, 'fresh')
    assert src == [0] * k_old + [None] * (4 - k_old) and new.cfg.n_blocks == 4
    x = torch.randint(0, 256, (2, 16))
    torch.testing.assert_close(outputs(new, x), outputs(old, x), rtol=1e-5, atol=1e-5)
    for block in new.blocks[k_old:]:
        assert not block.mlp.c_proj.weight.any() and not block.attn.c_proj.bias.any()
        assert 0.015 < block.mlp.c_fc.weight.std() < 0.025 and torch.equal(block.ln_1.weight, torch.ones(32))
    if k_old:
        assert blocks_equal(new.blocks[0], old.blocks[0])
    with pytest.raises(ValueError, match='fresh'):  # nothing to copy
        deepen(Transformer(small(kind, n_layer=4, n_blocks=0)), 4, 'stack')
    args = flags.parse_args(['--lr', '1e-3', '--optimizer', 'adamw'])
    opt = make_optimizer(old.train(), args.lr, args.weight_decay)
    old(x, x)[1].backward()
    opt.step()
    stage = schedule.Stage(0, 1, n_blocks=4, n_embd=32, n_head=2, d_ff=64, seq=16, batch=8)
    grown, new_opt, _ = grow.grow_to(stage, old, opt, 'fresh', args)
    for name, p in grown.named_parameters():
        fresh = name.startswith('blocks.') and int(name.split('.')[1]) >= k_old
        assert (p in new_opt.state) != fresh, name


def test_expansion_maps_1_3_6_12():
    torch.manual_seed(0)
    m = Transformer(small('gpt', n_layer=12, n_blocks=1))
    srcs = []
    for k in (3, 6, 12):
        m, src = deepen(m, k, 'interpolate')
        srcs.append(src)
    assert srcs == [[0, 0, 0], [0, 0, 1, 1, 2, 2], [i // 2 for i in range(12)]]


@pytest.mark.parametrize('kind', ['gpt', 'bert'])
@pytest.mark.parametrize('options', [None, *OPTIONS])
def test_interpolation_growth_preserves_the_full_depth_function(kind, options):
    """With the interpolation map, expanding 3 -> 6 blocks by interpolation leaves depth L unchanged:
    floor(floor(t*6/L) / 2) = floor(t*3/L). So Apollo's growth is invisible at evaluation depth."""
    torch.manual_seed(0)
    old = Transformer(small(kind, n_layer=12, n_blocks=3, **OPTIONS.get(options, {})))
    new, _ = deepen(old, 6, 'interpolate')
    x = torch.randint(0, 256, (2, 16))
    torch.testing.assert_close(new(x, depth=12)[0], old(x, depth=12)[0], rtol=0, atol=0)


@pytest.mark.parametrize('kind', ['gpt', 'bert'])
@pytest.mark.parametrize('n_embd, d_ff, options', [(32, 128, None), (32, 256, None), (64, 64, None),
                                                   (64, 256, None), *[(64, 128, o) for o in OPTIONS]])
def test_width_growth_preserves_the_function(kind, n_embd, d_ff, options):
    old = perturbed(kind, d_ff=64, **OPTIONS.get(options, {}))
    x = torch.randint(0, 257, (2, 16))
    new, plan = widen(old, n_embd, d_ff)
    assert (new.cfg.n_embd, new.cfg.d_ff, new.cfg.n_head) == (n_embd, d_ff, 2 * n_embd // 32)
    ref = outputs(old, x)
    rel = ((outputs(new, x) - ref).abs().max() / ref.abs().max()).item()
    assert rel < 1e-5, rel
    # the tiling is CompoundGrow's: W1' = [W1; W1; ...], W2' = [W2, W2, ...] / n (+ zero-sum noise)
    n = d_ff // 64
    if n_embd == 32:
        W1, W2 = old.blocks[0].mlp.c_fc.weight, old.blocks[0].mlp.c_proj.weight
        assert torch.equal(new.blocks[0].mlp.c_fc.weight, W1.repeat(n, 1))
        W2new = new.blocks[0].mlp.c_proj.weight.unflatten(1, (n, 64))
        torch.testing.assert_close(W2new.sum(1), W2, rtol=0, atol=1e-6)
        assert not torch.allclose(W2new[:, 0], W2new[:, 1])  # symmetry broken


@pytest.mark.parametrize('kind', ['gpt', 'bert'])
def test_symmetry_breaking_lets_copies_drift_apart(kind):
    """Without noise the tiled copies get identical gradients forever; with it they separate."""
    x, y = torch.randint(0, 256, (4, 16)), torch.randint(0, 256, (4, 16))
    y = y if kind == 'gpt' else torch.where(torch.rand(4, 16) < 0.3, y, -100)
    gaps = {}
    for noise in (0.0, 1e-2):
        torch.manual_seed(1)
        new, _ = widen(perturbed(kind, d_ff=64).train(), 64, 128, noise=noise)
        opt = torch.optim.SGD(new.parameters(), lr=0.1)
        for _ in range(5):
            new(x, y)[1].backward()
            opt.step()
            opt.zero_grad()
        h = new.blocks[0].mlp.c_fc.weight.unflatten(0, (2, 64))  # the FFN's two copies of each hidden unit
        e = new.wte.weight.unflatten(1, (2, 32))                 # the residual stream's two halves
        gaps[noise] = ((h[0] - h[1]).abs().max().item(), (e[:, 0] - e[:, 1]).abs().max().item())
    assert gaps[0.0] == (0.0, 0.0)  # exact copies stay exact copies: the grown width is wasted
    assert min(gaps[1e-2]) > 1e-6, gaps  # float32 resolution of these weights is ~1e-8


@pytest.mark.parametrize('opt_state', ['copy', 'reset', 'slots'])
def test_optimizer_moments_follow_the_map(opt_state):
    torch.manual_seed(0)
    args = flags.parse_args(['--opt_state', opt_state, '--lr', '1e-3', '--optimizer', 'adamw'])
    model = Transformer(small('gpt', n_layer=6, n_blocks=3))
    opt = make_optimizer(model, args.lr, args.weight_decay)
    x = torch.randint(0, 256, (2, 16))
    for _ in range(2):
        model(x, x)[1].backward()
        opt.step()
        opt.zero_grad()
    stage = schedule.Stage(0, 1, n_blocks=6, n_embd=32, n_head=2, d_ff=64, seq=16, batch=8)
    new, new_opt, src = grow.grow_to(stage, model, opt, 'stack', args)
    assert src == [0, 1, 2, 0, 1, 2] and len(model.blocks) == 3 and len(new.blocks) == 6
    old_names = dict(model.named_parameters())
    for name, p in new.named_parameters():
        block = int(name.split('.')[1]) if name.startswith('blocks.') else None
        if opt_state == 'reset' or (opt_state == 'slots' and block is not None and block >= 3):
            assert p not in new_opt.state  # fresh: no moments, step 0
            continue
        if block is not None and opt_state == 'copy':  # copy: the map's source; slots: the same index
            name = f"blocks.{[0, 1, 2, 0, 1, 2][block]}.{name.split('.', 2)[2]}"
        old = opt.state[old_names[name]]
        for key in ('exp_avg', 'exp_avg_sq', 'step'):
            assert torch.equal(new_opt.state[p][key], old[key])
            assert new_opt.state[p][key].data_ptr() != old[key].data_ptr()
    grow.loss_and_grad_norm(new, (x, x), CPU)  # the growth's probe (before and after it)
    assert all(p.grad is None for p in new.parameters())  # the probe leaves no gradient behind


def test_width_moments_follow_the_tiling():
    torch.manual_seed(0)
    args = flags.parse_args(['--lr', '1e-3', '--optimizer', 'adamw'])
    model = Transformer(small('gpt', n_layer=4, n_blocks=2, d_ff=64))
    opt = make_optimizer(model, args.lr, args.weight_decay)
    x = torch.randint(0, 256, (2, 16))
    model(x, x)[1].backward()
    opt.step()
    # depth x2 (stack), hidden x2, FFN x4
    stage = schedule.Stage(0, 1, n_blocks=4, n_embd=64, n_head=4, d_ff=256, seq=16, batch=8)
    new, new_opt, _ = grow.grow_to(stage, model, opt, 'stack', args)
    assert (model.cfg.d_ff, new.cfg.d_ff, model.cfg.n_embd, new.cfg.n_embd) == (64, 256, 32, 64)
    st = lambda o, p: o.state[p]  # noqa: E731
    old_fc2 = st(opt, model.blocks[1].mlp.c_proj.weight)   # (32, 64): new block 3 <- old block 1
    new_fc2 = st(new_opt, new.blocks[3].mlp.c_proj.weight)  # (64, 256): output side x2, input side x4 and x2
    # rows: the residual stream's 2 copies, each with half the gradient (exp_avg / 2); columns: the FFN's 4
    # copies, split (W2 / 4), each reading the same hidden unit: the original's gradient, the moment kept
    torch.testing.assert_close(new_fc2['exp_avg'], old_fc2['exp_avg'].repeat(2, 4) / 2)
    torch.testing.assert_close(new_fc2['exp_avg_sq'], old_fc2['exp_avg_sq'].repeat(2, 4) / 4)
    old_fc1 = st(opt, model.blocks[0].mlp.c_fc.weight)     # (64, 32) -> (256, 64): rows x4 copied, columns x2
    torch.testing.assert_close(st(new_opt, new.blocks[0].mlp.c_fc.weight)['exp_avg_sq'],  # split
                               old_fc1['exp_avg_sq'].repeat(4, 2) / 16)
    torch.testing.assert_close(st(new_opt, new.wte.weight)['exp_avg'],
                               st(opt, model.wte.weight)['exp_avg'].repeat(1, 2) / 2)
    assert torch.equal(st(new_opt, new.blocks[2].mlp.c_fc.weight)['step'], old_fc1['step'])


@pytest.mark.parametrize('kind', ['gpt', 'bert'])
def test_width_moments_match_the_gradients_the_copies_receive(kind):
    """After a widening (FFN x4, hidden x2), the carried moments are what each copy's own gradient gives: a
    model whose moments are its gradient g (exp_avg g, exp_avg_sq g^2) carries them to exactly the grown
    model's gradient on the same batch, so Adam's first steps after the growth are neither too small nor
    too large."""
    model = perturbed(kind, d_ff=64)
    x = torch.randint(0, 300, (2, 16))
    opt = make_optimizer(model, 1e-3, 0.0)
    model(x, x)[1].backward()
    for p in model.parameters():
        opt.state[p] = dict(step=torch.tensor(1.0), exp_avg=p.grad.clone(), exp_avg_sq=p.grad ** 2)
    new, tiles = widen(model, 64, 256, noise=0.0)
    new_opt = make_optimizer(new, 1e-3, 0.0)
    carry_moments((model, opt), (new, new_opt), growth_map(new, None, tiles))
    new(x, x)[1].backward()
    for name, p in new.named_parameters():
        scale = p.grad.abs().max().item()
        torch.testing.assert_close(new_opt.state[p]['exp_avg'], p.grad, rtol=0, atol=1e-5 * scale, msg=name)
        torch.testing.assert_close(new_opt.state[p]['exp_avg_sq'], p.grad ** 2, rtol=0, atol=1e-5 * scale ** 2,
                                   msg=name)


def muon_trained(kind, steps=3):
    """A small model trained a few steps by Muon and AdamW (`make_optimizer` with a Muon rate)."""
    model = perturbed(kind, d_ff=64).train()
    opt = make_optimizer(model, 1e-3, 0.1, muon_lr=0.02)
    x = torch.randint(0, 300, (2, 16))
    for _ in range(steps):
        model(x, x)[1].backward()
        opt.step()
        opt.zero_grad()
    return model, opt, x


@pytest.mark.parametrize('kind', ['gpt', 'bert'])
def test_muon_steps_the_blocks_matrices_and_its_momentum_follows_a_growth(kind):
    """--optimizer muon: Muon holds exactly the blocks' 2-D matrices, AdamW the rest; a growth (deeper by
    interpolation, then wider) keeps a Muon-trained model's function where the operator does (the widening)
    and carries each matrix's momentum by the weights' map, scaled as the copy's gradient is (`tile`)."""
    model, opt, x = muon_trained(kind)
    adamw, muon = opt.parts
    matrices = {p for b in model.blocks for p in b.parameters() if p.dim() == 2}
    assert set(muon.state) == matrices and not matrices & set(adamw.state) and len(adamw.state) > 0
    wide, tiles = widen(model.eval(), 64, 256, noise=0.0)
    torch.testing.assert_close(outputs(wide, x), outputs(model, x), rtol=1e-5, atol=1e-5)
    args = flags.parse_args(['--optimizer', 'muon', '--lr', '1e-3', '--size', 'tiny'])
    stage = schedule.Stage(0, 1, n_blocks=6, n_embd=64, n_head=4, d_ff=256, seq=16, batch=8)
    grown, new_opt, src = grow.grow_to(stage, model, opt, 'interpolate', args)
    assert src == [0, 0, 1, 1, 2, 2] and isinstance(new_opt, model_lib.Optimizers)
    old_names = dict(model.named_parameters())
    for name, p in grown.named_parameters():
        if p.dim() == 2 and name.startswith('blocks.'):
            _, i, rest = name.split('.', 2)
            old = f'blocks.{src[int(i)]}.{rest}'  # (its tiling: the widening of the old model above)
            want = model_lib.tile(muon.state[old_names[old]]['momentum_buffer'], tiles[old], 1)
            assert torch.equal(new_opt.parts[1].state[p]['momentum_buffer'], want), name
    assert {g['rate'] for g in new_opt.parts[1].param_groups} == {20.0}  # 0.02 over --lr 1e-3


def test_a_skipped_step_leaves_muon_and_adamw_untouched():
    """Muon has no on-device skip: the pair reads the loop's flag, and a step flagged not finite changes no
    weight and no moment of either optimizer; an unflagged one changes both."""
    model, opt, x = muon_trained('gpt', steps=1)
    moments = lambda: [s[k].clone() for o in opt.parts for s in o.state.values() for k in s]  # noqa: E731
    weights, before = copy.deepcopy(model.state_dict()), moments()
    model(x, x)[1].backward()
    opt.found_inf = torch.tensor(1.0)
    opt.step()
    assert all(torch.equal(v, weights[k]) for k, v in model.state_dict().items())
    assert all(torch.equal(a, b) for a, b in zip(moments(), before))
    opt.found_inf = torch.tensor(0.0)
    opt.step()
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, weights[k])}
    assert 'blocks.0.attn.c_attn.weight' in changed and 'wte.weight' in changed


def test_muon_counts_its_newton_schulz_flops(corpus, tmp_path):
    """Newton-Schulz is not free: a Muon step costs 5 iterations on every stored matrix beyond the model's
    6N FLOPs, in the run's count and in the plan's; AdamW's elementwise update is not counted."""
    adamw = run(corpus, tmp_path / 'adamw', '--max_steps', 3, '--eval_interval', 3)
    muon = run(corpus, tmp_path / 'muon', '--max_steps', 3, '--eval_interval', 3, '--optimizer', 'muon')
    C, H = 32, 128  # TINY: two blocks of width 32 (d_ff 4C)
    per_matrix = [5 * (4 * m * m * n + 2 * m ** 3) for m, n in ((C, 3 * C), (C, C), (C, H), (C, H))]
    assert model_lib.newton_schulz_flops(muon['model'].cfg, 2) == 2 * sum(per_matrix)
    assert muon['flops'] - adamw['flops'] == 3 * 2 * sum(per_matrix)
    args = flags.parse_args(TINY + ['--data', corpus, '--optimizer', 'muon', '--max_steps', '3'])
    cfg = flags.model_config(args, data.load(corpus)[0])
    assert 3 * schedule.step_flops(args, cfg, None) == muon['flops']


def residual_rms(model, x):
    """The residual stream's root-mean-square after the executed layers (before the final LayerNorm)."""
    h = model.embed(x)
    for i, scale in model.layers(None, 'interpolate'):
        h = model.blocks[i](h, scale=scale)
    return h.pow(2).mean().sqrt().item()


def rms_after_steps(model, x, opt, steps=10):
    """The residual stream's RMS after `steps` optimizer steps on the batch x (the coordinate checks')."""
    for _ in range(steps):
        model(x, x)[1].backward()
        opt.step()
        opt.zero_grad()
    return residual_rms(model, x)


def test_completep_keeps_the_residual_stream_in_scale_as_depth_doubles_and_across_a_growth():
    """The coordinate check (Dey et al. 2025): under CompleteP (branches x base / depth) the residual stream's
    RMS at init and after 10 steps at one rate stays within a factor 2 as depth doubles 4 -> 32, where the
    standard parameterisation's grows tenfold; a growth that doubles the depth keeps it within that factor."""
    x = torch.randint(0, 256, (8, 64))
    spread = {}
    for base in (None, 4):
        at_init, trained = [], []
        for L in (4, 8, 16, 32):
            torch.manual_seed(0)
            model = Transformer(Config(n_layer=L, n_embd=64, n_head=4, d_ff=256, block_size=64, base_depth=base))
            at_init.append(residual_rms(model, x))
            trained.append(rms_after_steps(model, x, make_optimizer(model, 1e-2, 0.0)))
        spread[base] = max(at_init) / min(at_init), max(trained) / min(trained)
    assert max(spread[4]) < 2 and spread[None][1] > 10, spread
    torch.manual_seed(0)
    shallow = Transformer(Config(n_layer=8, n_blocks=4, n_embd=64, n_head=4, d_ff=256, block_size=64,
                                 base_depth=8))
    trained = rms_after_steps(shallow, x, make_optimizer(shallow, 1e-2, 0.0))
    deep, _ = deepen(shallow, 8, 'stack')
    assert 0.5 < residual_rms(deep, x) / trained < 2


def test_completep_width_rules_keep_the_residual_stream_in_scale_as_width_grows_and_across_a_widening():
    """muP's half of the coordinate check (Yang et al. 2022): under CompleteP's width rules (base width 32) the
    residual stream's RMS after 10 AdamW steps at one rate stays within a factor 2.5 as the width grows 32 ->
    256 (head size fixed), where the standard parameterisation's grows more than twentyfold. The blocks'
    matrices take AdamW's rate / m (m: n_embd over the base's) and its decay x m, the readout x 1/m; a widening
    to the base width keeps the function and brings m to 1."""
    x = torch.randint(0, 256, (8, 64), generator=torch.Generator().manual_seed(0))
    spread = {}
    for base in (None, 32):
        trained = []
        for C in (32, 64, 128, 256):
            torch.manual_seed(0)
            model = Transformer(Config(n_layer=4, n_embd=C, n_head=C // 16, d_ff=4 * C, block_size=64,
                                       base_depth=base and 4, base_width=base))
            trained.append(rms_after_steps(model, x, make_optimizer(model, 1e-2, 0.0)))
        spread[base] = max(trained) / min(trained)
    assert spread[32] < 2.5 and spread[None] > 20, spread
    torch.manual_seed(0)
    narrow = Transformer(Config(n_layer=4, n_embd=32, n_head=2, d_ff=64, block_size=64, base_depth=4,
                                base_width=64))
    opt = make_optimizer(narrow, 1e-2, 0.1)
    rates = {(g.get('rate', 1), g['weight_decay'], len(g['params'])) for g in opt.param_groups}
    assert rates == {(2.0, 0.05, 4 * 4), (1, 0.1, 2), (1, 0.0, 4 * 8 + 2)}, rates
    assert torch.equal(narrow.readout, narrow.wte.weight * 2)
    for block in (narrow.blocks[0], new_block(narrow.cfg, 'fresh')):  # init variance / m, a fresh block's too
        assert block.attn.c_attn.weight.std().item() == pytest.approx(0.02 * 2 ** 0.5, rel=0.05)
    rms_after_steps(narrow, x, opt)
    wide, _ = widen(narrow, 64, 256)  # exact: the readout's 1/m halves, ln_f is copied rather than halved
    torch.testing.assert_close(wide(x, x)[0], narrow(x, x)[0], rtol=1e-4, atol=1e-4)
    assert {g.get('rate', 1) for g in make_optimizer(wide, 1e-2, 0.1).param_groups} == {1}


def test_completep_is_refused_with_paths(capsys, corpus):
    fails(capsys, ['--data', corpus, '--scaling', 'completep', '--method', 'raptr'], '--scaling completep', 'path')


# ----------------------------------------------------------------------------- training and checkpoints

@pytest.mark.parametrize('kind', ['gpt', 'bert'])
def test_loss_falls(corpus, tmp_path, kind):
    summary = run(corpus, tmp_path, '--model', kind, '--max_steps', 40, '--eval_interval', 40,
                  '--log_interval', 5, '--lr', '3e-3')
    evals = records(tmp_path, 'eval')
    assert evals[0]['step'] == 0 and evals[-1]['step'] == 40
    assert evals[-1]['val_loss'] < evals[0]['val_loss'] - 1.5, evals  # from ln(320) = 5.8 to clearly below
    assert evals[-1]['val_acc'] > evals[0]['val_acc'] + 0.1  # more tokens predicted right
    assert summary['val_loss'] == evals[-1]['val_loss'] and summary['tokens'] == 40 * 8 * 32
    train = records(tmp_path, 'train')
    assert [r['step'] for r in train] == list(range(5, 41, 5))
    assert train[-1]['flops'] == pytest.approx(summary['flops']) and summary['flops'] > 0


APOLLO = ['--method', 'apollo', '--n_layer', 8, '--log_interval', 1]  # stages 1, 2, 4, 8
COMPOUND = ['--method', 'compound', '--n_layer', 4, '--d_ff', 128, '--log_interval', 1]  # 1, 2, 4 blocks
GROWTH = ['--n_layer', 4, '--max_steps', 16, '--log_interval', 1, '--eval_interval', 4, '--rewarmup', 2]
RESUME_CASES = {  # flags, and the step after which the run is stopped
    'gpt scratch': (['--model', 'gpt', '--max_steps', 16, '--eval_interval', 8, '--log_interval', 1], 8),
    'bert scratch': (['--model', 'bert', '--max_steps', 16, '--eval_interval', 8, '--log_interval', 1], 8),
    'gpt scratch by muon': (['--optimizer', 'muon', '--max_steps', 16, '--eval_interval', 8, '--log_interval', 1], 8),
    'gpt stack, before both growths': (['--model', 'gpt', '--method', 'stack', *GROWTH], 1),
    'gpt compound by muon, before its growths': ([*COMPOUND, '--optimizer', 'muon', '--max_steps', 20,
                                                 '--eval_interval', 5, '--embd_stages', '0.5,1,1'], 1),
    'gpt apollo under completep, inside stage 3': ([*APOLLO, '--scaling', 'completep', '--max_steps', 24,
                                                   '--eval_interval', 6], 7),
    'bert interpolate, before both growths': (['--model', 'bert', '--method', 'interpolate', *GROWTH], 1),
    'bert midas, before its three growths': (['--model', 'bert', '--method', 'midas', *GROWTH], 1),
    'gpt raptr, inside its second stage': (['--model', 'gpt', '--method', 'raptr', *GROWTH], 6),
    # one growth at step 13, where WSD's decay starts (12.8): the resumed run crosses both
    'gpt onelayer under wsd, before its growth and decay': (['--model', 'gpt', '--method', 'onelayer',
                                                            '--decay', 'wsd', *GROWTH], 10),
    'bert zero-layer under wsd, before its growth and decay': (['--model', 'bert', '--method', 'onelayer',
                                                               '--stages', '0,4', '--depth_op', 'fresh',
                                                               '--decay', 'wsd', *GROWTH], 10),
    'gpt apollo, inside stage 3': ([*APOLLO, '--model', 'gpt', '--max_steps', 24, '--eval_interval', 6], 7),
    'bert apollo, inside stage 3': ([*APOLLO, '--model', 'bert', '--max_steps', 24, '--eval_interval', 6], 7),
    'gpt compound, hidden size too': ([*COMPOUND, '--model', 'gpt', '--max_steps', 20, '--eval_interval', 5,
                                       '--embd_stages', '0.5,1,1'], 1),
    'gpt compound under completep by adamw, hidden size too': ([*COMPOUND, '--scaling', 'completep', '--optimizer',
                                                               'adamw', '--max_steps', 20, '--eval_interval', 5,
                                                               '--embd_stages', '0.5,1,1'], 1),
    'bert compound, pooled length': ([*COMPOUND, '--model', 'bert', '--length_op', 'pool', '--pos', 'learned',
                                      '--max_steps', 20, '--eval_interval', 5], 1),
    'bert apollo, width and length': ([*COMPOUND, '--method', 'apollo', '--n_layer', 8, '--model', 'bert',
                                       '--max_steps', 20, '--eval_interval', 5, '--grow', 'width,embd,length',
                                       '--embd_stages', '0.5,0.5,1,1'], 1),
}


@pytest.mark.parametrize('case', RESUME_CASES)
def test_resume_is_bit_exact(corpus, tmp_path, case):
    argv, stop_at = RESUME_CASES[case]
    assert_resumes(corpus, tmp_path, argv, stop_at)


@pytest.mark.parametrize('optimizer', ['adamw', 'muon'])
def test_a_wsd_scratch_run_branches_into_a_decay_of_its_own(capsys, corpus, tmp_path, optimizer):
    """--resume with a shorter --max_steps: a WSD scratch run stopped in its stable phase and resumed into the
    decay of the shorter run is that run, bit for bit (compare's --curve builds scratch's loss against compute
    so), under either optimizer. Where a step taken had another rate (past the new decay's start, a cosine
    run, a growth method, a warmup that is a share of the clock), one line."""
    wsd = ['--decay', 'wsd', '--warmup', 2, '--eval_interval', 4, '--log_interval', 1, '--optimizer', optimizer]
    run(corpus, tmp_path / 'short', *wsd, '--max_steps', 10)
    run(corpus, tmp_path / 'long', *wsd, '--max_steps', 20, '--stop_at', 8)
    grow.main(['--resume', '--out_dir', str(tmp_path / 'long'), '--max_steps', '10'])
    for kind in ('train', 'eval'):
        assert strip(records(tmp_path / 'long', kind)) == strip(records(tmp_path / 'short', kind)), kind
    run(corpus, tmp_path / 'late', *wsd, '--max_steps', 20, '--stop_at', 12)
    fails(capsys, ['--resume', '--out_dir', str(tmp_path / 'late'), '--max_steps', '10'], '--max_steps 10',
          'wsd', '12 steps')
    run(corpus, tmp_path / 'cosine', '--max_steps', 20, '--stop_at', 4)
    fails(capsys, ['--resume', '--out_dir', str(tmp_path / 'cosine'), '--max_steps', '10'], '--max_steps')


def test_a_checkpoint_of_an_earlier_layout_is_refused_in_one_line(capsys, corpus, tmp_path):
    """No compatibility code: a checkpoint without a flag of today's, or without a part of today's
    checkpoint, is refused by name, and the run is started again."""
    run(corpus, tmp_path, '--max_steps', 2)
    ck = torch.load(tmp_path / 'ckpt.pt', weights_only=False)
    del ck['args']['stage_clock']
    torch.save(ck, tmp_path / 'ckpt.pt')
    fails(capsys, ['--resume', '--out_dir', str(tmp_path)], 'earlier version', '--stage_clock', 'again')
    del ck['scaler']
    torch.save(ck, tmp_path / 'ckpt.pt')
    fails(capsys, ['--resume', '--out_dir', str(tmp_path)], 'lacks scaler', 'again')


def test_checkpoint_is_complete(corpus, tmp_path):
    run(corpus, tmp_path, '--max_steps', 4, '--eval_interval', 2)
    left = ['ckpt.prev.pt', 'ckpt.pt', 'log.jsonl'] + ['run.png'] * HAVE_MATPLOTLIB
    assert sorted(os.listdir(tmp_path)) == left  # no temporary file left
    ck = torch.load(tmp_path / 'ckpt.pt', weights_only=False)
    assert ck['run']['step'] == 4 and ck['config']['n_blocks'] == 2 and ck['args']['max_steps'] == 4
    assert set(runtime.CHECKPOINT_KEYS) <= set(ck) and 'torch_rng' in ck['rank_rngs'][0]


def test_a_failed_checkpoint_write_keeps_the_previous_one(corpus, tmp_path, monkeypatch):
    """Checkpoints are atomic: a write that dies half-way (disk full, a kill) leaves the last good one, and
    the run resumes from it exactly."""
    argv = ['--max_steps', 8, '--eval_interval', 4, '--log_interval', 1]
    real_save, calls = torch.save, []

    def save_then_fail(obj, f):  # the second checkpoint dies half-way through writing
        calls.append(f)
        if len(calls) == 2:
            f.write(b'PK\x03\x04 half a zip')
            raise OSError(28, 'No space left on device')
        real_save(obj, f)
    monkeypatch.setattr(torch, 'save', save_then_fail)
    with pytest.raises(OSError):
        run(corpus, tmp_path / 'half', *argv)
    monkeypatch.setattr(torch, 'save', real_save)
    assert torch.load(tmp_path / 'half' / 'ckpt.pt', weights_only=False)['run']['step'] == 0  # the good one
    grow.main(['--resume', '--out_dir', str(tmp_path / 'half')])
    run(corpus, tmp_path / 'full', *argv)
    assert strip(records(tmp_path / 'half', 'train')) == strip(records(tmp_path / 'full', 'train'))


def test_previous_checkpoint_is_kept_and_used_when_the_last_is_damaged(capsys, corpus, tmp_path):
    argv = ['--max_steps', 6, '--eval_interval', 3, '--log_interval', 1]
    run(corpus, tmp_path / 'full', *argv)
    run(corpus, tmp_path / 'half', *argv, '--stop_at', 4)  # checkpoints at 0, 3 and 4 (the stop)
    assert torch.load(tmp_path / 'half' / 'ckpt.prev.pt', weights_only=False)['run']['step'] == 3
    size = os.path.getsize(tmp_path / 'half' / 'ckpt.pt')
    with open(tmp_path / 'half' / 'ckpt.pt', 'r+b') as f:  # truncated, as by a full disk
        f.truncate(size // 2)
    capsys.readouterr()
    grow.main(['--resume', '--out_dir', str(tmp_path / 'half')])  # falls back to step 3, with a warning
    warning = [line for line in capsys.readouterr().out.splitlines() if line.startswith('warning')]
    assert len(warning) == 1 and 'ckpt.prev.pt' in warning[0]
    assert strip(records(tmp_path / 'half', 'train')) == strip(records(tmp_path / 'full', 'train'))


def test_nonfinite_steps_are_skipped_then_the_run_stops(capsys, corpus, tmp_path):
    """--lr 50 blows up: the bad steps are not applied, the run stops with exit status 3, and the checkpoint
    left holds only finite weights; a lower --lr then resumes from it (README: "Checkpoints and signals").
    The skip is decided on the device and read when the loop logs: the same steps, whatever the interval."""
    argv = ['--n_layer', 2, '--lr', 50, '--max_steps', 60, '--eval_interval', 20]
    with pytest.raises(SystemExit):
        run(corpus, tmp_path / 'sparse', *argv, '--log_interval', 7)
    capsys.readouterr()
    argv += ['--log_interval', 1]
    with pytest.raises(SystemExit) as e:
        run(corpus, tmp_path, *argv)
    err = capsys.readouterr().err.strip()
    assert e.value.code == 3 and len(err.splitlines()) == 1, err
    for needle in ('3 steps in a row', 'stage 1/1', 'lr 4.', '--lr', '--rewarmup', '--opt_state reset'):
        assert needle in err, err
    skips = records(tmp_path, 'skip')
    assert [s['skips'] for s in skips] == [1, 2, 3] and np.diff([s['step'] for s in skips]).tolist() == [1, 1]
    assert records(tmp_path / 'sparse', 'skip') == skips
    ck = torch.load(tmp_path / 'ckpt.pt', weights_only=False)
    assert ck['run']['step'] == 0 and all(torch.isfinite(v).all() for v in ck['model'].values())
    summary = grow.main(['--resume', '--out_dir', str(tmp_path), '--lr', '3e-3'])
    assert summary['step'] == 60 and np.isfinite(summary['val_loss']) and summary['val_loss'] < 4.0


def test_evaluation_counts_the_tokens_predicted_right():
    rt = runtime.Runtime('cpu', 'float32')
    bert_y = torch.tensor([[-100, 3, -100, 5]])  # BERT's logits are those of the masked positions only
    assert grow.evaluate(FixedPredictions(torch.tensor([3, 7])), [(bert_y, bert_y)], rt) == (2.0, 0.5)
    gpt_y = torch.tensor([[1, 2, 3]])  # GPT's: every position
    assert grow.evaluate(FixedPredictions(torch.tensor([[1, 0, 3]])), [(gpt_y, gpt_y)], rt) == (2.0, 2 / 3)


def test_a_nonfinite_evaluation_keeps_the_last_checkpoint(capsys, corpus, tmp_path, monkeypatch):
    evaluations = iter([(5.0, 0.1), (float('nan'), 0.0)])
    monkeypatch.setattr(grow, 'evaluate', lambda *args, **kwargs: next(evaluations))
    with pytest.raises(SystemExit) as e:
        run(corpus, tmp_path, '--max_steps', 8, '--eval_interval', 4)
    assert e.value.code == 3 and 'validation loss at step 4 is nan' in capsys.readouterr().err
    assert torch.load(tmp_path / 'ckpt.pt', weights_only=False)['run']['step'] == 0
    assert not (tmp_path / 'ckpt.prev.pt').exists()  # nothing was written at step 4


def test_a_second_ctrl_c_exits_at_once():
    request = runtime.StopRequest()
    request.handle(signal.SIGTERM, None)
    assert request.signum == signal.SIGTERM  # the first asks for a checkpoint at the end of the step
    request = runtime.StopRequest()
    request.handle(signal.SIGINT, None)
    with pytest.raises(KeyboardInterrupt):
        request.handle(signal.SIGINT, None)


def test_an_untrained_byte_sample_prints_as_text(capfd, corpus, tmp_path):
    """A byte model's first samples hold bytes that are not UTF-8 and control characters (bell, escape, NUL):
    each is shown as U+FFFD, so the terminal gets text, never raw control bytes."""
    assert sample.printable('a\x07b\x1b[31mc\x00\n\td\ufffd') == 'a\ufffdb\ufffd[31mc\ufffd\n\td\ufffd'
    run(corpus, tmp_path, '--max_steps', 1, '--sample_tokens', 300)
    body = capfd.readouterr().out.split('--- sample ---\n', 1)[1].rsplit('\n--------------', 1)[0]  # (sample.py's)
    assert len(body) >= 100 and '\ufffd' in body  # an untrained model draws unprintable bytes: replaced
    assert all(c.isprintable() or c in '\n\t' for c in body), repr(body)


def test_sample_a_checkpoint_with_a_prompt(capfd, corpus, tmp_path):
    """--resume --sample shows what a checkpoint learned and trains nothing; --prompt steers it, also at the
    end of a run."""
    summary = run(corpus, tmp_path / 'gpt', '--max_steps', 20, '--lr', '3e-3', '--sample_tokens', 12,
                  '--prompt', 'import ')
    assert '--- sample ---\nimport ' in capfd.readouterr().out and summary['step'] == 20  # (sample.py's)
    before = (tmp_path / 'gpt' / 'log.jsonl').read_text(), os.path.getmtime(tmp_path / 'gpt' / 'ckpt.pt')
    text = sample.main(['--resume', '--out_dir', str(tmp_path / 'gpt'), '--sample', '--prompt', 'def main(',
                      '--sample_tokens', '30'])
    body = text.splitlines()[1]
    assert body.startswith('def main(') and len(body) > len('def main(')
    again = ['--out_dir', str(tmp_path / 'gpt'), '--prompt', 'def main(', '--sample_tokens', '30']
    assert sample.main(again) == text
    assert ((tmp_path / 'gpt' / 'log.jsonl').read_text(),
            os.path.getmtime(tmp_path / 'gpt' / 'ckpt.pt')) == before
    run(corpus, tmp_path / 'bert', '--model', 'bert', '--max_steps', 20, '--lr', '3e-3')
    prompt = 'for i in ra[MASK]ge(1[MASK]):'
    text = sample.main(['--resume', '--out_dir', str(tmp_path / 'bert'), '--sample', '--prompt', prompt])
    lines = dict(line.split(': ', 1) for line in text.splitlines()[1:-1])
    guesses = eval(lines['guesses'])
    assert len(guesses) == 2 and eval(lines['filled']) == prompt.replace('[MASK]', guesses[0], 1).replace(
        '[MASK]', guesses[1])
    fails(capfd, ['--resume', '--out_dir', str(tmp_path / 'bert'), '--sample', '--prompt', 'no marker'],
          '--prompt', '[MASK]')
    fails(capfd, ['--out_dir', str(tmp_path / 'bert'), '--sample'], '--sample', '--resume', main=grow.main)


def test_sigterm_checkpoints_at_the_step_and_resumes_bit_exactly(corpus, tmp_path):
    argv = ['--max_steps', 5000, '--eval_interval', 1000, '--log_interval', 1]
    child = grow_process(corpus, tmp_path / 'half', *argv)
    for line in child.stdout:  # read while it runs: the lines reach the pipe as they are printed
        if line.startswith('step 10/'):
            break
    assert child.poll() is None
    child.send_signal(signal.SIGTERM)
    out, err = child.communicate(timeout=120)
    assert child.returncode == 128 + signal.SIGTERM and 'SIGTERM' in err and '--resume' in err, err
    stopped = torch.load(tmp_path / 'half' / 'ckpt.pt', weights_only=False)['run']['step']
    assert 10 <= stopped < 5000 and records(tmp_path / 'half', 'train')[-1]['step'] == stopped
    end = stopped + 10
    for p in (grow_process(corpus, tmp_path / 'half', '--resume', '--stop_at', end),
              grow_process(corpus, tmp_path / 'full', *argv, '--stop_at', end)):
        assert p.wait(timeout=300) == 0, p.stderr.read()
    half, full = records(tmp_path / 'half', 'train'), records(tmp_path / 'full', 'train')
    assert half[-1]['step'] == end and strip(half) == strip(full)

# ----------------------------------------------------------------------------- schedules


def clock(steps):
    """A clock of `steps` optimizer steps for `schedule.lr_at`."""
    return schedule.Budget(steps, False, 1.0, [0], [1.0])


def test_lr_schedule():
    args = flags.parse_args(['--max_steps', '100', '--warmup', '10', '--lr', '1e-3'])
    lrs = [schedule.lr_at(s, args, clock(100)) for s in range(100)]
    assert lrs[0] == pytest.approx(1e-4) and lrs[9] == pytest.approx(1e-3)
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:])) and lrs[-1] == pytest.approx(1e-4, rel=0.01)


def test_wsd_holds_the_peak_then_decays_linearly_over_the_last_decay_frac():
    args = flags.parse_args(['--max_steps', '100', '--warmup', '10', '--lr', '1e-3', '--decay', 'wsd'])
    lrs = [schedule.lr_at(s, args, clock(100)) for s in range(101)]
    assert lrs[0] == pytest.approx(1e-4) and lrs[9] == pytest.approx(1e-3)  # the warmup's corners
    assert lrs[10:81] == [1e-3] * 71  # stable until the last 20% (the default --decay_frac)
    assert lrs[90] == pytest.approx(5.5e-4) and lrs[100] == pytest.approx(1e-4)  # linear to min_lr
    assert schedule.lr_at(80.5, args, clock(100)) == pytest.approx(1e-3 - 0.025 * 9e-4)  # (the FLOPs clock)
    half = flags.parse_args(['--max_steps', '100', '--warmup', '10', '--decay', 'wsd', '--decay_frac', '0.5',
                            '--min_lr', '0', '--lr', '1e-3'])
    assert schedule.lr_at(50, half, clock(100)) == 1e-3
    assert schedule.lr_at(75, half, clock(100)) == pytest.approx(5e-4)
    # a growth does not restart it; --rewarmup ramps after the growth as under every schedule
    again = flags.parse_args(['--max_steps', '100', '--warmup', '10', '--decay', 'wsd', '--rewarmup', '4', '--lr',
                              '1e-3'])
    assert [schedule.lr_at(s, again, clock(100), s - 80 if s >= 80 else None) for s in (79, 80, 83, 84)] == \
        pytest.approx([1e-3, 2.5e-4, 1e-3 - 0.15 * 9e-4, 1e-3 - 0.2 * 9e-4])


def test_the_bu_recipe_sets_its_flags_unless_typed(corpus, tmp_path):
    """--recipe bu: Muon, WSD with 2% warmup and a 10% decay to 0, weight decay 0.01, no clipping, and for
    onelayer its one growth at 0.9; a flag typed keeps its value, for every method of a comparison alike, and a
    resumed run keeps the flags it was started with."""
    args = flags.parse_args(['--method', 'onelayer', '--recipe', 'bu', '--max_steps', '1000', '--size', 'nano'])
    assert (args.optimizer, args.muon_lr, args.decay, args.decay_frac, args.min_lr, args.weight_decay,
            args.grad_clip, args.stage_at) == ('muon', 0.04, 'wsd', 0.1, 0.0, 0.01, 0.0, [0.9])
    lrs = [schedule.lr_at(s, args, clock(1000)) for s in range(1001)]
    assert lrs[19] == lrs[899] == args.lr > lrs[18] and lrs[1000] == 0.0  # 20 warmup steps, decay from 900
    cfg = flags.model_config(args, data.load(corpus)[0])
    assert [st.start for st in schedule.stages_for(args, cfg)[0]] == [0, 900]
    scratch = flags.parse_args(['--recipe', 'bu', '--method', 'scratch', '--weight_decay', '0.1'])
    assert (scratch.stage_at, scratch.weight_decay, scratch.optimizer) == (None, 0.1, 'muon')
    plans = compare.show_plan(flags.parse_args(['--plan', '--compare', 'scratch,onelayer', '--recipe', 'bu',
                                                '--data', corpus, '--out_dir', str(tmp_path / 'plan')]))
    assert 'growth at clock 900' in '\n'.join(plans['onelayer'][0])  # what the comparison's run does
    run(corpus, tmp_path, '--recipe', 'bu', '--weight_decay', 0.1, '--max_steps', 4, '--stop_at', 2)
    resumed = flags.parse_args(['--resume', '--out_dir', str(tmp_path)])  # (TINY types --optimizer adamw)
    assert (resumed.weight_decay, resumed.optimizer, resumed.warmup) == (0.1, 'adamw', 0.02)


def test_gpt_trains_with_muon_and_bert_with_adamw_by_default():
    """The default optimizer: Muon for GPT's matrices at 0.02 (nanochat's; nano's fitted 0.04), AdamW for BERT;
    a typed one wins."""
    gpt, bert = flags.parse_args(['--size', 'tiny']), flags.parse_args(['--model', 'bert'])
    assert (gpt.optimizer, gpt.muon_lr, bert.optimizer, bert.muon_lr) == ('muon', 0.02, 'adamw', None)
    assert flags.parse_args(['--size', 'nano']).muon_lr == 0.04
    assert flags.parse_args(['--optimizer', 'adamw']).optimizer == 'adamw'
    assert flags.parse_args(['--model', 'bert', '--optimizer', 'muon']).optimizer == 'muon'


def test_warmup_is_steps_or_a_share_of_the_clock(capsys, corpus):
    assert schedule.lr_corners(flags.parse_args(['--warmup', '0.02']), 1440)[0] == 29  # round(28.8)
    assert schedule.lr_corners(flags.parse_args(['--warmup', '31']), 1440)[0] == 31
    assert schedule.lr_corners(flags.parse_args([]), 1440)[0] == 72  # 5% by default
    for bad in ('1.5', '1000', '-0.1'):
        fails(capsys, ['--data', corpus, '--warmup', bad], '--warmup', 'share')


def test_rewarmup_ramps_after_each_growth():
    args = flags.parse_args(['--max_steps', '100', '--warmup', '5', '--rewarmup', '4'])
    plain = flags.parse_args(['--max_steps', '100', '--warmup', '5'])
    for s in range(100):
        since = s - 50 if s >= 50 else s - 20 if s >= 20 else None  # (growths at steps 20 and 50)
        ratio = schedule.lr_at(s, args, clock(100), since) / schedule.lr_at(s, plain, clock(100), since)
        expected = (s - 20 + 1) / 4 if 20 <= s < 24 else (s - 50 + 1) / 4 if 50 <= s < 54 else 1.0
        assert ratio == pytest.approx(expected)


def test_rewarmup_counts_optimizer_steps_on_the_flops_clock(corpus, tmp_path):
    """--rewarmup N ramps over N optimizer steps after a growth, also where the clock reads FLOPs (a shallow
    step is a fraction of a unit there: counted in clock units the ramp would take several times N steps)."""
    run(corpus, tmp_path, '--method', 'stack', '--n_layer', 4, '--max_steps', 40, '--budget', 'flops',
        '--stage_clock', 'flops', '--rewarmup', 3, '--decay', 'wsd', '--warmup', 0, '--log_interval', 1)
    lr = {t['step']: t['lr'] for t in records(tmp_path, 'train')}
    growths = records(tmp_path, 'growth')
    assert len(growths) == 2
    for g in growths:  # (the record of step s + 1 is the first step after a growth at step s)
        assert [lr[g['step'] + k] for k in range(5)] == pytest.approx([1e-3, 1e-3 / 3, 2e-3 / 3, 1e-3, 1e-3])


def number(line, before):
    """The number that follows `before` in a line of --plan."""
    return float(line.split(before, 1)[1].split()[0].rstrip(',;:%'))


@pytest.mark.parametrize('argv', [['--method', 'onelayer', '--rewarmup', 2],
                                  ['--method', 'stack', '--budget', 'flops'],
                                  ['--method', 'apollo', '--budget', 'flops', '--stages', '1,2,4', '--stage_at',
                                   '0.2,0.5'],
                                  ['--method', 'stack', '--budget', 'flops', '--stage_clock', 'flops']])
def test_plan_says_what_the_run_then_logs(corpus, tmp_path, argv):
    """--plan trains nothing and prints where each growth happens, the learning rate of the step after it, the
    FLOPs of each stage and of the run: the run with the same flags logs the same numbers (on the FLOPs clock
    a growth and the end come at the first step past the planned point: within one step's FLOPs; Apollo's
    FLOPs are those of its mean depth in the plan, of its draws in the run)."""
    argv = [*argv, '--n_layer', 4, '--max_steps', 20, '--eval_interval', 10, '--log_interval', 1, '--decay',
            'wsd']
    lines, series = run(corpus, tmp_path / 'plan', *argv, '--plan')[argv[1]]
    assert not (tmp_path / 'plan' / 'log.jsonl').exists()
    run(corpus, tmp_path / 'run', *argv)
    growths, train = records(tmp_path / 'run', 'growth'), records(tmp_path / 'run', 'train')
    said = [line for line in lines if line.startswith('  growth at')]
    stages = [line for line in lines if line.startswith('stage')]
    assert len(said) == len(growths) == len(stages) - 1 > 0
    length = int(stages[-1].split('clock ')[1].split('-')[1].split(',')[0])  # the clock's end: 20 steps, or
    own = '--budget' in argv and '--stage_clock' not in argv  # under equal compute its own, more than 20
    assert len(series) == length + 1 and (length > 20 if own else length == 20)
    planned = np.cumsum([number(line, 'steps, ') for line in stages])  # FLOPs at each stage's end
    ended = [g['flops'] for g in growths] + [train[-1]['flops']]
    for line, growth in zip(said, growths):
        lr = train[growth['step']]['lr']  # (the record of step s + 1: the first step after the growth)
        assert number(line, '; lr ') == pytest.approx(lr, rel=1e-6), (line, lr)
    assert number(lines[-1], 'total: ') == pytest.approx(planned[-1], rel=1e-3)
    if '--budget' in argv:  # equal compute: the plan spends scratch's FLOPs, to within one step of the method
        assert number(lines[-1], 'FLOPs, ') == pytest.approx(100, abs=100 * max(np.diff(planned, prepend=0)
                                                                                / planned[-1]))
    if '--stage_clock' not in argv:  # the clock is the step: growths exact, FLOPs exact but for Apollo's draws
        assert [number(line, 'clock ') for line in said] == [g['step'] for g in growths]
        assert list(planned) == pytest.approx(ended, rel=1e-3 if 'apollo' not in argv else 0.2)
    else:
        per_step = [t['flops'] - u['flops'] for t, u in zip(train[1:], train)]
        assert all(0 <= e - p < max(per_step) for p, e in zip(planned, ended)), (planned, ended)


def test_plan_of_a_comparison_draws_its_methods_side_by_side(corpus, tmp_path):
    plans = run(corpus, tmp_path, '--plan', '--compare', 'scratch,apollo,onelayer', '--n_layer', 8,
                '--max_steps', 20)
    assert list(plans) == ['scratch', 'apollo', 'onelayer']
    depths = {m: [d for _, d, _ in series] for m, (_, series) in plans.items()}
    assert depths['scratch'] == [8] * 21 and depths['onelayer'] == [1] * 16 + [8] * 5
    mean = sum(d * p for d, p in depth_probabilities(1, 8, 'lvps').items())
    assert depths['apollo'][0] == pytest.approx(mean)
    assert (tmp_path / 'plan.png').exists() == HAVE_MATPLOTLIB


def test_budget_knows_the_flops_to_go_and_the_cost(capsys, corpus, tmp_path):
    """The ETA divides the FLOPs still to spend (from the known schedule) by the current FLOPs/s; a finished
    run says what it spent against scratch."""
    steps = schedule.Budget(100, False, 10.0, [0, 20, 50], [2.0, 5.0, 10.0])
    assert steps.to_go(0) == 20 * 2 + 30 * 5 + 50 * 10 and steps.to_go(30) == 20 * 5 + 50 * 10
    assert steps.to_go(100) == 0
    assert schedule.Budget(100, True, 10.0, [0, 20, 50], [2.0, 5.0, 10.0]).to_go(40) == 600
    run(corpus, tmp_path, '--method', 'stack', '--n_layer', 4, '--max_steps', 16)
    spent = records(tmp_path, 'eval')[-1]['flops']
    cfg = Config(kind='gpt', vocab_size=320, block_size=32, n_layer=4, n_head=2, n_embd=32, d_ff=128)
    share = spent / (16 * flops_per_step(cfg, 4, 8 * 32, 32))
    out = capsys.readouterr().out
    assert f"{100 * share:.0f}% of what scratch spends in 16 steps" in out and share < 0.9
    n = torch.get_num_threads()
    # a CPU run reproduces at its thread count
    assert f"on cpu (float32, {n} thread{'s' * (n > 1)})" in out and out.count('stack (StackBERT') == 1


def test_growth_happens_at_the_expected_steps(corpus, tmp_path):
    run(corpus, tmp_path, '--method', 'stack', '--n_layer', 4, '--max_steps', 16, '--log_interval', 1)
    growths = records(tmp_path, 'growth')  # stages 1,2,4 at 0.125 and 0.3 of 16 steps: steps 2 and 5
    assert [(g['step'], g['old_n_blocks'], g['new_n_blocks'], g['stage']) for g in growths] == [(2, 1, 2, 2),
                                                                                            (5, 2, 4, 3)]
    train = records(tmp_path, 'train')
    assert [r['depth'] for r in train] == [1, 1, 2, 2, 2] + [4] * 11  # record s is the update s-1 -> s
    cfg = Config(kind='gpt', vocab_size=320, block_size=32, n_layer=4, n_head=2, n_embd=32, d_ff=128)
    flops = [b['flops'] - a['flops'] for a, b in zip([dict(flops=0)] + train, train)]
    assert flops == [flops_per_step(cfg, r['depth'], 8 * 32, 32) for r in train]  # FLOPs follow the depth run


@pytest.mark.parametrize('kind', ['gpt', 'bert'])
@pytest.mark.parametrize('method, stage_at', [('stack', '0.25,0.5'), ('interpolate', '0.25,0.5'),
                                              ('compound', '0.25,0.5'), ('gstack', '0.25'),
                                              ('midas', '0.25,0.5,0.75'),  # (midas: 1,2,3,4 blocks)
                                              ('raptr', '0.25,0.5')])  # (raptr: paths of 2,3,4 layers)
def test_loss_falls_after_every_growth(corpus, tmp_path, kind, method, stage_at):
    """Four steps after each growth the grown model beats the model it grew from, on the same eval batches."""
    run(corpus, tmp_path, *(COMPOUND if method == 'compound' else ['--n_layer', 4]), '--model', kind,
        '--method', method, '--max_steps', 48, '--eval_interval', 4, '--lr', '3e-3', '--stage_at', stage_at)
    val = {r['step']: r['val_loss'] for r in records(tmp_path, 'eval')}
    growths = records(tmp_path, 'growth')
    assert [g['step'] for g in growths] == [12, 24, 36][:stage_at.count(',') + 1]
    for g in growths:  # the evaluation at step g ran just before the growth
        assert val[g['step'] + 4] < val[g['step']] - 0.02, (g, val)


def test_grow_switches_dimensions():
    """--grow names the dimensions grown besides depth: width (d_ff), embd (n_embd, n_head), length; none."""
    cfg = Config(kind='gpt', vocab_size=320, block_size=32, n_layer=4, n_head=4, n_embd=32, d_ff=128)

    def shapes(*argv):
        stages, _ = schedule.stages_for(flags.parse_args(['--size', 'tiny', *argv]), cfg)
        return [(s.n_blocks, s.n_embd, s.n_head, s.d_ff, s.seq, s.batch) for s in stages]
    plain = [(1, 32, 4, 128, 32, 32), (2, 32, 4, 128, 32, 32), (4, 32, 4, 128, 32, 32)]
    assert shapes('--method', 'compound') == [(1, 32, 4, 32, 8, 128), (2, 32, 4, 64, 16, 64),
                                              (4, 32, 4, 128, 32, 32)]
    assert shapes('--method', 'compound', '--grow', 'none') == plain
    assert shapes('--method', 'compound', '--grow', 'depth') == shapes('--method', 'stack') == plain
    assert shapes('--method', 'stack', '--grow', 'embd') == [(1, 8, 1, 128, 32, 32), (2, 16, 2, 128, 32, 32),
                                                             (4, 32, 4, 128, 32, 32)]
    assert shapes('--method', 'stack', '--grow', 'width,embd') == [(1, 8, 1, 32, 32, 32),
                                                                   (2, 16, 2, 64, 32, 32),
                                                                   (4, 32, 4, 128, 32, 32)]


def test_a_new_method_is_one_entry(corpus, tmp_path, monkeypatch):
    """A method added to schedule.METHODS, and nowhere else, trains, grows where its entry says, is compared with
    scratch and keeps its own validation: the loop, the budget and --compare ask the entry, not the name."""
    def at_least_two(args, n_blocks):
        if n_blocks[0] < 2:
            raise schedule.InputError(f"--stages {schedule.fmt(n_blocks)}: this method starts from 2 blocks")
    late = schedule.Method('a test of the method table', lambda L: [L // 2, L], [0.75], 'interpolate',
                        check=at_least_two)
    monkeypatch.setitem(schedule.METHODS, 'late', late)
    rows = run(corpus, tmp_path / 'cmp', '--compare', 'scratch,late', '--n_layer', 4, '--max_steps', 12,
               '--eval_interval', 6)
    assert [r['method'] for r in rows] == ['scratch', 'late']
    growth, = records(tmp_path / 'cmp' / 'late' / 'seed1337', 'growth')
    assert (growth['step'], growth['src'], growth['op']) == (9, [0, 0, 1, 1], 'interpolate')
    assert 0.5 < rows[1]['flops_total'] / rows[0]['flops_total'] < 1  # 3/4 of the steps at half the depth
    with pytest.raises(schedule.InputError, match='starts from 2 blocks'):
        schedule.stages_for(flags.parse_args(['--method', 'late', '--stages', '1,4']), small('gpt', n_layer=4))


def test_no_method_name_is_compared_outside_the_table():
    """The design rule behind the test above: grow.py, runtime.py and the scripts name no
    method."""
    for path in ('grow.py', 'runtime.py', 'compare.py', 'sample.py', 'export.py'):
        source = open(os.path.join(os.path.dirname(__file__), path)).read()
        named = [m for m in schedule.METHODS if f"'{m}'" in source or f'"{m}"' in source]
        assert named == [], (path, named)


# the project's files by layer: each imports only files of lower layers (scripts on top, model and data at
# the bottom), inside functions too
LAYERS = {'model': 0, 'data': 0, 'schedule': 1, 'runtime': 1, 'flags': 2, 'grow': 3, 'compare': 4, 'sample': 4,
          'export': 4, 'bench': 4, 'finetune': 5}


def test_imports_go_one_way():
    """Every import between project files, lazy ones included, goes down the layers: no cycle, and the core
    (model, data, schedule, runtime, flags, grow) never imports a script above it."""
    import ast
    here = os.path.dirname(os.path.abspath(__file__))
    assert sorted(LAYERS) == sorted(f[:-3] for f in os.listdir(here) if f.endswith('.py') and f != 'test_grow.py')
    for name, layer in LAYERS.items():
        tree = ast.parse(open(os.path.join(here, name + '.py')).read())
        imported = {a.name.split('.')[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names} | \
            {n.module.split('.')[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        for other in imported & set(LAYERS):
            assert LAYERS[other] < layer, f"{name}.py (layer {layer}) imports {other}.py (layer {LAYERS[other]})"


def test_grow_py_hands_its_modes_to_their_scripts(corpus, tmp_path):
    """`python grow.py --compare DIR` is compare.py's report, `python grow.py --resume --sample` sample.py's
    sample: the process becomes the script (the core imports none of them)."""
    fake_run(tmp_path / 'cmp' / 'scratch' / 'seed1', [0, 100, 200], [6, 4, 2.0])
    fake_run(tmp_path / 'cmp' / 'fast' / 'seed1', [0, 100, 200], [6, 2.0, 1.8])
    here = os.path.dirname(os.path.abspath(__file__))
    out = subprocess.run([sys.executable, 'grow.py', '--compare', str(tmp_path / 'cmp')], cwd=here,
                         capture_output=True, text=True)
    assert out.returncode == 0 and 'target L* = ' in out.stdout and 'fast' in out.stdout, out.stderr
    run(corpus, tmp_path / 'run', '--max_steps', 2)
    out = subprocess.run([sys.executable, 'grow.py', '--resume', '--out_dir', str(tmp_path / 'run'), '--sample',
                          '--sample_tokens', '20'], cwd=here, capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith('--- sample ---'), out.stderr
    with pytest.raises(SystemExit):  # from Python, grow.main names the script instead of replacing its caller
        grow.main(['--compare', str(tmp_path / 'cmp')])


# ----------------------------------------------------------------------------- Apollo

LVPS_TABLE = {  # P(d) for d = k..12 and E[d], L = 12: a 400k-draw Monte Carlo of the
    # official apollo_utils.py sampler (yuanyehome/Apollo-AAAI-2024-Release)
    1: ([.736, .105, .053, .032, .021, .015, .011, .009, .007, .006, .005, .002], 1.77),
    3: ([.637, .104, .070, .050, .037, .029, .023, .019, .016, .016], 4.23),
    6: ([.648, .086, .067, .053, .044, .036, .067], 7.14),
}


@pytest.mark.parametrize('k', [1, 3, 6])
def test_lvps_matches_the_official_code(k):
    rng = np.random.default_rng(0)
    d = np.array([draw_depth(k, 12, 'lvps', rng) for _ in range(200_000)])
    probs, mean = LVPS_TABLE[k]
    assert d.min() == k and d.max() == 12
    np.testing.assert_allclose(np.bincount(d, minlength=13)[k:] / len(d), probs, atol=0.01)
    assert abs(d.mean() - mean) < 0.05
    assert draw_depth(12, 12, 'lvps', rng) == 12
    exact = depth_probabilities(k, 12, 'lvps')  # what --plan and the budget's ETA use
    np.testing.assert_allclose(list(exact.values()), probs, atol=0.002)
    assert list(exact) == list(range(k, 13)) and sum(exact.values()) == pytest.approx(1)


def test_other_samplings():
    rng = np.random.default_rng(0)
    draw = lambda how, k: np.array([draw_depth(k, 12, how, rng) for _ in range(60_000)])  # noqa: E731
    us = draw('us', 3)
    np.testing.assert_allclose(np.bincount(us, minlength=13)[3:] / len(us), [0.1] * 10, atol=0.01)
    es = draw('es', 3)
    assert set(es) == {3, 12} and abs((es == 12).mean() - 0.5) < 0.01
    assert set(draw('fs', 3)) == {12} and set(draw('none', 3)) == {3}


@pytest.mark.parametrize('kind', ['gpt', 'bert'])
def test_apollo_flops_follow_the_sampled_depths(corpus, tmp_path, kind):
    run(corpus, tmp_path, *APOLLO, '--model', kind, '--max_steps', 40)
    train = records(tmp_path, 'train')
    depths = [r['depths'][0] for r in train]
    assert all(len(r['depths']) == 1 and r['depth'] == r['depths'][0] for r in train)
    assert [r['stage'] for r in train] == [1] * 2 + [2] * 2 + [3] * 6 + [4] * 30  # 0.05, 0.1, 0.25 of 40
    stage_ks = [1] * 2 + [2] * 2 + [4] * 6 + [8] * 30
    assert all(k <= d <= 8 for k, d in zip(stage_ks, depths)) and len(set(depths[:10])) > 1  # really sampled
    cfg = Config(kind=kind, vocab_size=320, block_size=32, n_layer=8, n_head=2, n_embd=32, d_ff=128)
    flops = np.diff([0] + [r['flops'] for r in train])
    expected = [flops_per_step(cfg, d, 8 * 32, 32) for d in depths]
    if kind == 'gpt':
        assert list(flops) == expected
    else:  # BERT's head FLOPs follow the masked count of each batch: only the head term may differ
        head = 6 * (32 * 320 + 32 * 32) * 8 * 32 * 0.15
        assert np.all(np.abs(flops - expected) < head)
    stages = records(tmp_path, 'stage')
    assert [s['stage'] for s in stages] == [1, 2, 3, 4]
    assert [s['micro_batches'] for s in stages] == [2, 2, 6, 30]
    for s, lo in zip(stages, (0, 2, 4, 10)):
        hist = {int(d): n for d, n in s['depth_hist'].items()}
        assert hist == dict(zip(*np.unique(depths[lo:lo + s['micro_batches']], return_counts=True)))
        assert s['mean_depth'] == pytest.approx(np.mean(depths[lo:lo + s['micro_batches']]))
    assert all(e['depth'] == 8 for e in records(tmp_path, 'eval'))  # evaluation at full depth L
    growths = records(tmp_path, 'growth')
    assert all(g['loss_before'] == pytest.approx(g['loss_after'], abs=1e-5) for g in growths)


def test_apollo_samples_a_depth_per_micro_batch(corpus, tmp_path):
    run(corpus, tmp_path, *APOLLO, '--max_steps', 12, '--grad_accum', 4, '--batch_size', 2, '--sample_per',
        'micro')
    train = records(tmp_path, 'train')
    assert all(len(r['depths']) == 4 for r in train) and any(len(set(r['depths'])) > 1 for r in train)
    cfg = Config(kind='gpt', vocab_size=320, block_size=32, n_layer=8, n_head=2, n_embd=32, d_ff=128)
    flops = np.diff([0] + [r['flops'] for r in train])
    assert list(flops) == [sum(flops_per_step(cfg, d, 2 * 32, 32) for d in r['depths']) for r in train]
    # micro-batches per stage: 1 step of 1 block, then 2 of 4 (the 2-block stage rounds to no step), 9 of 8
    assert [s['micro_batches'] for s in records(tmp_path, 'stage')] == [4 * n for n in (1, 2, 9)]


def test_shared_lr_scales_the_rate_of_each_block():
    # blocks 0, 0, 1, 2
    assert schedule.shared_lr_scales(3, [4], 'interpolate', 'uses') == {0: 0.5, 1: 1.0, 2: 1.0}
    assert schedule.shared_lr_scales(2, [4, 2], 'interpolate', 'uses') == {0: 0.75, 1: 0.75}  # averaged
    assert schedule.shared_lr_scales(3, [12], 'interpolate', 'ratio') == {0: 0.25, 1: 0.25, 2: 0.25}
    assert schedule.shared_lr_scales(3, [12], 'interpolate', None) == {}


def test_shared_lr_reaches_the_optimizer(corpus, tmp_path):
    run(corpus, tmp_path, *APOLLO, '--max_steps', 6, '--shared_lr', 'uses', '--stage_at', '0.5,0.6,0.9',
        '--stop_at', 4)
    last = records(tmp_path, 'train')[-1]  # stage 2 of 1, 2, 4, 8 blocks
    groups = torch.load(tmp_path / 'ckpt.pt', weights_only=False)['optimizer']['param_groups']
    uses = np.bincount(map_layers(2, last['depth']), minlength=2)
    assert {g['block']: g['lr'] for g in groups if 'block' in g} == pytest.approx(
        {i: last['lr'] / uses[i] for i in range(2)})
    assert [g['lr'] for g in groups if 'block' not in g] == pytest.approx([last['lr']] * 2)


def test_beta2_reaches_the_optimizer_after_a_growth(corpus, tmp_path):
    """--beta2 (Apollo's and StackBERT's official code use 0.999) is the optimizer's, also after a growth,
    which builds a new AdamW."""
    run(corpus, tmp_path, *APOLLO, '--max_steps', 6, '--beta2', 0.999, '--stage_at', '0.3,0.4,0.5')
    groups = torch.load(tmp_path / 'ckpt.pt', weights_only=False)['optimizer']['param_groups']
    assert records(tmp_path, 'train')[-1]['stage'] > 1 and {g['betas'] for g in groups} == {(0.9, 0.999)}


def test_each_kind_has_its_defaults(corpus):
    """GPT: learned positions, pre-LN, lr 1e-3. BERT: rotary positions, post-LN, lr 5e-4 (RESULTS.md, "A BERT
    that learns on a CPU"); the papers' BERT is --pos learned, and any flag typed wins."""
    meta = data.load(corpus)[0]

    def defaults(*argv):
        args = flags.parse_args(['--size', 'tiny', *argv])
        cfg = flags.model_config(args, meta)
        return cfg.pos, cfg.pre_ln, args.lr
    assert defaults() == ('learned', True, 1e-3)
    assert defaults('--model', 'bert') == ('rope', False, 5e-4)
    assert defaults('--model', 'bert', '--pos', 'learned', '--norm', 'pre', '--lr', '2e-3') == \
        ('learned', True, 2e-3)


def test_sampling_none_trains_and_evaluates_the_blocks_it_owns(corpus, tmp_path):
    """--sampling none draws no depth: every step, evaluation and growth probe runs the stage's k blocks, the
    model it trains (not depth L through the shared map, a configuration it never trained)."""
    run(corpus, tmp_path, *APOLLO, '--sampling', 'none', '--max_steps', 16, '--eval_interval', 2)
    # stages of 1, 2, 4 and 8 blocks from steps 0, 1, 2 and 4; an evaluation comes before a growth due then
    assert [e['depth'] for e in records(tmp_path, 'eval')] == [1, 2, 4] + [8] * 6
    assert [r['depths'] for r in records(tmp_path, 'train')][:5] == [[1], [2], [4], [4], [8]]
    assert [(g['loss_before'] == g['loss_after']) for g in records(tmp_path, 'growth')] == [False] * 3


def test_apollo_learns_and_is_the_default(corpus, tmp_path):
    assert flags.parse_args([]).method == 'apollo'
    run(corpus, tmp_path, *APOLLO, '--max_steps', 40, '--lr', '3e-3', '--eval_interval', 40)
    val = [r['val_loss'] for r in records(tmp_path, 'eval')]
    assert val[-1] < val[0] - 1.5


# ----------------------------------------------------------------------------- CompoundGrow

@pytest.mark.parametrize('kind', ['gpt', 'bert'])
def test_compound_stages_keep_tokens_and_follow_width_and_length_in_flops(corpus, tmp_path, kind):
    run(corpus, tmp_path, *COMPOUND, '--model', kind, '--max_steps', 20)
    train = records(tmp_path, 'train')
    assert [r['seq'] for r in train] == [8] * 2 + [16] * 4 + [32] * 14  # T/4, T/2, T from 10% and 30%
    tokens = np.diff([0] + [r['tokens'] for r in train])
    assert set(tokens) == {8 * 32}  # tokens per optimizer step constant across length stages
    growths = records(tmp_path, 'growth')
    assert [(g['new_n_blocks'], g['new_d_ff'], g['new_seq']) for g in growths] == [(2, 64, 16), (4, 128, 32)]
    widths = [32] * 2 + [64] * 4 + [128] * 14
    flops = np.diff([0] + [r['flops'] for r in train])
    for f, r, d_ff in zip(flops, train, widths):
        cfg = Config(kind=kind, vocab_size=320, block_size=32, n_layer=4, n_head=2, n_embd=32, d_ff=d_ff)
        expected = flops_per_step(cfg, r['depth'], 8 * 32, r['seq'])
        head = 6 * (32 * 320 + 32 * 32) * 8 * 32 * 0.15  # BERT: the masked count of each batch varies
        assert f == expected if kind == 'gpt' else abs(f - expected) < head


def test_pooling_trains_every_position_and_predicts_each_mask():
    """Embedding pooling keeps full windows: every position embedding gets a gradient (truncation would train
    only the first T/r), and two masked positions pooled together still get predictions of their own."""
    torch.manual_seed(0)
    m = Transformer(small('bert', block_size=16))
    x = torch.randint(0, 256, (2, 16))
    y = torch.full((2, 16), -100)
    y[0, 4], y[0, 5], y[1, 9] = x[0, 4], x[0, 5], x[1, 9]  # positions 4 and 5 share a window of 4
    x[0, 4] = x[0, 5] = x[1, 9] = 257
    logits, loss = m(x, y, pool=4)
    assert logits.shape == (3, 320) and not torch.allclose(logits[0], logits[1])
    loss.backward()
    assert (m.wpe.weight.grad.abs().sum(1) > 0).all()
    m.zero_grad()
    m(x[:, :4], y[:, :4])[1].backward()  # truncation to T/4 = 4
    assert (m.wpe.weight.grad[4:] == 0).all()


@pytest.mark.parametrize('norm', ['post', 'pre'])
def test_pooled_layers_see_the_full_length_context_and_mask_the_padding(norm):
    """A pooled stage's first layer attends over the full-length embeddings, not their means alone (swapping two
    tokens inside one pooled group leaves the means as they were and still changes the predictions), and a
    row's padded queries are masked (its predictions are those it gets alone): for post-LN and pre-LN BERT."""
    m = perturbed('bert', pre_ln=norm == 'pre')
    x = torch.randint(0, 300, (2, 16))
    x[1, 8], x[1, 9] = 5, 6
    y = torch.full_like(x, -100)
    y[0, [1, 6, 11]], y[1, 6] = x[0, [1, 6, 11]], x[1, 6]  # row 1 has one masked position, padded to three
    logits = m(x, y, pool=4)[0]
    torch.testing.assert_close(logits[3:], m(x[1:], y[1:], pool=4)[0])
    swapped = x.clone()
    swapped[1, 8], swapped[1, 9] = x[1, 9], x[1, 8]  # (positions 8-11 pool into one)
    assert (m(swapped, y, pool=4)[0][3:] - logits[3:]).abs().max() > 1e-4


def test_pooled_compound_bert_grows_the_pooling(corpus, tmp_path):
    run(corpus, tmp_path, *COMPOUND, '--model', 'bert', '--length_op', 'pool', '--pos', 'learned',
        '--max_steps', 20)
    train = records(tmp_path, 'train')
    assert {r['seq'] for r in train} == {32} and set(np.diff([0] + [r['tokens'] for r in train])) == {8 * 32}
    growths = records(tmp_path, 'growth')
    assert [(g['old_pool'], g['new_pool'], g['new_seq']) for g in growths] == [(4, 2, 32), (2, 1, 32)]
    # a pooled step costs less than a full one of its model
    flops = np.diff([0] + [r['flops'] for r in train])
    first = Config(kind='bert', vocab_size=320, block_size=32, n_layer=4, n_head=2, n_embd=32, d_ff=32)
    assert flops[0] < 0.9 * flops_per_step(first, 1, 8 * 32, 32)

# ----------------------------------------------------------------------------- compare mode


def test_first_crossing_on_known_curves():
    xs = [0, 10, 20, 30]
    assert compare.first_crossing(xs, [5, 4, 2, 1], 3) == 15          # halfway between 4 and 2
    assert compare.first_crossing(xs, [5, 4, 2, 1], 1) == 30          # reached at the last evaluation
    assert compare.first_crossing(xs, [5, 4, 2, 1], 0.5) is None      # never reached
    assert compare.first_crossing(xs, [2, 4, 1, 1], 3) == 0           # reached at the first evaluation
    # non-monotone: the first crossing counts
    assert compare.first_crossing(xs, [5, 3, 4, 2], 3.5) == 7.5
    # a bump is no crossing
    assert compare.first_crossing(xs, [5, 4, 4.5, 3], 3.5) == pytest.approx(20 + 10 / 1.5)
    assert compare.loss_at(xs, [5, 4, 2, 1], 25) == 1.5 and compare.loss_at(xs, [5, 4, 2, 1], 31) is None


def test_acceleration_ratio_on_synthetic_runs(tmp_path):
    fake_run(tmp_path / 'scratch' / 'seed1', [0, 100, 200, 300, 400], [6, 4, 3, 2.5, 2.0])
    fake_run(tmp_path / 'fast' / 'seed1', [0, 50, 100, 200, 300], [6, 4, 2.5, 2.2, 1.8], growth_at=50)  # 2.0: 250
    fake_run(tmp_path / 'slow' / 'seed1', [0, 100, 300], [6, 3, 2.1])  # never 2.0
    summary, rows, runs = compare.report(str(tmp_path))
    by = {r['method']: r for r in rows}
    assert [r['method'] for r in rows] == ['scratch', 'fast', 'slow']
    assert by['scratch']['target_loss'] == 2.0 and by['scratch']['flops_saved'] == 0.0
    assert by['fast']['flops_to_target'] == pytest.approx(250)
    assert by['fast']['flops_saved'] == pytest.approx(0.375)
    assert by['fast']['time_saved'] == pytest.approx(0.375)  # time is FLOPs / 10 in these runs
    assert by['slow']['flops_to_target'] is None and by['slow']['flops_saved'] is None
    assert by['fast']['loss_at_50pct'] == pytest.approx(2.2) and by['slow']['loss_at_100pct'] is None
    assert by['fast']['mean_depth'] == 3.0
    assert [(r['reached'], r['verdict']) for r in summary] == [(1, '-'), (1, 'one seed'), (0, 'one seed')]
    text = compare.write(summary, rows, str(tmp_path))
    assert '0/1' in text and '37.5%' in text
    written = compare.plot(runs, str(tmp_path))  # matplotlib is optional: CI has it, README's install not
    assert written is None if not HAVE_MATPLOTLIB else os.path.getsize(tmp_path / 'compare_flops.png') > 1000


def test_mean_depth_weighs_each_stage_by_its_micro_batches(tmp_path):
    """A run's mean executed depth weighs each stage by its micro-batches."""
    fake_run(tmp_path / 'scratch' / 'seed1', [0, 100], [6, 2.0])
    fake_run(tmp_path / 'now' / 'seed1', [0, 100], [6, 2.0])  # a first stage: 10 micro-batches at depth 3
    with open(tmp_path / 'now' / 'seed1' / 'log.jsonl', 'a') as f:
        f.write(json.dumps({'type': 'stage', 'step': 2, 'micro_batches': 30, 'mean_depth': 7.0}) + '\n')
    rows = {r['method']: r for r in compare.report(str(tmp_path))[1]}
    assert rows['now']['mean_depth'] == (10 * 3 + 30 * 7) / 40


def test_seed_band_reaches_the_end_of_the_shortest_curve():
    """The mean over seeds is taken on a grid ending at the shortest curve's end; lo + (hi - lo) can round
    past it (these two values do), and then one seed had no loss at the last point and the report crashed."""
    lo, hi = 0.4765969541523558, 6.310417348702668  # lo + (hi - lo) * 199 / 199 rounds one ulp past hi
    grid, mean, low, high = compare.band([([lo, hi], [3.0, 2.0]), ([0.0, 7.0], [4.0, 2.0])])
    assert grid[0] == lo and grid[-1] == hi and len(grid) == 200
    assert low[-1] == 2.0
    assert high[-1] == pytest.approx(4.0 - 2.0 * hi / 7.0)
    assert mean[-1] == (low[-1] + high[-1]) / 2
    # a comparison printed while a seed has only its first evaluation, a little later than the others' first
    grid, mean, low, high = compare.band([([3e-5, 9.0], [5.0, 2.0]), ([2e-5], [5.5])])
    assert grid == [3e-5] and mean == low == high == [5.0]


def test_seed_statistics_on_synthetic_runs(tmp_path):
    """Three seeds: each method paired with scratch's run of the same seed (its L*), known answers."""
    xs = [0, 100, 200, 300, 400]
    for seed, target in zip((1, 2, 3), (2.0, 2.1, 1.9)):
        fake_run(tmp_path / 'scratch' / f'seed{seed}', xs, [6, 4, 3, 2.5, target])
        better = {1: 0.10, 2: 0.12, 3: 0.08}[seed]  # crosses L* at 250 FLOPs in every seed
        fake_run(tmp_path / 'better' / f'seed{seed}', xs, [6, 4, target + 0.1, target - 0.1, target - better])
        noisy = {1: +0.05, 2: -0.06, 3: -0.01}[seed]  # seed 1 never reaches its L*
        fake_run(tmp_path / 'noisy' / f'seed{seed}', xs, [6, 4, 3, target + 0.1, target + noisy])
    summary, rows, runs = compare.report(str(tmp_path))
    by = {r['method']: r for r in summary}
    assert by['better']['diff_to_scratch'] == pytest.approx(-0.10)
    assert by['better']['diff_ci95'] == pytest.approx(4.303 * 0.02 / 3 ** 0.5, rel=1e-3)  # t(2) sd / sqrt(n)
    assert by['better']['verdict'] == 'better' and by['better']['reached'] == 3
    assert by['better']['flops_saved'] == pytest.approx(0.375)
    assert by['better']['flops_saved_sd'] == pytest.approx(0)
    assert by['better']['final_val_loss'] == pytest.approx(1.9) and by['better']['final_val_loss_sd'] == \
        pytest.approx(statistics.stdev([1.9, 1.98, 1.82]))
    assert by['noisy']['verdict'] == 'within noise' and by['noisy']['reached'] == 2
    saved = [1 - (300 + 100 * 0.1 / 0.16) / 400, 1 - (300 + 100 * 0.1 / 0.11) / 400]  # seeds 2 and 3
    # a seed that never reached L* has no saving: no mean of the other two, each seed's value instead
    assert by['noisy']['flops_saved'] is None and by['noisy']['flops_saved_sd'] is None
    assert by['noisy']['flops_saved_seeds'][0] is None
    assert by['noisy']['flops_saved_seeds'][1:] == pytest.approx(saved)
    ci95 = 4.303 * statistics.stdev([0.05, -0.06, -0.01]) / 3 ** 0.5
    assert by['noisy']['diff_ci95'] == pytest.approx(ci95, rel=1e-3)
    assert by['scratch']['loss_at_50pct'] == pytest.approx(3.0) and by['scratch']['final_val_loss'] == 2.0
    text = compare.write(summary, rows, str(tmp_path), jobs=2)
    assert 'better' in text and 'within noise' in text and '2/3' in text and '--jobs 2' in text
    assert f"- / {saved[0]:.1%} / {saved[1]:.1%}" in text
    table = (tmp_path / 'compare.md').read_text().splitlines()
    assert len(table) == 2 + 3 and table[3].startswith(
        '| better | 1.9000 +- 0.0800 | -0.1000 +- 0.0497 | better | 3/3 | 37.5% +- 0.0% |')
    assert f"| 2/3 | - / {saved[0]:.1%} / {saved[1]:.1%} |" in table[4]
    with open(tmp_path / 'compare.csv') as f:
        table = list(csv.DictReader(f))
    assert len(table) == 3 + 9 and [r['seed'] for r in table[:4]] == ['mean', 'mean', 'mean', '1']
    with open(tmp_path / 'compare.json') as f:
        assert len(json.load(f)['runs']) == 9


def test_t_quantiles_for_every_number_of_seeds():
    """The 95% interval's t quantile for each degree of freedom: the table's (12 seeds: 2.201, not df 30's
    2.042), and beyond 30 the expansion, which meets the table and tends to 1.96."""
    assert compare.t95(2) == 4.303 and compare.t95(11) == 2.201 and compare.t95(30) == 2.042
    assert compare.t95(31) == pytest.approx(2.040, abs=1e-3) and compare.t95(40) == pytest.approx(2.021, abs=1e-3)
    assert compare.t95(120) == pytest.approx(1.980, abs=1e-3)
    assert compare.t95(10 ** 6) == pytest.approx(1.960, abs=1e-4)
    diffs = [0.1 * (-1) ** i + 0.01 * i for i in range(12)]
    m, half, _ = compare.paired_interval(diffs)
    assert half == pytest.approx(2.201 * statistics.stdev(diffs) / 12 ** 0.5)


def test_budget_sweep_reports_flops_saved_against_tokens_per_parameter(capsys, tmp_path):
    """Two comparisons of one model at two budgets: tokens per parameter from scratch's tokens and the
    target's size (its checkpoint's config), FLOPs saved per budget, bad folders refused in one line."""
    cfg = Config(kind='gpt', vocab_size=64, block_size=16, n_layer=2, n_head=2, n_embd=16, d_ff=64)
    n = sum(p.numel() for p in Transformer(cfg).parameters())
    for name, tokens, fast in (('short', 1000, [6, 4, 3, 2.5, 2.4]), ('long', 8000, [6, 4, 2.5, 2.2, 1.8])):
        for seed in (1, 2):
            fake_run(tmp_path / name / 'scratch' / f'seed{seed}', [0, 100, 200, 300, 400],
                     [6, 4, 3, 2.5, 2.0], tokens=tokens)
            fake_run(tmp_path / name / 'stack' / f'seed{seed}', [0, 50, 100, 200, 300], fast, tokens=tokens)
        torch.save(dict(config=asdict(cfg)), tmp_path / name / 'scratch' / 'seed1' / 'ckpt.pt')
    assert compare.tokens_per_param(str(tmp_path / 'short')) == pytest.approx(4000 / n)  # 4 evaluations later
    sweep = compare.main([str(tmp_path / 'long'), str(tmp_path / 'short'), '--plot',
                          str(tmp_path / 'sweep.png')])
    assert [tpp * n for tpp, _ in sweep] == [pytest.approx(4000), pytest.approx(32000)]  # ordered by budget
    stack = [next(r for r in rows if r['method'] == 'stack') for _, rows in sweep]
    assert [r['reached'] for r in stack] == [0, 2] and stack[1]['flops_saved'] == pytest.approx(1 - 250 / 400)
    out = capsys.readouterr().out.splitlines()
    assert out[2] == '| stack | - (0/2, worse) | 37.5% +- 0.0% (2/2, better) |', out
    assert out[-1].startswith('plot:') == HAVE_MATPLOTLIB  # (optional: CI has it, README's install not)
    assert os.path.exists(tmp_path / 'sweep.png') == HAVE_MATPLOTLIB
    assert not HAVE_MATPLOTLIB or os.path.getsize(tmp_path / 'sweep.png') > 1000
    fails(capsys, [str(tmp_path / 'short'), str(tmp_path / 'nowhere')], 'compare.py', 'nowhere', 'comparison',
          main=compare.main)


def test_parallel_runs_keep_the_gpus_this_process_sees(monkeypatch, capsys):
    """--jobs on CUDA gives each run one GPU of those the parent may use; and --compare refuses torchrun,
    which would start every run on every rank."""
    monkeypatch.setenv('CUDA_VISIBLE_DEVICES', '3,5,6')
    assert compare.visible_gpus(2) == ['3', '5']
    monkeypatch.delenv('CUDA_VISIBLE_DEVICES')
    assert compare.visible_gpus(2) == ['0', '1']
    monkeypatch.setenv('WORLD_SIZE', '2')
    fails(capsys, ['--compare', 'scratch,stack'], '--compare', 'torchrun')


def test_compare_seeds_in_parallel_then_reprint(corpus, tmp_path, monkeypatch):
    """2 methods x 2 seeds: one run per folder; --jobs 2 trains exactly the runs --jobs 1 trains (one thread
    each: CPU runs are deterministic); re-printing trains nothing."""
    argv = ['--compare', 'scratch,stack', '--seeds', 2, '--n_layer', 4, '--max_steps', 12,
            '--eval_interval', 4]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # what each of 2 jobs gets on 2 cores
    try:
        one = run(corpus, tmp_path / 'one', *argv)
    finally:
        torch.set_num_threads(threads)
    two = run(corpus, tmp_path / 'two', *argv, '--jobs', 2)
    for m in ('scratch', 'stack'):
        assert sorted(os.listdir(tmp_path / 'two' / m)) == ['seed1337', 'seed1338']
        for seed in ('seed1337', 'seed1338'):
            a, b = (strip(records(tmp_path / d / m / seed, 'eval')) for d in ('one', 'two'))
            assert a == b and a[-1]['step'] == 12
    finals = [records(tmp_path / 'one' / 'scratch' / s, 'eval')[-1]['val_loss']
              for s in ('seed1337', 'seed1338')]
    assert finals[0] != finals[1]  # two seeds, two runs
    def drop_time(rows):
        return [{k: v for k, v in r.items() if not k.startswith('time')} for r in rows]
    assert drop_time(one) == drop_time(two) and [r['seeds'] for r in one] == [2, 2]
    monkeypatch.setattr(grow, 'train', lambda *args: pytest.fail('re-printing must not train'))
    assert compare.main(['--compare', str(tmp_path / 'two')]) == two


@pytest.mark.parametrize('budget', ['steps', 'flops'])
def test_compare_two_methods_then_reprint(corpus, tmp_path, monkeypatch, budget):
    out = tmp_path / 'cmp'
    rows = run(corpus, out, '--compare', 'scratch,stack', '--n_layer', 4, '--max_steps', 20,
               '--eval_interval', 5, '--budget', budget)
    assert [r['method'] for r in rows] == ['scratch', 'stack']
    with open(out / 'compare.json') as f:
        saved = json.load(f)
    assert saved['summary'] == rows and set(saved['runs'][1]) >= {
        'final_val_loss', 'target_loss', 'flops_to_target', 'flops_saved', 'time_to_target', 'time_saved',
        'mean_depth', 'loss_at_50pct'}
    scratch_flops, stack_flops = (r['flops_total'] for r in rows)
    assert rows[0]['mean_depth'] == 4 and rows[1]['mean_depth'] < 4
    steps = [records(out / m / 'seed1337', 'eval')[-1]['step'] for m in ('scratch', 'stack')]
    if budget == 'steps':  # same steps, fewer FLOPs
        assert steps == [20, 20] and stack_flops < 0.9 * scratch_flops  # mean depth 3.3 of 4, same head
    else:  # same FLOPs (to within one step), more steps
        assert steps[0] == 20 and steps[1] > 20 and scratch_flops <= stack_flops < scratch_flops * 1.06
    monkeypatch.setattr(grow, 'train', lambda *args: pytest.fail('re-printing must not train'))
    assert compare.main(['--compare', str(out)]) == rows


def test_scratch_compute_interpolates_in_log_flops_with_its_bounds():
    """C_scratch(L) from scratch's final losses at several budgets: exact where the loss is linear in log FLOPs
    (a synthetic curve with a known answer), close on a power law plus a constant between its budgets, and a
    bound outside them."""
    line = [(c, 4.0 - 0.25 * math.log(c)) for c in (1e9, 2e9, 4e9, 8e9)]
    for c in (1e9, 1.5e9, 3e9, 5.5e9, 8e9):
        needed, bound = compare.scratch_compute(line, 4.0 - 0.25 * math.log(c))
        assert needed == pytest.approx(c, rel=1e-9) and bound == ''
    power = lambda c: 1.5 + 40 * c ** -0.15  # noqa: E731 (a Chinchilla-like L(C))
    budgets = [(c, power(c)) for c in (1e9, 2e9, 4e9, 8e9, 16e9)]
    for c in (1.3e9, 3e9, 11e9):
        assert compare.scratch_compute(budgets, power(c))[0] == pytest.approx(c, rel=0.02)
    assert compare.scratch_compute(budgets, power(0.5e9)) == (1e9, '<')  # worse than the smallest budget
    assert compare.scratch_compute(budgets, power(64e9)) == (16e9, '>')  # better than the largest


def test_a_comparison_with_a_curve_reports_each_methods_compute_multiplier(corpus, tmp_path, monkeypatch):
    """--curve 0.5,2: scratch also at 10 and 40 steps (the 10-step run branched from the 40-step run's stable
    phase), and each method's compute multiplier C_scratch(L) / C in the report and its reprint; scratch's own
    is 1 (its run is a point of its curve)."""
    out = tmp_path / 'cmp'
    rows = run(corpus, out, '--compare', 'scratch,stack', '--n_layer', 4, '--max_steps', 20, '--eval_interval', 4,
               '--decay', 'wsd', '--warmup', 2, '--curve', '0.5,2')
    curve = out / 'curve' / 'seed1337'
    assert [records(curve / f'steps{n}', 'eval')[-1]['step'] for n in (10, 40)] == [10, 40]
    points = [(e['flops'], e['val_loss']) for e in (records(d, 'eval')[-1] for d in
              (curve / 'steps10', curve / 'steps40', out / 'scratch' / 'seed1337'))]
    assert points[1][1] < points[2][1] < points[0][1]  # more compute, lower loss
    scratch, stack = rows
    assert scratch['compute_multiplier'] == pytest.approx(1.0)
    needed, bound = compare.scratch_compute(points, stack['final_val_loss'])
    assert stack['compute_multiplier_seeds'] == [(bound, pytest.approx(needed / stack['flops_total']))]
    assert 'compute multiplier' in (out / 'compare.md').read_text()
    monkeypatch.setattr(grow, 'train', lambda *args: pytest.fail('re-printing must not train'))
    assert compare.main(['--compare', str(out)]) == rows

# ----------------------------------------------------------------------------- DDP and compile


@pytest.mark.parametrize('kind, optimizer', [('gpt', 'adamw'), ('bert', 'adamw'),
                                             ('gpt', 'muon')])
def test_ddp_two_ranks_stay_in_sync_through_growth(corpus, tmp_path, kind, optimizer):
    common = TINY + ['--data', corpus, '--model', kind, '--method', 'apollo', '--n_layer', '8',
                     '--max_steps', '16', '--eval_interval', '8', '--lr', '3e-3', '--grow', 'width',
                     '--optimizer', optimizer]
    argv = common + ['--batch_size', '4', '--out_dir', str(tmp_path / 'ddp')]
    torch.multiprocessing.spawn(ddp_worker, args=(2, free_port(), argv, str(tmp_path)), nprocs=2)
    r0, r1 = (torch.load(tmp_path / f'rank{r}.pt', weights_only=False) for r in (0, 1))
    assert r0['state'].keys() == r1['state'].keys()
    assert all(torch.equal(r0['state'][k], r1['state'][k]) for k in r0['state'])  # identical weights
    assert r0['depths'] == r1['depths'] and len(set(r0['depths'])) > 2              # the same sampled depths
    # rank 0 alone wrote the log
    growths = records(tmp_path / 'ddp', 'growth')
    assert len(growths) == 3 and growths[-1]['new_d_ff'] == 128
    # global tokens: 2 ranks x 4
    assert records(tmp_path / 'ddp', 'eval')[-1]['tokens'] == 16 * 8 * 32
    # each rank its own torch random state (dropout), saved for its resume
    rngs = torch.load(tmp_path / 'ddp' / 'ckpt.pt', weights_only=False)['rank_rngs']
    assert len(rngs) == 2 and not torch.equal(rngs[0]['torch_rng'], rngs[1]['torch_rng'])
    single = grow.main(common + ['--batch_size', '8', '--out_dir', str(tmp_path / 'single')])
    assert abs(single['val_loss'] - r0['val']) < 0.05 * single['val_loss'], (single['val_loss'], r0['val'])


def test_ddp_ranks_run_the_same_raptr_paths(corpus, tmp_path):
    argv = TINY + ['--data', corpus, '--method', 'raptr', '--n_layer', '6', '--max_steps', '8',
                   '--eval_interval', '8', '--batch_size', '4', '--out_dir', str(tmp_path / 'ddp')]
    torch.multiprocessing.spawn(ddp_worker, args=(2, free_port(), argv, str(tmp_path)), nprocs=2)
    r0, r1 = (torch.load(tmp_path / f'rank{r}.pt', weights_only=False) for r in (0, 1))
    assert r0['paths'] == r1['paths'] and len({tuple(p) for p in r0['paths']}) > 3
    assert all(torch.equal(r0['state'][k], r1['state'][k]) for k in r0['state'])


def test_ddp_ranks_agree_under_completep_and_muon(corpus, tmp_path):
    """--scaling completep with --optimizer muon through Apollo's growths: the ranks keep identical weights
    (the residual multiplier follows each step's drawn depth alike on every rank) and match one process."""
    common = TINY + ['--data', corpus, '--method', 'apollo', '--n_layer', '8', '--max_steps', '24',
                     '--eval_interval', '24', '--scaling', 'completep', '--optimizer', 'muon']
    argv = common + ['--batch_size', '4', '--out_dir', str(tmp_path / 'ddp')]
    torch.multiprocessing.spawn(ddp_worker, args=(2, free_port(), argv, str(tmp_path)), nprocs=2)
    r0, r1 = (torch.load(tmp_path / f'rank{r}.pt', weights_only=False) for r in (0, 1))
    assert all(torch.equal(r0['state'][k], r1['state'][k]) for k in r0['state'])
    assert len(records(tmp_path / 'ddp', 'growth')) == 3
    single = grow.main(common + ['--batch_size', '8', '--out_dir', str(tmp_path / 'single')])
    assert abs(single['val_loss'] - r0['val']) < 0.05 * single['val_loss'], (single['val_loss'], r0['val'])


def test_ddp_ranks_stop_at_the_same_step(corpus, tmp_path):
    argv = TINY + ['--data', corpus, '--max_steps', '50', '--eval_interval', '100', '--batch_size', '4',
                   '--out_dir', str(tmp_path / 'ddp')]
    torch.multiprocessing.spawn(ddp_stop_worker, args=(2, free_port(), argv, str(tmp_path)), nprocs=2)
    assert [json.loads((tmp_path / f'stopped{r}.json').read_text()) for r in (0, 1)] == [4, 4]
    assert torch.load(tmp_path / 'ddp' / 'ckpt.pt', weights_only=False)['run']['step'] == 3


@pytest.mark.parametrize('kind,method', [('gpt', 'compound'), ('bert', 'compound'), ('gpt', 'apollo')])
def test_compile_trains_through_growth(corpus, tmp_path, kind, method):
    """GPT compound's depth is fixed in each stage: the whole model compiled; BERT's head and Apollo's
    depths change every step: block by block. Either way the eager run's losses, no step compiling anything."""
    try:
        torch.compile(lambda t: t * 2)(torch.ones(2))
    except Exception as e:  # no C++ compiler, or an unsupported platform
        pytest.skip(f"torch.compile is unavailable here: {type(e).__name__}: {e}")
    # compound grows depth, FFN width and sequence length: every stage has new shapes
    argv = ['--model', kind, '--method', method, '--n_layer', 8, '--max_steps', 6, '--log_interval', 1]
    plain = run(corpus, tmp_path / 'plain', *argv)
    compiled = run(corpus, tmp_path / 'compiled', *argv, '--compile')
    growths = {'compound': [(1, 64, 16), (2, 128, 32)], 'apollo': [(0, 128, 32), (1, 128, 32), (2, 128, 32)]}
    assert [(g['step'], g['new_d_ff'], g['new_seq']) for g in records(tmp_path / 'compiled', 'growth')] == \
        growths[method]
    assert (compiled['model'].blocks[0]._compiled_call_impl is None) == ((kind, method) == ('gpt', 'compound'))
    losses = [r['loss'] for r in records(tmp_path / 'compiled', 'train')]
    ref = [r['loss'] for r in records(tmp_path / 'plain', 'train')]
    np.testing.assert_allclose(losses, ref, rtol=1e-3)  # the same training, up to kernel rounding
    assert compiled['graphs'] >= 1 and plain['graphs'] is None
    # each stage's shapes were warmed before its clock started: no training step compiled anything
    with open(tmp_path / 'compiled' / 'log.jsonl') as f:
        log = [json.loads(line) for line in f]
    before = None
    for r in log:
        if r['type'] in ('eval', 'growth'):
            before = r['graphs']
        elif r['type'] == 'train':
            assert r['graphs'] == before, (r['step'], r['graphs'], before)


# ----------------------------------------------------------------------------- one GPU

# what makes the host wait for a tensor's value (`numpy` is not here: it only works on host tensors)
SYNCS = {'item', 'tolist', '__bool__', '__int__', '__float__', '__index__', 'nonzero'}


class CountSyncs(torch.overrides.TorchFunctionMode):
    """Records every call that reads a tensor's value on the host, while `on`."""

    def __init__(self):
        super().__init__()
        self.on, self.calls = False, []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, '__name__', '')
        index = args[1] if name == '__getitem__' else ()
        masks = [i for i in (index if isinstance(index, tuple) else (index,))
                 if isinstance(i, torch.Tensor) and i.dtype == torch.bool]  # a boolean mask's size is a read
        if self.on and (name in SYNCS or masks):
            self.calls.append(name)
        return func(*args, **(kwargs or {}))


def paused(counter, f):
    def wrapper(*args, **kwargs):
        was, counter.on = counter.on, False
        try:
            return f(*args, **kwargs)
        finally:
            counter.on = was
    return wrapper


@pytest.mark.parametrize('kind', ['gpt', 'bert'])
def test_the_step_waits_for_the_device_only_when_it_logs(corpus, tmp_path, monkeypatch, kind):
    """As in nanoGPT, a step reads no tensor's value on the host between log lines (on a GPU each read would
    wait for every queued kernel): counted over a growing run's steps, outside its log lines, evaluations
    and growths, where reading is the point."""
    counter = CountSyncs()
    for name in ('log_train', 'evaluate_and_save', 'grow_at_boundary', 'finish'):
        monkeypatch.setattr(grow, name, paused(counter, getattr(grow, name)))
    start = grow.start

    def started(args):
        r = start(args)
        counter.on = True
        return r
    monkeypatch.setattr(grow, 'start', started)
    with counter:
        run(corpus, tmp_path, '--model', kind, '--method', 'apollo', '--n_layer', 8, '--max_steps', 16,
            '--log_interval', 8, '--eval_interval', 16)
        assert [r['step'] for r in records(tmp_path, 'train')] == [8, 16] and records(tmp_path, 'growth')
        assert counter.calls == []
        counter.on = True  # the counter does see a read
        assert torch.ones(2).sum().item() == 2 and counter.calls == ['item']


def test_the_log_rates_leave_out_the_first_step_after_a_start_a_resume_or_a_growth(corpus, tmp_path,
                                                                                   monkeypatch):
    """The first step after a start, a resume or a growth warms up (allocations, the optimizer's first state);
    a log line's tok/s leaves it out, as nanoGPT's MFU does, unless it is the line's only step. On a fake
    clock that such a step moves by 100 s and any other by 1 s, every line reads one step a second."""
    clock, blocks, draw_step = [0.0], [None], grow.draw_step

    def timed(args, stage, model, rng):
        clock[0] += 100.0 if len(model.blocks) != blocks[0] else 1.0
        blocks[0] = len(model.blocks)
        return draw_step(args, stage, model, rng)
    monkeypatch.setattr(grow, 'draw_step', timed)
    monkeypatch.setattr(runtime.time, 'perf_counter', lambda: clock[0])
    argv = ['--method', 'stack', '--n_layer', 4, '--max_steps', 15, '--eval_interval', 5, '--log_interval', 3]
    run(corpus, tmp_path, *argv, '--stop_at', 7)
    blocks[0] = None  # (a resume is a start)
    grow.main(['--resume', '--out_dir', str(tmp_path)])
    lines, grown = records(tmp_path, 'train'), [r['step'] for r in records(tmp_path, 'growth')]
    step_tokens = lines[0]['tokens'] / lines[0]['step']
    assert [r['step'] for r in lines] == [3, 6, 9, 12, 15]
    assert [r['tok_per_s'] for r in lines] == [step_tokens] * 5
    times = [b['time'] - a['time'] for a, b in zip(lines, lines[1:])]
    assert grown == [2, 4] and times[0] == 102 and times[2:] == [3, 3]  # (the time column counts every second)


def test_a_checkpoint_resumes_into_the_optimizer_built_here(corpus, tmp_path):
    """A checkpoint whose AdamW was built otherwise (not fused, foreach: a CPU run of an earlier version, or
    another device) resumes into this run's fused AdamW, whose flags win, and grows after it: the run
    continues as the uninterrupted one, and every step count sits where the fused kernel reads it (the
    parameter's device, float32; on CPU the device cannot differ, on CUDA the move is the point)."""
    argv = ['--method', 'stack', '--n_layer', 4, '--max_steps', 12, '--eval_interval', 3]
    full = run(corpus, tmp_path / 'full', *argv)
    run(corpus, tmp_path / 'half', *argv, '--stop_at', 3)
    ck = torch.load(tmp_path / 'half' / 'ckpt.pt', weights_only=False)
    for group in ck['optimizer']['param_groups']:
        group.update(fused=None, foreach=True)
    torch.save(ck, tmp_path / 'half' / 'ckpt.pt')
    resumed = grow.main(['--resume', '--out_dir', str(tmp_path / 'half')])
    assert records(tmp_path / 'half', 'growth')[-1]['step'] > 3  # it grew after the resume
    assert resumed['val_loss'] == full['val_loss']
    model, args = Transformer(small('gpt')), flags.parse_args([])
    groups = [dict(params=g['params'], weight_decay=g['weight_decay'])
              for g in make_optimizer(model, args.lr, args.weight_decay).param_groups]
    other = torch.optim.AdamW(groups, foreach=True)
    x = torch.zeros(1, 8, dtype=torch.long)
    model(x, x)[1].backward()
    other.step()
    here = make_optimizer(model, args.lr, args.weight_decay)
    runtime.load_optimizer(here, other.state_dict())
    assert all(g['fused'] and g['foreach'] is None for g in here.param_groups)
    assert all(s['step'].dtype == torch.float32 and s['step'].device == p.device and s['step'] == 1
               for p, s in here.state.items()) and len(here.state) == len(list(model.parameters()))


def test_the_cuda_random_state_is_saved_and_restored(monkeypatch):
    """On CUDA a checkpoint holds the device's random state too (dropout's masks), and a resume restores it;
    a CPU run has none to save and restores none. (CUDA mocked here; the real round trip is the next test.)"""
    state, restored = torch.tensor([7, 1, 3], dtype=torch.uint8), []
    monkeypatch.setattr(torch.cuda, 'get_rng_state', lambda: state.clone())
    monkeypatch.setattr(torch.cuda, 'set_rng_state', restored.append)
    saved = runtime.rng_states(runtime.Runtime('cuda', 'bfloat16'))
    assert torch.equal(saved['cuda_rng'], state) and torch.equal(saved['torch_rng'], torch.get_rng_state())
    runtime.set_rng_states(dict(rank_rngs=[saved]), runtime.Runtime('cuda', 'bfloat16'))
    assert len(restored) == 1 and torch.equal(restored[0], state)
    assert runtime.rng_states(CPU)['cuda_rng'] is None
    runtime.set_rng_states(dict(rank_rngs=[saved]), CPU)
    assert len(restored) == 1


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA device')
@pytest.mark.parametrize('extra', [[], ['--optimizer', 'muon', '--scaling', 'completep', '--method', 'stack',
                                           '--n_layer', 4]])
def test_a_cuda_run_with_dropout_resumes_exactly(corpus, tmp_path, extra):
    argv = ['--device', 'cuda', '--dropout', 0.1, '--max_steps', 8, '--eval_interval', 4, '--log_interval', 2,
            *extra]
    assert_resumes(corpus, tmp_path, argv, 3)


def test_dtype_auto_picks_what_the_device_has(monkeypatch):
    """--dtype auto: bfloat16 on a CUDA device with it, float16 with a GradScaler on one without (a T4),
    float32 on CPU (capabilities mocked); only float16 scales the loss."""
    monkeypatch.setattr(torch.cuda, 'is_bf16_supported', lambda *a, **k: True)
    assert runtime.auto_dtype('cuda') == 'bfloat16'
    monkeypatch.setattr(torch.cuda, 'is_bf16_supported', lambda *a, **k: False)
    assert runtime.auto_dtype('cuda') == 'float16' and runtime.auto_dtype('cpu') == 'float32'
    enabled = {d: runtime.Runtime('cpu', d).scaler().is_enabled() for d in ('float16', 'bfloat16', 'float32')}
    assert enabled == dict(float16=True, bfloat16=False, float32=False)


def test_device_auto_picks_cuda_then_mps_then_cpu(monkeypatch, capsys):
    """--device auto: CUDA first, then an Apple-silicon GPU (MPS), then the CPU; MPS trains in float32 and its
    stopwatch waits for its kernels (capabilities mocked: nothing here has a Mac)."""
    auto = flags.get_parser().parse_args(['--device', 'auto'])
    for cuda, mps, expected in ((True, True, 'cuda'), (False, True, 'mps'), (False, False, 'cpu')):
        monkeypatch.setattr(torch.cuda, 'is_available', lambda: cuda)
        monkeypatch.setattr(torch.backends.mps, 'is_available', lambda: mps)
        assert runtime.pick_device(auto) == expected
    assert runtime.auto_dtype('mps') == 'float32' and runtime.peak_flops('mps') is None  # (no MFU column)
    waited = []
    monkeypatch.setattr(torch.mps, 'synchronize', lambda: waited.append('mps'))
    runtime.Stopwatch('mps').lap()
    runtime.Stopwatch('cpu').lap()
    assert waited == ['mps']
    with pytest.raises(data.InputError, match='--device mps: no MPS device'):
        runtime.pick_device(flags.get_parser().parse_args(['--device', 'mps']))


def test_the_default_run_is_nano_on_a_cpu_at_its_fitted_rate(monkeypatch, capsys):
    """`python grow.py` without a GPU: GPT nano (width 48) at the rates fitted to it, Muon's 0.04 and AdamW's
    8e-3; on CUDA GPT small. A rate typed, another size or BERT keep their own defaults."""
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    monkeypatch.setattr(torch.backends.mps, 'is_available', lambda: False)
    args = flags.parse_args([])
    assert (args.model, args.size, args.optimizer, args.muon_lr, args.lr) == ('gpt', 'nano', 'muon', 0.04, 8e-3)
    assert '--size auto: nano on cpu' in capsys.readouterr().out
    assert flags.model_config(args, dict(vocab_size=257)).n_embd == 48
    assert [flags.parse_args(argv).lr for argv in (['--size', 'tiny'], ['--model', 'bert'], ['--lr', '2e-3'])] \
        == [1e-3, 5e-4, 2e-3]
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    assert (flags.parse_args([]).size, flags.parse_args([]).lr) == ('small', 1e-3)


@pytest.mark.parametrize('optimizer', ['adamw', 'muon'])
def test_float16_overflows_are_skipped_steps_and_the_run_resumes_exactly(corpus, tmp_path, monkeypatch, optimizer):
    """float16 (autocast on CPU here): a loss scale too large overflows; each overflow is a skipped step of
    the one non-finite mechanism (a `skip` record), the scaler backs off until steps apply, and its state is
    checkpointed so that a resumed run continues exactly; with Muon too (the scaler unscales both parts)."""
    scaler = runtime.Runtime.scaler
    monkeypatch.setattr(runtime.Runtime, 'scaler', lambda rt: scaler(rt) if rt.dtype != 'float16' else
                        torch.amp.GradScaler(rt.device, init_scale=2.0 ** 24))
    argv = ['--dtype', 'float16', '--max_steps', 12, '--eval_interval', 4, '--log_interval', 2,
            '--max_skips', 30, '--optimizer', optimizer]
    assert_resumes(corpus, tmp_path, argv, 6)
    skips = records(tmp_path / 'full', 'skip')
    # the first steps, in a row
    assert skips and [s['skips'] for s in skips] == list(range(1, len(skips) + 1))
    evals = records(tmp_path / 'full', 'eval')
    assert len(skips) < 12 and evals[-1]['val_loss'] < evals[0]['val_loss'] - 0.1  # then it learns
    saved = torch.load(tmp_path / 'full' / 'ckpt.pt', weights_only=False)['scaler']
    assert saved['scale'] == 2.0 ** (24 - len(skips))  # halved once per overflow


@pytest.mark.parametrize('extra, blocks', [([], 12), (['--model', 'bert', '--pos', 'rope'], 12),
                                           (['--blocks', 3], 3), (['--optimizer', 'muon'], 12)])
def test_bench_times_both_loops_window_by_window(corpus, extra, blocks):
    """bench.py: grow.py's loop and the plain one take turns, window by window, on a model of one shape; the
    first window of each is warm-up. (Its speeds are measurements for README, not asserted here.)"""
    result = bench.main([str(a) for a in ['--data', corpus, '--steps', 2, '--rounds', 2, '--batch_size', 2,
                                           '--device', 'cpu', *extra]])
    # (the run takes one step after its last window)
    assert (result['steps'], result['windows'], result['blocks']) == (7, 3, blocks)
    assert result['tokens_per_step'] == 2 * 128 and result['mfu'] == dict(nanogrow=None, plain=None)
    assert result['optimizer'] == ('Optimizers' if 'muon' in extra else 'AdamW')  # (Muon and AdamW as one)
    rate = result['tokens_per_s']
    assert min(rate.values()) > 0 and result['ratio'] == rate['nanogrow'] / rate['plain']


# ----------------------------------------------------------------------------- Weights & Biases

class FakeWandb(types.ModuleType):
    """A recording stand-in for the wandb package: each `init` is a run that keeps what it was given."""

    def __init__(self):
        super().__init__('wandb')
        self.__spec__ = importlib.machinery.ModuleSpec('wandb', None)
        self.runs = []

    def init(self, **settings):
        run = types.SimpleNamespace(settings=settings, logged=[], axes=[], finished=False)
        run.log, run.define_metric = run.logged.append, lambda *a, **k: run.axes.append((a, k))
        run.finish = lambda: setattr(run, 'finished', True)
        self.runs.append(run)
        return run


@pytest.fixture
def fake_wandb(monkeypatch):
    fake = FakeWandb()
    monkeypatch.setitem(sys.modules, 'wandb', fake)
    return fake


def test_wandb_gets_every_record_of_the_log_against_the_flops_clock(corpus, tmp_path, fake_wandb):
    argv = ['--method', 'stack', '--n_layer', 4, '--max_steps', 12, '--eval_interval', 6, '--log_interval', 2,
            '--wandb', 'proj']
    run(corpus, tmp_path, *argv, '--stop_at', 6)
    grow.main(['--resume', '--out_dir', str(tmp_path)])
    first, resumed = fake_wandb.runs
    assert first.settings['id'] == resumed.settings['id'] == (tmp_path / 'wandb_id').read_text()
    assert (first.settings['project'], first.settings['name'], resumed.settings['resume']) == \
        ('proj', 'stack-gpt-seed1337', 'allow')
    assert first.settings['config']['max_steps'] == 12 and first.finished and resumed.finished
    assert (('*',), dict(step_metric='flops')) in first.axes
    with open(tmp_path / 'log.jsonl') as f:
        logged = [json.loads(line) for line in f]
    sent = first.logged[:-1] + resumed.logged  # (the resumed run redoes step 6's evaluation)
    assert [next(k.split('/')[0] for k in r if '/' in k) for r in sent] == [r['type'] for r in logged]
    assert [r[f"{r0['type']}/step"] for r, r0 in zip(sent, logged)] == [r['step'] for r in logged]
    last = 0.0
    for r, r0 in zip(sent, logged):
        last = r0.get('flops', last)
        assert r['flops'] == last
    assert {'growth', 'stage', 'eval', 'train'} <= {r['type'] for r in logged}


def test_compare_groups_its_wandb_runs(corpus, tmp_path, fake_wandb):
    run(corpus, tmp_path / 'cmp', '--compare', 'scratch,stack', '--n_layer', 4, '--max_steps', 8,
        '--eval_interval', 4, '--wandb', 'proj')
    assert [(r.settings['name'], r.settings['group']) for r in fake_wandb.runs] == \
        [('scratch-gpt-seed1337', 'cmp'), ('stack-gpt-seed1337', 'cmp')]


def test_wandb_offline_writes_its_run(corpus, tmp_path, monkeypatch):
    """The real package (CI installs it), offline: the run is written under out_dir/wandb with its id."""
    wandb = pytest.importorskip('wandb', reason='wandb is optional (pip install wandb)')
    monkeypatch.setenv('WANDB_MODE', 'offline')
    monkeypatch.setenv('WANDB_SILENT', 'true')
    run(corpus, tmp_path, '--max_steps', 4, '--eval_interval', 2, '--wandb', 'nanogrow')
    # `finish` may return before wandb's service has written the run's records to disk; the service writes
    # them at the latest when it shuts down, which a process's exit (here: `teardown`) waits for
    wandb.teardown()
    run_id = (tmp_path / 'wandb_id').read_text()
    written = list((tmp_path / 'wandb').glob(f'offline-run-*-{run_id}/run-{run_id}.wandb'))
    assert len(written) == 1 and written[0].stat().st_size > 1000


# ----------------------------------------------------------------------------- export to Hugging Face

@pytest.mark.parametrize('kind, argv', [
    ('gpt', ['--method', 'scratch', '--n_layer', 4]),
    ('bert', ['--method', 'scratch', '--n_layer', 4, '--bias', 0, '--pos', 'learned']),  # the papers' BERT
    # 3 shared blocks, written out at depth 8
    ('gpt', ['--method', 'apollo', '--n_layer', 8, '--stop_at', 3]),
    # grown wider
    ('bert', ['--method', 'compound', '--n_layer', 4, '--d_ff', 128, '--embd_stages', '0.5,1,1']),
    # rotary (the default): RoFormerForMaskedLM
    ('bert', ['--method', 'apollo', '--n_layer', 8, '--stop_at', 3]),
    # one layer copied to 4, and (BERT) zero layers grown afresh to 4, under WSD
    ('gpt', ['--method', 'onelayer', '--n_layer', 4, '--decay', 'wsd']),
    ('bert', ['--method', 'onelayer', '--n_layer', 4, '--stages', '0,4', '--depth_op', 'fresh', '--pos',
              'learned']),
    # grown by middle copies (1 -> 6 blocks)
    ('gpt', ['--method', 'midas', '--n_layer', 6, '--max_steps', 21]),
    # stopped inside a path stage: full model out
    ('bert', ['--method', 'raptr', '--n_layer', 4, '--stop_at', 3]),
])
def test_export_hf_logits_match(corpus, tmp_path, kind, argv):
    transformers = pytest.importorskip('transformers',
                                       reason='transformers is optional (pip install transformers)')
    run(corpus, tmp_path / 'run', '--model', kind, '--max_steps', 8, *argv)
    export.main(['--out_dir', str(tmp_path / 'run'), '--to', str(tmp_path / 'hf')])  # = grow.py --export_hf
    # BERT's default is rotary positions
    cls = transformers.GPT2LMHeadModel if kind == 'gpt' else \
        transformers.BertForMaskedLM if 'learned' in argv else transformers.RoFormerForMaskedLM
    hf = cls.from_pretrained(str(tmp_path / 'hf')).eval()
    ck = torch.load(tmp_path / 'run' / 'ckpt.pt', weights_only=False)
    ours = Transformer(Config(**ck['config'])).eval()
    ours.load_state_dict(ck['model'])
    depth = 8 if 'apollo' in argv else len(ours.blocks)
    assert (hf.config.n_layer if kind == 'gpt' else hf.config.num_hidden_layers) == depth
    assert hf.config.nanogrow['tokenizer'] == 'byte' and hf.config.nanogrow['mask_id'] == 257
    x = torch.randint(0, 257, (3, 32), generator=torch.Generator().manual_seed(1))  # [MASK] included
    with torch.no_grad():
        mine = ours(x, x, depth=depth)[0] if kind == 'gpt' else ours(x, depth=depth)[0]
        theirs = hf(x).logits
    assert ((theirs - mine).abs().max() / mine.abs().max()).item() < 1e-5


def test_export_hf_refuses_a_model_that_differs(capsys, corpus, tmp_path, monkeypatch):
    pytest.importorskip('transformers', reason='transformers is optional (pip install transformers)')
    run(corpus, tmp_path / 'run', '--max_steps', 2)
    exact = export.to_hf

    def off_by_a_little(*args, **kwargs):  # stands for any mapping that would not be exact
        hf = exact(*args, **kwargs)
        with torch.no_grad():
            hf.transformer.ln_f.bias += 0.01
        return hf
    monkeypatch.setattr(export, "to_hf", off_by_a_little)
    fails(capsys, ['--resume', '--out_dir', str(tmp_path / 'run'), '--export_hf', str(tmp_path / 'hf')],
          'differ', 'refused')
    assert not (tmp_path / 'hf').exists() and not (tmp_path / 'hf.tmp').exists()


# ----------------------------------------------------------------------------- bad input
# one line naming the flag or file and what would be valid, exit status 2, nothing written

def test_bad_flags(capsys, corpus, tmp_path):
    base = ['--data', corpus, '--out_dir', str(tmp_path / 'o'), '--device', 'cpu']
    fails(capsys, base + ['--method', 'nope'], '--method', 'scratch')
    fails(capsys, base + ['--model', 'roberta'], '--model', 'gpt', 'bert')
    fails(capsys, base + ['--size', 'huge'], '--size', 'tiny')
    fails(capsys, base + ['--optimizer', 'adamw', '--muon_lr', '0.02'], '--muon_lr', '--optimizer muon')
    fails(capsys, base + ['--optimizer', 'muon', '--muon_lr', '0'], '--muon_lr', 'positive')
    fails(capsys, base + ['--n_embd', '100', '--n_head', '3'], '--n_embd 100', '--n_head 3')
    fails(capsys, base + ['--max_steps', '0'], '--max_steps')
    fails(capsys, base + ['--batch_size', '-2'], '--batch_size')
    fails(capsys, base + ['--data', str(tmp_path / 'missing')], '--data', 'missing')
    fails(capsys, base + ['--vocab_size', '200'], 'meta.json', '--vocab_size 200')
    fails(capsys, base + ['--resume'], '--resume', 'ckpt.pt')
    fails(capsys, base + ['--wandb_run', 'x'], '--wandb_run', '--wandb PROJECT')
    assert not (tmp_path / 'o').exists()  # nothing written for a refused run


def test_bad_rates_and_factors(capsys, corpus, tmp_path):
    base = ['--data', corpus, '--out_dir', str(tmp_path / 'o'), '--device', 'cpu']
    fails(capsys, base + ['--lr', '-1'], '--lr', 'positive', '-1.0')
    fails(capsys, base + ['--lr', '0'], '--lr', 'positive')
    fails(capsys, base + ['--lr', 'nan'], '--lr', 'nan')
    fails(capsys, base + ['--lr', '1e-3', '--min_lr', '5'], '--min_lr', '[0, --lr]', '5.0')
    fails(capsys, base + ['--min_lr=-1e-4'], '--min_lr', '[0, --lr]')
    fails(capsys, base + ['--weight_decay', '-1'], '--weight_decay', '0 or a positive')
    fails(capsys, base + ['--grad_clip', '-1'], '--grad_clip', '0 (no clipping)')
    fails(capsys, base + ['--grad_clip', 'inf'], '--grad_clip', 'inf')
    fails(capsys, base + ['--dropout', '1'], '--dropout', '[0, 1)')
    fails(capsys, base + ['--rewarmup', '-5'], '--rewarmup', 'steps')
    fails(capsys, base + ['--sample_tokens', '-5'], '--sample_tokens', '0 (no sample)', '-5')
    fails(capsys, base + ['--beta2', '1'], '--beta2', '[0, 1)')
    assert not (tmp_path / 'o').exists()
    run(corpus, tmp_path / 'r', '--max_steps', 2)  # a resumed run's new --lr is checked too
    fails(capsys, ['--resume', '--out_dir', str(tmp_path / 'r'), '--lr', '-1'], '--lr', 'positive')


def test_bad_seeds(capsys, corpus, tmp_path):
    base = ['--data', corpus, '--out_dir', str(tmp_path / 'o'), '--device', 'cpu']
    fails(capsys, base + ['--seed', '-3'], '--seed', '[0, 2**31)', '-3')
    fails(capsys, base + ['--seed', str(2 ** 40)], '--seed', '[0, 2**31)')
    fails(capsys, base + ['--seed', '1.5'], '--seed', 'invalid int')
    fails(capsys, base + ['--compare', 'scratch,stack', '--seeds', '-1'], '--seeds', 'positive')
    assert not (tmp_path / 'o').exists()


def test_bad_shapes(capsys, corpus, tmp_path, monkeypatch):
    """A micro-batch that cannot fit is refused before anything is allocated; one that runs out of memory
    anyway stops with one line naming the shape flags, and the checkpoint written before it stays readable."""
    base = ['--data', corpus, '--out_dir', str(tmp_path / 'o'), '--device', 'cpu']
    fails(capsys, base + ['--block_size', '100000'], '--batch_size 32 x --block_size 100000', 'GiB',
          '--grad_accum')
    assert not (tmp_path / 'o').exists()
    fails(capsys, base + ['--block_size', '0'], '--block_size', 'positive')
    fails(capsys, base + ['--eval_batches', '100000'], '--eval_batches 100000', 'GiB', 'at most')
    assert not (tmp_path / 'o').exists()
    fails(capsys, base + ['--grad_accum', '0'], '--grad_accum', 'positive')
    real_step, calls = torch.optim.AdamW.step, []

    def out_of_memory(self, *args, **kwargs):  # what the CPU allocator raises when it is refused memory
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] . DefaultCPUAllocator: can't allocate "
                               "memory: you tried to allocate 9663676416 bytes.")
        return real_step(self, *args, **kwargs)
    monkeypatch.setattr(torch.optim.AdamW, 'step', out_of_memory)
    fails(capsys, TINY + ['--data', corpus, '--out_dir', str(tmp_path / 'oom'), '--max_steps', '4',
                          '--eval_interval', '1'], 'out of memory', "can't allocate memory", '--batch_size',
          '--block_size', '--grad_accum', str(tmp_path / 'oom'))
    monkeypatch.setattr(torch.optim.AdamW, 'step', real_step)
    assert runtime.read_checkpoint(str(tmp_path / 'oom'))[0]['run']['step'] == 1  # the last good one, readable
    assert grow.main(['--resume', '--out_dir', str(tmp_path / 'oom')])['step'] == 4


def test_every_run_draws_its_picture(corpus, tmp_path, capsys):
    """out_dir/run.png at the end of a run where matplotlib is installed (the loss through each growth, the
    executed depth beneath); without it, one line says how to get it."""
    run(corpus, tmp_path / 'a', '--method', 'apollo', '--n_layer', 8, '--max_steps', 8, '--eval_interval', 2)
    if HAVE_MATPLOTLIB:
        assert (tmp_path / 'a' / 'run.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    else:
        assert 'pip install matplotlib' in capsys.readouterr().out


def test_the_gpu_check_lists_every_cuda_path_and_says_when_there_is_no_gpu(monkeypatch, capsys):
    names = [name for name, _, _ in bench.gpu_checks('out', gpus=2)]
    assert names == ['the CUDA tests', 'GPT, bfloat16, compiled, through growth',
                     'BERT, bfloat16, compiled, through growth',
                     'Muon and CompleteP, bfloat16, compiled, through growth', 'float16 with the GradScaler',
                     'a CPU checkpoint, before its growth', '... resumed on CUDA and grown', "bench.py's GPU row",
                     "... under Muon, GPT's default", '2-process NCCL DDP']
    assert len(bench.gpu_checks('out', gpus=1)) == 9 and sum(s for _, _, s in bench.gpu_checks('out', 2)) <= 900
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    assert bench.main(['--check']) == []
    assert capsys.readouterr().out.strip().splitlines() == [
        "bench.py --check: no CUDA device here; run it on a machine with a GPU"]


def handles_sigterm(pid):
    """Whether process pid has a handler of its own for SIGTERM (Linux: SigCgt in /proc/<pid>/status)."""
    with open(f'/proc/{pid}/status') as f:
        caught = next(line for line in f if line.startswith('SigCgt:')).split()[1]
    return bool(int(caught, 16) >> (signal.SIGTERM - 1) & 1)


def test_a_signal_during_setup_stops_grow_at_once(corpus, tmp_path):
    """Before the first step (the data, the evaluation set, the first evaluation, compile) SIGTERM stops
    grow.py within seconds with one line: there is nothing to checkpoint yet. Here it comes while a large
    evaluation set (1.2 GB, which the memory check allows) is being built, which takes far longer."""
    if not os.path.isfile('/proc/self/status'):
        pytest.skip('reads the signal mask from /proc (Linux)')
    argv = [sys.executable, 'grow.py', *TINY, '--data', corpus, '--out_dir', str(tmp_path), '--eval_batches',
            '300000']
    child = subprocess.Popen(argv, cwd=os.path.dirname(os.path.abspath(__file__)), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=dict(os.environ, OMP_NUM_THREADS='1'))
    for _ in range(1200):  # its handler installed: grow.py has begun
        if child.poll() is not None or handles_sigterm(child.pid):
            break
        time.sleep(0.05)
    child.send_signal(signal.SIGTERM)
    sent = time.perf_counter()
    out, err = child.communicate(timeout=60)
    assert child.returncode == 128 + signal.SIGTERM and time.perf_counter() - sent < 5, (out, err)
    assert err.strip().splitlines() == ["grow.py: stopped: stopped by SIGTERM before the first step: nothing to "
                                        "checkpoint yet"]
    assert not (tmp_path / 'ckpt.pt').exists()


def test_bad_data_paths(capsys, corpus, tmp_path):
    base = ['--out_dir', str(tmp_path / 'o'), '--device', 'cpu']
    (tmp_path / 'corpus.txt').write_text('print("hello")\n' * 100)
    fails(capsys, base + ['--data', str(tmp_path / 'corpus.txt')], '--data', 'is a file',
          f"python data.py --source {tmp_path / 'corpus.txt'}", 'corpus.txt_byte')
    fails(capsys, base + ['--data', str(tmp_path / 'missing')], '--data', 'no such folder',
          'data.py --source')
    (tmp_path / 'empty').mkdir()
    fails(capsys, base + ['--data', str(tmp_path / 'empty')], '--data', 'no meta.json', 'data.py')
    assert not (tmp_path / 'o').exists()


def test_bad_schedules(capsys, corpus, tmp_path):
    base = ['--data', corpus, '--out_dir', str(tmp_path / 'o'), '--device', 'cpu', '--n_layer', '4']
    fails(capsys, base + ['--method', 'stack', '--stages', '2,2,4'], '--stages 2,2,4', 'increasing')
    fails(capsys, base + ['--method', 'stack', '--stages', '1,2,3'], '--stages 1,2,3', 'n_layer = 4')
    fails(capsys, base + ['--method', 'stack', '--stage_at', '0.5'], '--stage_at 0.5', '2 fractions')
    fails(capsys, base + ['--method', 'stack', '--stage_at', '0.5,0.3'], '--stage_at', 'increasing')
    fails(capsys, base + ['--method', 'stack', '--stage_at', '0,0.3'], '--stage_at', '(0, 1)')
    fails(capsys, base + ['--method', 'stack', '--stage_at', '0.5,1.5'], '--stage_at', '(0, 1)')
    fails(capsys, base + ['--method', 'stack', '--stages', 'a,b'], '--stages', 'integers')
    fails(capsys, base + ['--method', 'stack', '--depth_op', 'clone'], '--depth_op', 'identity')
    fails(capsys, base + ['--method', 'stack', '--depth_noise', '-0.1'], '--depth_noise', 'positive')
    fails(capsys, base + ['--model', 'bert', '--method', 'stack', '--depth_op', 'identity'], 'identity',
          'gpt')
    fails(capsys, base + ['--method', 'scratch', '--stages', '2,4', '--stage_at', '0.5'], '--method scratch')
    fails(capsys, base + ['--method', 'onelayer', '--stages', '0,4'], '--stages 0,4', '--depth_op fresh')
    fails(capsys, base + ['--method', 'apollo', '--stages', '0,1,2,4', '--depth_op', 'fresh'],
          '--stages 0,1,2,4', 'start from 1')
    fails(capsys, base + ['--decay_frac', '0.3'], '--decay_frac', '--decay wsd')
    fails(capsys, base + ['--decay', 'wsd', '--decay_frac', '0'], '--decay_frac', '(0, 1]')
    fails(capsys, base + ['--method', 'stack', '--max_steps', '3', '--stage_at', '0.1,0.9'], 'step 3',
          '--max_steps 3')
    assert not (tmp_path / 'o').exists()


def test_apollo_only_flags(capsys, corpus, tmp_path):
    base = ['--data', corpus, '--out_dir', str(tmp_path / 'o'), '--device', 'cpu']
    fails(capsys, base + ['--method', 'stack', '--sampling', 'us'], '--sampling', 'apollo')
    fails(capsys, base + ['--method', 'interpolate', '--layer_map', 'stack'], '--layer_map', 'apollo')
    fails(capsys, base + ['--sampling', 'uniform'], '--sampling', 'lvps')
    fails(capsys, base + ['--method', 'stack', '--shared_lr', 'uses'], '--shared_lr', 'apollo')
    fails(capsys, base + ['--method', 'stack', '--sample_per', 'micro'], '--sample_per', 'apollo')
    fails(capsys, base + ['--method', 'raptr', '--stages', '1,4', '--stage_at', '0.5'], '--stages 1,4',
          'at least 2')
    fails(capsys, base + ['--method', 'raptr', '--depth_op', 'stack'], 'raptr', '--depth_op')
    fails(capsys, base + ['--method', 'raptr', '--grow', 'width'], 'raptr', 'width')
    fails(capsys, base + ['--method', 'midas', '--stages', '3,12', '--stage_at', '0.5'], 'middle', 'double')


def test_bad_compound_flags(capsys, corpus, tmp_path):
    base = ['--data', corpus, '--out_dir', str(tmp_path / 'o'), '--device', 'cpu', '--n_layer', '4',
            '--method', 'compound']
    fails(capsys, base + ['--ffn_stages', '0.5,1'], '--ffn_stages', 'one per stage')
    fails(capsys, base + ['--ffn_stages', '0.3,0.5,1'], '--ffn_stages', 'whole number')
    fails(capsys, base + ['--embd_stages', '0.75,1,1'], '--embd_stages', 'whole number')
    fails(capsys, base + ['--embd_stages', '0.25,1,1', '--n_head', '2'], '--embd_stages', 'head')
    fails(capsys, base + ['--seq_stages', '0.5,1,2'], '--seq_stages', 'exceeds', '128')
    fails(capsys, base + ['--seq_stages', '0,0.5,1'], '--seq_stages', 'positive')
    fails(capsys, base + ['--seq_stages=-0.5,0.5,1'], '--seq_stages', 'positive')
    fails(capsys, base + ['--grow', 'height'], '--grow', 'width, embd, length')
    fails(capsys, base + ['--grow', 'none,width'], '--grow', 'give none, or')
    fails(capsys, base + ['--length_op', 'pool'], '--length_op pool', 'bert')
    fails(capsys, base + ['--model', 'bert', '--length_op', 'pool', '--pos', 'learned', '--grow', 'width'],
          '--length_op pool', 'none')
    fails(capsys, base + ['--model', 'bert', '--length_op', 'pool'], '--length_op pool', 'rope',
          '--pos learned')
    fails(capsys, base + ['--model', 'bert', '--mask_rate', '1.5'], '--mask_rate', '(0, 1)')
    fails(capsys, base + ['--model', 'bert', '--depth_op', 'identity'], 'identity', '--norm pre')
    fails(capsys, ['--method', 'scratch', '--grow', 'width', '--data', corpus], '--method scratch')
    assert not (tmp_path / 'o').exists()


def test_bad_compare(capsys, corpus, tmp_path):
    base = TINY[:-2] + ['--data', corpus, '--out_dir', str(tmp_path / 'c'), '--n_layer', '4']
    fails(capsys, base + ['--compare', 'stack,apollo'], '--compare', 'scratch included')
    fails(capsys, base + ['--compare', 'scratch,boost'], '--compare', 'compound')
    fails(capsys, base + ['--compare', 'scratch,stack', '--stages', '1,2,3'], '--stages 1,2,3')
    assert not (tmp_path / 'c').exists()  # refused before anything trained
    fails(capsys, base + ['--compare', 'scratch,stack', '--seeds', '0'], '--seeds', 'positive')
    fails(capsys, base + ['--compare', 'scratch,stack', '--jobs', '0'], '--jobs', 'positive')
    fails(capsys, base + ['--seeds', '3'], '--seeds', '--compare')
    fails(capsys, base + ['--jobs', '2'], '--jobs', '--compare')
    assert not (tmp_path / 'c').exists()
    run(corpus, tmp_path / 'c' / 'stack' / 'seed1337', '--method', 'stack', '--n_layer', 4, '--max_steps', 2)
    fails(capsys, base + ['--compare', 'scratch,stack', '--max_steps', '4'], 'holds a run with other flags',
          '--max_steps 2 there, 4 here')
    fails(capsys, ['--compare', str(tmp_path / 'c')], 'not a comparison folder', 'no scratch run')
    run(corpus, tmp_path / 'c' / 'scratch' / 'seed1337', '--n_layer', 4, '--max_steps', 2)
    run(corpus, tmp_path / 'c' / 'scratch' / 'seed1338', '--n_layer', 4, '--max_steps', 2, '--seed', 1338)
    fails(capsys, ['--compare', str(tmp_path / 'c')], 'not a comparison folder', 'the same seeds')


def test_export_hf_refusals(capsys, corpus, tmp_path):
    fails(capsys, ['--resume', '--out_dir', str(tmp_path / 'none'), '--export_hf', str(tmp_path / 'hf')],
          'no checkpoint')
    run(corpus, tmp_path / 'run', '--max_steps', 2)
    fails(capsys, ['--out_dir', str(tmp_path / 'run'), '--export_hf', str(tmp_path / 'hf')], '--resume')
    run(corpus, tmp_path / 'pre', '--model', 'bert', '--norm', 'pre', '--max_steps', 2)
    fails(capsys, ['--resume', '--out_dir', str(tmp_path / 'pre'), '--export_hf', str(tmp_path / 'hf')],
          'no transformers class', 'pre-LN bert')
    (tmp_path / 'full').mkdir()
    (tmp_path / 'full' / 'keep.txt').write_text('x')
    fails(capsys, ['--resume', '--out_dir', str(tmp_path / 'run'), '--export_hf', str(tmp_path / 'full')],
          '--force')
    assert (tmp_path / 'full' / 'keep.txt').read_text() == 'x'  # untouched


def test_damaged_bin(capsys, corpus, tmp_path):
    bad = tmp_path / 'bad'
    bad.mkdir()
    for f in ('meta.json', 'val.bin'):
        (bad / f).write_bytes(open(os.path.join(corpus, f), 'rb').read())
    (bad / 'train.bin').write_bytes(b'\x00' * 1001)  # odd size for uint16
    fails(capsys, ['--data', str(bad), '--out_dir', str(tmp_path / 'o')], 'train.bin', 'multiple', 'uint16')


def test_damaged_checkpoint(capsys, corpus, tmp_path):
    run(corpus, tmp_path, '--max_steps', 2)
    os.remove(tmp_path / 'ckpt.prev.pt')
    (tmp_path / 'ckpt.pt').write_bytes(b'PK\x03\x04 truncated')
    for extra in ([], ['--export_hf', str(tmp_path / 'hf')], ['--sample']):
        fails(capsys, ['--resume', '--out_dir', str(tmp_path), *extra], 'ckpt.pt', 'cannot be read')
    torch.save({'model': {}}, tmp_path / 'ckpt.pt')  # readable, but not a checkpoint of ours
    fails(capsys, ['--resume', '--out_dir', str(tmp_path)], 'ckpt.pt', 'lacks config')
    os.makedirs(tmp_path / 'cmp' / 'scratch')
    (tmp_path / 'cmp' / 'scratch' / 'log.jsonl').write_text('{"type": "eval", "step"')
    fails(capsys, ['--compare', str(tmp_path / 'cmp')], 'not a comparison folder')


def test_checkpoint_of_another_kind(capsys, corpus, tmp_path):
    run(corpus, tmp_path, '--model', 'bert', '--max_steps', 2)
    fails(capsys, ['--resume', '--out_dir', str(tmp_path), '--model', 'gpt'], '--model gpt', 'bert')


def test_data_cli_errors(capsys, tmp_path, monkeypatch):
    data_fails(capsys, ['--source', str(tmp_path / 'nothing'), '--out_dir', str(tmp_path / 'x')], '--source')
    assert not (tmp_path / 'x').exists()
    (tmp_path / 'r.jsonl').write_text(json.dumps(dict(body='x')) + '\n')
    data_fails(capsys, ['--source', str(tmp_path / 'r.jsonl'), '--out_dir', str(tmp_path / 'y')], 'r.jsonl',
               "no field 'text'", 'body', '--text_field')
    assert not (tmp_path / 'y' / 'meta.json').exists()
    data_fails(capsys, ['--source', str(tmp_path), '--max_tokens', '0'], '--max_tokens')
    datasets = pytest.importorskip('datasets', reason='hf: needs datasets (pip install datasets)')

    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'nobody/nothing' on the Hub (LocalEntryNotFoundError)")
    monkeypatch.setattr(datasets, 'load_dataset', offline)
    data_fails(capsys, ['--source', 'hf:nobody/nothing', '--out_dir', str(tmp_path / 'z')],
               'hf:nobody/nothing', 'cannot be read', 'ConnectionError')


# ----------------------------------------------------------------------------- finetune.py

def test_offline_tasks_are_deterministic_balanced_and_never_seen_in_training(tmp_path):
    """The offline tasks come from the validation documents with a seed: the same examples every time, the
    classes balanced in both splits, each unchanged example a piece of a validation document, and no example's
    text in the training split."""
    code = data.prepare('stdlib', 'byte', str(tmp_path / 'code'), max_bytes=4_000_000, verbose=False)
    meta = data.load(code)[0]  # (31 validation documents)
    train_text = finetune.training_bytes(code, meta)
    docs = finetune.validation_documents(code, meta)
    for name in finetune.OFFLINE:
        task = finetune.offline_task(name, code, meta, 7, 400)
        os.remove(os.path.join(code, 'tasks', f'{name}_seed7_400.json'))
        assert finetune.offline_task(name, code, meta, 7, 400) == task  # built again, the same
        assert task != finetune.offline_task(name, code, meta, 8, 400)
        for split in ('train', 'test'):
            labels = [label for _, label in task[split]]
            assert len(labels) >= 20 and labels.count(0) == labels.count(1), (name, split)
        examples = task['train'] + task['test']
        assert all(text.encode() not in train_text for text, _ in examples)
        assert all(any(text in doc for doc in docs) for text, label in examples if label == 0)
        assert not any(any(text in doc for doc in docs) for text, label in examples if label == 1)
        assert not {text for text, _ in task['train']} & {text for text, _ in task['test']}


def test_an_operator_is_replaced_by_another_of_its_kind():
    rng = np.random.default_rng(0)
    doc = "def f(a, b):\n    c = a + b\n    return c < a\n"
    found = {}
    for _ in range(40):
        for text, label in finetune.operator_examples(doc, rng):
            found.setdefault(label, set()).add(text.split('\n')[-1])
    assert found[0] == {'    c = a + b', '    return c < a'}
    changed = {line.split()[-2] for line in found[1]}
    assert changed and changed <= {'-', '*', '/', '//', '%', '>', '<=', '>=', '==', '!='}


def pretrained(corpus, out, *argv):
    run(corpus, out, '--max_steps', 4, '--block_size', 32, *argv)
    return str(out)


def trivial_task(path, n=240):
    """Texts whose last word is the label: learnable by any model that reads its input."""
    rng = np.random.default_rng(0)
    with open(path, 'w') as f:
        for i in range(n):
            word = ['keep', 'drop'][i % 2]
            f.write(json.dumps(dict(text=f"x = {rng.integers(100)} # {word}", label=word)) + '\n')
    return str(path)


@pytest.mark.parametrize('kind', [['--model', 'gpt'], ['--model', 'bert', '--pos', 'learned'],
                                  ['--model', 'bert', '--pos', 'rope']])
def test_a_checkpoint_of_each_kind_fine_tunes_to_a_trivial_task(corpus, tmp_path, kind):
    out = pretrained(corpus, tmp_path / 'run', *kind)
    result = finetune.main(['--out_dir', out, '--task', trivial_task(tmp_path / 'task.jsonl'), '--epochs', 8,
                            '--lr', 3e-3, '--device', 'cpu'])
    assert result['accuracy'] > 0.95 and result['n_test'] == 48 and result['majority'] <= 0.6
    assert json.load(open(tmp_path / 'run' / 'finetune' / 'task_jsonl_seed0.json'))['accuracy'] == \
        result['accuracy']


def test_glue_is_read_through_datasets_from_its_layout(corpus, tmp_path, capsys):
    pytest.importorskip('datasets')
    out = pretrained(corpus, tmp_path / 'run')
    for name, split, n in (('sst2', 'train', 40), ('sst2', 'validation', 10), ('mrpc', 'train', 40),
                           ('mrpc', 'validation', 10)):
        os.makedirs(tmp_path / 'glue' / name, exist_ok=True)
        with open(tmp_path / 'glue' / name / f'{split}.jsonl', 'w') as f:
            for i in range(n):
                row = dict(sentence=f'a film {i}') if name == 'sst2' else dict(sentence1=f'one {i}',
                                                                               sentence2=f'two {i}')
                f.write(json.dumps(dict(row, label=i % 2, idx=i)) + '\n')
    sst2 = finetune.main(['--out_dir', out, '--task', 'glue:sst2', '--glue_dir', tmp_path / 'glue'])
    mrpc = finetune.main(['--out_dir', out, '--task', 'glue:mrpc', '--glue_dir', tmp_path / 'glue'])
    assert (sst2['n_train'], sst2['n_test'], sst2['metric']) == (40, 10, 'accuracy')
    assert (mrpc['n_train'], mrpc['n_test'], mrpc['metric']) == (40, 10, 'f1') and 0 <= mrpc['value'] <= 1
    assert 'f1' in capsys.readouterr().out


def test_scores_are_the_tasks_metrics():
    assert finetune.scores([1, 1, 0, 0], [1, 0, 0, 0], 'f1') == (0.75, pytest.approx(2 / 3))
    assert finetune.scores([1, 1, 0, 0], [1, 0, 0, 0], 'matthews')[1] == pytest.approx(1 / math.sqrt(3))
    assert finetune.scores([1, 0], [0, 1], 'matthews') == (0.0, -1.0)


def test_finetune_compares_every_method_with_scratch(corpus, tmp_path):
    run(corpus, tmp_path / 'cmp', '--compare', 'scratch,stack', '--n_layer', 4, '--max_steps', 4, '--seeds', 2)
    rows = finetune.main(['--compare', tmp_path / 'cmp', '--task', trivial_task(tmp_path / 'task.jsonl', 60),
                          '--epochs', 1])
    assert [r['method'] for r in rows] == ['scratch', 'stack'] and rows[1]['runs'] == '2 x 1'
    assert rows[0]['verdict'] == '-' and rows[1]['verdict'] in ('better', 'worse', 'within noise')
    assert (tmp_path / 'cmp' / 'finetune_task_jsonl.md').read_text().count('\n| ') == 2
    assert json.load(open(tmp_path / 'cmp' / 'finetune_task_jsonl.json'))[1]['method'] == 'stack'


def test_finetune_refuses_bad_input_in_one_line(corpus, tmp_path, capsys):
    out = pretrained(corpus, tmp_path / 'run')
    main = finetune.main
    fails(capsys, ['--out_dir', out, '--task', 'sentiment'], '--task sentiment', 'operator', main=main)
    fails(capsys, ['--out_dir', tmp_path / 'none', '--task', 'operator'], 'no checkpoint', main=main)
    (tmp_path / 'bad.csv').write_text('sentence,score\nfine,1\n')
    fails(capsys, ['--out_dir', out, '--task', tmp_path / 'bad.csv'], "no column 'text'", '--text_field',
          main=main)
    fails(capsys, ['--out_dir', out, '--compare', tmp_path], 'one of them', main=main)
    fails(capsys, ['--out_dir', out, '--epochs', 0], '--epochs', main=main)


def test_texts_longer_than_the_context_are_cut_and_said_once(corpus, tmp_path, capsys):
    out = pretrained(corpus, tmp_path / 'run')
    path = tmp_path / 'long.tsv'
    path.write_text('text\tlabel\n' + ''.join(f"{'word ' * 20}{i % 2}\t{i % 2}\n" for i in range(20)))
    finetune.main(['--out_dir', out, '--task', path, '--epochs', 1])
    said = capsys.readouterr().out
    assert said.count('longer than the model') == 1 and '20 of 20 texts' in said
