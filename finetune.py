"""
Downstream, as the papers judge a grown model (StackBERT, CompoundGrow and Apollo report GLUE): fine-tune a
checkpoint of grow.py with a classification head, all weights trained, and report accuracy and the task's own
metric on held-out data; or every checkpoint of a comparison against scratch's.

    python finetune.py --out_dir out_cmp/stack/seed1337 --task operator
    python finetune.py --compare out_cmp --task misuse --seeds 2       # every method x seed, against scratch
    python finetune.py --out_dir out_bert --task glue:sst2             # needs datasets and the internet once

The offline tasks are made from the corpus's *validation* documents only (never a line the model pretrained
on), in the manner of CuBERT's Python benchmark (Kanade et al., ICML 2020), from windows of up to four whole
lines of code (at most MAX_CHARS characters): `operator`, is the last line's binary or comparison operator
the one written, or another of its kind (CuBERT's "wrong binary operator")? `misuse`, is a variable used on
the last line the one written, or another name of the window (its "variable misuse")? Both binary, balanced,
their documents split 80/20 into train and test.
"""
import argparse
import ast
import builtins
import csv
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

import compare
import data
import runtime
from data import InputError
from flags import Parser
from model import make_optimizer
from schedule import BASELINE, evaluation_depth

MAX_CHARS = 120   # an offline example's window: it fits the tiny models' 128-byte context
OPERATORS = {ast.Lt: '<', ast.Gt: '>', ast.LtE: '<=', ast.GtE: '>=', ast.Eq: '==', ast.NotEq: '!=',
             ast.Add: '+', ast.Sub: '-', ast.Mult: '*', ast.Div: '/', ast.FloorDiv: '//', ast.Mod: '%'}
KINDS = (('<', '>', '<=', '>=', '==', '!='), ('+', '-', '*', '/', '//', '%'))  # an operator's replacements
# GLUE (through Hugging Face datasets): the text fields, the metric its papers report, the held-out split
GLUE = {'cola': (('sentence',), 'matthews'), 'sst2': (('sentence',), 'accuracy'),
        'mrpc': (('sentence1', 'sentence2'), 'f1'), 'qqp': (('question1', 'question2'), 'f1'),
        'qnli': (('question', 'sentence'), 'accuracy'), 'rte': (('sentence1', 'sentence2'), 'accuracy'),
        'mnli': (('premise', 'hypothesis'), 'accuracy'), 'wnli': (('sentence1', 'sentence2'), 'accuracy')}


# ----------------------------------------------------------------------------- the offline tasks

def validation_documents(data_dir, meta):
    """The corpus's validation documents, decoded: val.bin cut at its end-of-text tokens."""
    val = np.asarray(data.load(data_dir)[2])
    ends = np.flatnonzero(val == meta['eot_id'])
    enc = data.get_tokenizer(meta['tokenizer'])
    return [enc.decode(val[s:e].tolist()) for s, e in zip(np.r_[0, ends + 1], np.r_[ends, len(val)]) if e > s]


def window(lines, last):
    """The text of the longest run of up to four whole lines ending at line `last` (0-based) that fits
    MAX_CHARS, or None."""
    for first in range(max(0, last - 3), last + 1):
        text = '\n'.join(lines[first:last + 1])
        if len(text) <= MAX_CHARS:
            return text
    return None


def operator_sites(tree, lines):
    """(line, column, operator) of each binary or comparison operator between two operands on one line."""
    for node in ast.walk(tree):
        if isinstance(node, ast.BinOp) or isinstance(node, ast.Compare) and len(node.ops) == 1:
            binary = isinstance(node, ast.BinOp)
            op, right = (node.op, node.right) if binary else (node.ops[0], node.comparators[0])
            symbol = OPERATORS.get(type(op))
            if symbol and node.left.end_lineno == right.lineno:
                between = lines[right.lineno - 1][node.left.end_col_offset:right.col_offset]
                if between.strip('() ') == symbol:
                    yield right.lineno - 1, node.left.end_col_offset + between.index(symbol), symbol


def operator_examples(doc, rng):
    """(text, label) of each operator site: 0 the line as written, 1 the operator replaced by another of its
    kind (comparison or arithmetic), each with probability 1/2."""
    tree, lines = ast.parse(doc), doc.split('\n')
    for line, col, symbol in operator_sites(tree, lines):
        text = window(lines, line)
        if text is not None:
            mutate = rng.random() < 0.5
            if mutate:
                other = rng.choice([s for kind in KINDS if symbol in kind for s in kind if s != symbol])
                text = text[:len(text) - len(lines[line]) + col] + other + lines[line][col + len(symbol):]
            yield text, int(mutate)


def misuse_examples(doc, rng):
    """(text, label) of each use of a variable on a window's last line: 0 as written, 1 replaced by another
    name of the window, each with probability 1/2."""
    tree, lines = ast.parse(doc), doc.split('\n')
    names = [n for n in ast.walk(tree) if isinstance(n, ast.Name) and not hasattr(builtins, n.id)]
    for use in names:
        text = window(lines, use.lineno - 1) if isinstance(use.ctx, ast.Load) else None
        if text is None:
            continue
        first = use.lineno - text.count('\n')
        others = sorted({n.id for n in names if first <= n.lineno <= use.lineno and n.id != use.id})
        mutate = bool(others) and rng.random() < 0.5
        if mutate:
            line = lines[use.lineno - 1]
            new = line[:use.col_offset] + str(rng.choice(others)) + line[use.end_col_offset:]
            text = text[:len(text) - len(line)] + new
        yield text, int(mutate)


OFFLINE = {'operator': operator_examples, 'misuse': misuse_examples}


def offline_task(name, data_dir, meta, seed, size):
    """An offline task built from the validation documents with `seed`: up to `size` examples, classes
    balanced, documents split 80/20 into train and test; no example's text occurs in the training split
    (stdlib repeats code across files). Built once, then read from data_dir/tasks/."""
    path = os.path.join(data_dir, 'tasks', f'{name}_seed{seed}_{size}.json')
    if os.path.isfile(path):
        with open(path) as f:
            return json.load(f)
    rng, docs = np.random.default_rng(seed), validation_documents(data_dir, meta)
    in_test = set(rng.permutation(len(docs))[:max(1, len(docs) // 5)].tolist())
    candidates, seen = [], set()
    for i, doc in enumerate(docs):
        try:
            found = list(OFFLINE[name](doc, rng)) if doc.isascii() else []
        except (SyntaxError, ValueError):  # (a document cut by the split, or not Python)
            found = []
        new = [(text, label) for text, label in found if text not in seen]
        seen.update(text for text, _ in new)
        candidates += [(text, label, i in in_test) for text, label in new]
    train_text = training_bytes(data_dir, meta)
    task, cap = dict(train=[], test=[], labels=['as written', 'changed'], metric='accuracy'), {}
    for k in rng.permutation(len(candidates)):
        text, label, test = candidates[k]
        split = 'test' if test else 'train'
        share = size // 2 * (1 if test else 4) // 5  # per class
        if cap.get((split, label), 0) < share and text.encode() not in train_text:
            task[split].append((text, label))
            cap[(split, label)] = cap.get((split, label), 0) + 1
    for split in ('train', 'test'):  # balanced: each class as often as the rarer
        n = min(sum(label == c for _, label in task[split]) for c in (0, 1))
        task[split] = [ex for c in (0, 1) for ex in [e for e in task[split] if e[1] == c][:n]]
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + '.tmp', 'w') as f:
        json.dump(task, f)
    os.replace(path + '.tmp', path)
    return task


def training_bytes(data_dir, meta):
    """The training split as bytes (end-of-text tokens as NUL), to look an example up in."""
    train = np.asarray(data.load(data_dir)[1])
    if meta['tokenizer'] == 'byte':
        return np.where(train == meta['eot_id'], 0, train).astype(np.uint8).tobytes()
    return data.get_tokenizer(meta['tokenizer']).decode_bytes(train.tolist())


# ----------------------------------------------------------------------------- GLUE and local files

def glue_task(name, glue_dir=None):
    """GLUE through Hugging Face datasets (nyu-mll/glue; or a local copy: glue_dir/<name>/{train,validation}
    .jsonl, the same records), held out on its validation split (its test labels are not public)."""
    if name not in GLUE:
        raise InputError(f"--task glue:{name}: valid GLUE tasks: {', '.join('glue:' + t for t in GLUE)}")
    try:
        import datasets
    except ImportError:
        raise InputError("--task glue:... reads GLUE through Hugging Face datasets: pip install datasets")
    fields, metric = GLUE[name]
    held_out = 'validation_matched' if name == 'mnli' else 'validation'
    try:
        if glue_dir:
            files = {s: os.path.join(glue_dir, name, f'{s}.jsonl') for s in ('train', held_out)}
            sets = datasets.load_dataset('json', data_files=files)
        else:
            sets = datasets.load_dataset('nyu-mll/glue', name)
    except Exception as e:  # no network, a missing file
        raise InputError(f"--task glue:{name} cannot be read: {type(e).__name__}: "
                         f"{str(e).splitlines()[0][:160] if str(e) else ''}")
    rows = lambda s: [(tuple(r[f] for f in fields), int(r['label'])) for r in sets[s]]  # noqa: E731
    train, test = rows('train'), rows(held_out)
    labels = [str(c) for c in range(1 + max(label for _, label in train))]
    return dict(train=train, test=test, labels=labels, metric=metric)


def file_task(path, args):
    """A local .jsonl, .csv or .tsv file: --text_field (and --pair_field) and --label_field; a seeded 20% of
    its rows held out."""
    if not os.path.isfile(path):
        raise InputError(f"--task {path}: no such file; give operator, misuse, glue:NAME, or a .jsonl, .csv "
                         f".tsv file")
    with open(path, newline='') as f:
        rows = [json.loads(line) for line in f if line.strip()] if path.endswith('.jsonl') else \
            list(csv.DictReader(f, delimiter='\t' if path.endswith('.tsv') else ','))
    fields = [args.text_field] + [args.pair_field] * bool(args.pair_field) + [args.label_field]
    missing = [k for k in fields if not rows or k not in rows[0]]
    if missing:
        columns = ', '.join(rows[0]) if rows else 'none'
        raise InputError(f"{path}: no column {missing[0]!r} (columns: {columns}); name them with --text_field, "
                         f"--pair_field, --label_field")
    labels = sorted({str(r[args.label_field]) for r in rows})
    examples = [(tuple(str(r[k]) for k in fields[:-1]), labels.index(str(r[args.label_field]))) for r in rows]
    test = set(np.random.default_rng(args.task_seed).permutation(len(rows))[:max(1, len(rows) // 5)].tolist())
    return dict(train=[e for i, e in enumerate(examples) if i not in test],
                test=[e for i, e in enumerate(examples) if i in test], labels=labels, metric='accuracy')


def load_task(args, data_dir, meta):
    if args.task in OFFLINE:
        if not os.path.isdir(data_dir) and data_dir != data.DEFAULT:
            raise InputError(f"--task {args.task} is made from the checkpoint's corpus, {data_dir}, which is "
                             f"not there: run finetune.py where grow.py ran")
        return offline_task(args.task, data_dir, meta, args.task_seed, args.examples)
    if args.task.startswith('glue:'):
        return glue_task(args.task[5:], args.glue_dir)
    if args.task.endswith(('.jsonl', '.csv', '.tsv')):
        return file_task(args.task, args)
    raise InputError(f"--task {args.task}: valid: {', '.join(OFFLINE)}, glue:NAME, or a .jsonl, .csv or .tsv "
                     f"file")


# ----------------------------------------------------------------------------- the model and its training

class Classifier(nn.Module):
    """A pretrained Transformer and a linear head on one vector per text: GPT's state at its last position
    (the only one that has read the whole text); BERT's mean over the text's positions (our BERT was never
    trained with a [CLS] token or next-sentence prediction, so its first position is an ordinary token)."""

    def __init__(self, model, n_classes, depth):
        super().__init__()
        self.model, self.depth = model, depth
        self.head = nn.Linear(model.cfg.n_embd, n_classes)
        self.dropout = nn.Dropout(0.1)

    @property
    def cfg(self):  # (`make_optimizer` reads the model's: a CompleteP model's epsilon)
        return self.model.cfg

    def forward(self, idx, lengths):
        real = torch.arange(idx.size(1), device=idx.device) < lengths[:, None]  # (padding on the right)
        bert = self.model.cfg.kind == 'bert'
        h = self.model.hidden(idx, mask=real[:, None, None] if bert else None, **self.depth)
        if bert:
            return self.head(self.dropout((h * real[..., None]).sum(1) / lengths[:, None]))
        return self.head(self.dropout(h[torch.arange(len(idx), device=idx.device), lengths - 1]))


def encode(examples, meta, block_size):
    """Token ids of each example (a pair joined by end-of-text), its last block_size kept; and how many were
    cut."""
    enc, eot, out, cut = data.get_tokenizer(meta['tokenizer']), meta['eot_id'], [], 0
    for texts, label in examples:
        texts = (texts,) if isinstance(texts, str) else texts
        ids = [t for i, text in enumerate(texts) for t in [eot] * (i > 0) + enc.encode_ordinary(text)]
        cut += len(ids) > block_size
        out.append((ids[-block_size:] or [eot], label))
    return out, cut


def batch(examples, pad, device):
    """(ids right-padded with `pad`, lengths, labels) on the device."""
    T = max(len(ids) for ids, _ in examples)
    idx = torch.tensor([ids + [pad] * (T - len(ids)) for ids, _ in examples], device=device)
    lengths = torch.tensor([len(ids) for ids, _ in examples], device=device)
    return idx, lengths, torch.tensor([label for _, label in examples], device=device)


def fine_tune(classifier, train, args, lr, pad):
    """AdamW on every weight (`model.make_optimizer`: no decay on biases and gains), --epochs over the
    training set in seeded random order, a linear warmup over the first 10% of the steps and a linear decay
    to 0 (BERT's fine-tuning schedule)."""
    optimizer, device = make_optimizer(classifier, lr, args.weight_decay), classifier.head.weight.device
    rng = np.random.default_rng(args.seed)
    per_epoch = math.ceil(len(train) / args.batch_size)
    total = args.epochs * per_epoch
    classifier.train()
    losses = []
    for step in range(total):
        if step % per_epoch == 0:
            order = rng.permutation(len(train))
            if losses:
                print(f"epoch {step // per_epoch}: training loss {torch.stack(losses[-per_epoch:]).mean():.4f}")
        chosen = order[(step % per_epoch) * args.batch_size:][:args.batch_size]
        idx, lengths, labels = batch([train[i] for i in chosen], pad, device)
        for group in optimizer.param_groups:
            group['lr'] = lr * min((step + 1) / max(1, total // 10), (total - step) / (total - total // 10))
        loss = F.cross_entropy(classifier(idx, lengths), labels)
        loss.backward()
        losses.append(loss.detach())  # (read once an epoch: reading waits for the device)
        torch.nn.utils.clip_grad_norm_(classifier.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    print(f"epoch {args.epochs}: training loss {torch.stack(losses[-per_epoch:]).mean():.4f}")


@torch.no_grad()
def predict(classifier, examples, pad, batch_size=64):
    classifier.eval()
    device = classifier.head.weight.device
    return np.concatenate([classifier(*batch(examples[i:i + batch_size], pad, device)[:2]).argmax(-1).cpu()
                           for i in range(0, len(examples), batch_size)])


def scores(truth, guess, metric):
    """Accuracy and the task's metric: F1 of class 1 (MRPC, QQP), Matthews' correlation (CoLA)."""
    truth, guess = np.asarray(truth), np.asarray(guess)
    tp, fp = int(((guess == 1) & (truth == 1)).sum()), int(((guess == 1) & (truth == 0)).sum())
    fn, tn = int(((guess == 0) & (truth == 1)).sum()), int(((guess == 0) & (truth == 0)).sum())
    value = {'accuracy': float((truth == guess).mean()),
             'f1': 2 * tp / max(1, 2 * tp + fp + fn),
             'matthews': (tp * tn - fp * fn) / (math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn)) or 1)}
    return value['accuracy'], value[metric]


# ----------------------------------------------------------------------------- one checkpoint, a comparison

def task_name(task):
    """A task as a file name: glue:sst2 -> glue_sst2, my/data.jsonl -> data_jsonl."""
    return os.path.basename(task).replace(':', '_').replace('.', '_')


# what a saved result must share with these flags to be reused
SETTINGS = ('task', 'task_seed', 'examples', 'epochs', 'lr', 'batch_size', 'weight_decay', 'text_field',
            'pair_field', 'label_field')


def run_one(out_dir, args):
    """Fine-tune out_dir's checkpoint with fine-tuning seed --seed: its result, also kept as
    out_dir/finetune/<task>_seed<S>.json (a result with the same settings is read, not trained again)."""
    if not os.path.isfile(os.path.join(out_dir, 'ckpt.pt')):
        raise InputError(f"--out_dir {out_dir}: no checkpoint (ckpt.pt) there; give a run folder of grow.py")
    path = os.path.join(out_dir, 'finetune', f"{task_name(args.task)}_seed{args.seed}.json")
    settings = {k: getattr(args, k) for k in SETTINGS}
    if os.path.isfile(path):
        with open(path) as f:
            saved = json.load(f)
        if saved['settings'] == settings:
            return saved
    start = time.perf_counter()
    model, ckpt = runtime.checkpoint_model(out_dir)
    meta, pretrained = ckpt['meta'], argparse.Namespace(**ckpt['args'])
    task = load_task(args, pretrained.data, meta)
    (train, cut), (test, cut_test) = (encode(task[s], meta, model.cfg.block_size) for s in ('train', 'test'))
    if cut + cut_test:
        print(f"{cut + cut_test} of {len(train) + len(test)} texts are longer than the model's block_size "
              f"{model.cfg.block_size}: their last {model.cfg.block_size} tokens are kept")
    device = runtime.pick_device(args)
    torch.manual_seed(args.seed)
    classifier = Classifier(model, len(task['labels']), evaluation_depth(pretrained, model.cfg)).to(device)
    lr = args.lr or pretrained.lr / 10
    fine_tune(classifier, train, args, lr, meta['eot_id'])
    truth = [label for _, label in test]
    accuracy, value = scores(truth, predict(classifier, test, meta['eot_id']), task['metric'])
    most = np.argmax(np.bincount([label for _, label in train]))  # the majority class: always guess it
    result = dict(method=pretrained.method, pretrain_seed=pretrained.seed, seed=args.seed, task=args.task,
                  lr=lr,
                  accuracy=accuracy, metric=task['metric'], value=value, n_train=len(train), n_test=len(test),
                  majority=float(np.mean(np.asarray(truth) == most)), seconds=time.perf_counter() - start,
                  val_loss=runtime.read_log(out_dir)['evals'][-1]['val_loss'], settings=settings)
    print(f"{args.task}: {result['method']} (pretraining seed {result['pretrain_seed']}), fine-tuning seed "
          f"{args.seed}: accuracy {accuracy:.1%}" + (f", {task['metric']} {value:.3f}" if task['metric'] !=
                                                      'accuracy' else "") +
          f" on {len(test)} held-out examples ({len(train)} trained; the majority class: "
          f"{result['majority']:.1%}), {result['seconds']:.0f}s")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + '.tmp', 'w') as f:
        json.dump(result, f, indent=1)
    os.replace(path + '.tmp', path)
    return result


def compare_checkpoints(args):
    """--compare DIR: every method's checkpoint of every pretraining seed, fine-tuned with --seeds seeds; per
    method the mean over pretraining seeds (each the mean of its fine-tuning seeds) and the paired difference
    to scratch of the same pretraining seed with its 95% interval and verdict (compare.py's statistics)."""
    try:
        runs = compare.read_runs(args.compare)
    except (OSError, ValueError) as e:
        raise InputError(f"--compare {args.compare}: not a comparison folder of grow.py ({e})")
    seeds = [argparse.Namespace(**{**vars(args), 'seed': args.seed + k}) for k in range(args.seeds)]
    results = {m: {s: [run_one(os.path.join(args.compare, m, f'seed{s}'), ft) for ft in seeds] for s in by_seed}
               for m, by_seed in runs.items()}
    mean = lambda rs, key: sum(r[key] for r in rs) / len(rs)  # noqa: E731
    rows = []
    for m, by_seed in results.items():
        acc = {s: mean(rs, 'accuracy') for s, rs in by_seed.items()}
        diffs = [acc[s] - mean(results[BASELINE][s], 'accuracy') for s in acc]
        d, half, verdict = compare.paired_interval([-x for x in diffs])  # (lower is better there)
        first = next(iter(by_seed.values()))[0]
        rows.append(dict(method=m, val_loss=compare.mean_sd([rs[0]['val_loss'] for rs in by_seed.values()])[0],
                         accuracy=compare.mean_sd(acc.values()), metric=first['metric'],
                         value=compare.mean_sd([mean(rs, 'value') for rs in by_seed.values()]),
                         diff=None if m == BASELINE else -d, ci95=half,
                         verdict='-' if m == BASELINE else verdict,
                         runs=f"{len(by_seed)} x {args.seeds}", majority=first['majority'],
                         n_train=first['n_train'], n_test=first['n_test'], seconds=mean(
                             [r for rs in by_seed.values() for r in rs], 'seconds')))
    report(rows, args)
    return rows


def report(rows, args):
    """The comparison's table, printed and written as DIR/finetune_<task>.{md,csv,json}, and its picture."""
    name = os.path.join(args.compare, 'finetune_' + task_name(args.task))
    metric = [rows[0]['metric']] if rows[0]['metric'] != 'accuracy' else []  # (F1, Matthews)
    head = ['method', 'pretraining val loss', 'accuracy', *metric, 'vs scratch, accuracy (95% CI)', 'verdict',
            'pretraining x fine-tuning seeds']
    lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
    for r in rows:
        cells = [r['method'], f"{r['val_loss']:.4f}", compare.pm(*r['accuracy'], '.1%'),
                 *[compare.pm(*r['value'], '.3f')] * bool(metric), compare.pm(r['diff'], r['ci95'], '+.1%'),
                 r['verdict'], r['runs']]
        lines.append('| ' + ' | '.join(cells) + ' |')
    r = rows[0]
    lines.append(f"\n{args.task}: {r['n_train']} training and {r['n_test']} held-out examples, the majority "
                 f"class {r['majority']:.1%}; {r['seconds']:.0f}s per fine-tuning run")
    print('\n'.join(lines))
    with open(name + '.md', 'w') as f:
        f.write('\n'.join(lines) + '\n')
    with open(name + '.json', 'w') as f:
        json.dump(rows, f, indent=1)
    with open(name + '.csv', 'w', newline='') as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    plt = runtime.pyplot()
    if plt is not None:
        fig, ax = plt.subplots(figsize=(7, 4))
        ax.bar([r['method'] for r in rows], [100 * r['accuracy'][0] for r in rows],
               yerr=[100 * (r['accuracy'][1] or 0) for r in rows], capsize=3)
        ax.axhline(100 * r['majority'], color='grey', ls='--', lw=1, label='majority class')
        ax.set_ylabel('held-out accuracy (%)')
        ax.set_title(f"{args.task} after fine-tuning (mean +- sd over pretraining seeds)")
        ax.legend()
        fig.tight_layout()
        fig.savefig(name + '.png', dpi=110)
        plt.close(fig)


def get_parser():
    p = Parser(description='Fine-tune checkpoints of grow.py on a classification task (nanogrow).')
    a = p.add_argument
    a('--out_dir', default=None, help='a run folder of grow.py: fine-tune its checkpoint')
    a('--compare', default=None, help='a comparison folder of grow.py --compare: every checkpoint, against '
      "scratch's")
    a('--task', default='operator', help=f"{', '.join(OFFLINE)} (offline, from the corpus's validation "
      "documents), glue:NAME (Hugging Face datasets), or a .jsonl, .csv, .tsv file")
    a('--seed', type=int, default=0, help='the (first) fine-tuning seed')
    a('--seeds', type=int, default=1, help='fine-tuning seeds per checkpoint (--compare)')
    a('--epochs', type=int, default=3)
    a('--lr', type=float, default=None, help="peak learning rate (linear warmup over 10%%, then to 0; default "
      "a tenth of the checkpoint's peak rate, as BERT's fine-tuning rates are of its pretraining's)")
    a('--batch_size', type=int, default=32)
    a('--weight_decay', type=float, default=0.01)
    a('--examples', type=int, default=4000, help='offline tasks: at most this many examples, train and test')
    a('--task_seed', type=int, default=0, help="offline tasks and files: the seed of the examples and split")
    a('--text_field', default='text', help='files: the text column')
    a('--pair_field', default=None, help="files: the second text's column, for a pair")
    a('--label_field', default='label', help='files: the label column')
    a('--glue_dir', default=None, help='glue:NAME from a local copy, DIR/<name>/{train,validation}.jsonl')
    a('--device', default='auto', choices=('auto', 'cpu', 'cuda', 'mps'))
    return p


def main(argv=None):
    """`python finetune.py --out_dir RUN | --compare DIR [--task ...]`."""
    args = get_parser().parse_args(sys.argv[1:] if argv is None else [str(a) for a in argv])

    def body():
        if (args.out_dir is None) == (args.compare is None):
            raise InputError("give --out_dir RUN (one checkpoint) or --compare DIR (a comparison), one of them")
        for k in ('epochs', 'batch_size', 'seeds', 'examples'):
            if getattr(args, k) < 1:
                raise InputError(f"--{k} must be a positive integer, got {getattr(args, k)}")
        if args.lr is not None and not args.lr > 0:
            raise InputError(f"--lr must be positive, got {args.lr}")
        return compare_checkpoints(args) if args.compare else run_one(args.out_dir, args)
    return runtime.command('finetune.py', body)


if __name__ == '__main__':
    main()
