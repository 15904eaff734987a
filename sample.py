"""
What a checkpoint learned, as nanoGPT's sample.py shows it: GPT continues a prompt, BERT fills its [MASK]
markers (or 15% masked positions of a validation window). Trains nothing.

    python sample.py --out_dir out --prompt 'def main('
    python sample.py --out_dir out_bert --prompt 'for i in ra[MASK]ge(10):'

`python grow.py --resume --sample ...` is the same command; grow.py runs it at the end of a run.
"""
import sys

import numpy as np
import torch

import data
import flags
import runtime
from data import InputError
from schedule import evaluation_depth


def main(argv=None):
    """`python sample.py --out_dir out [--prompt ...] [--sample_tokens N] [--device ...]`: grow.py's flags, the
    checkpoint's for the rest (its method's evaluation depth, its data). grow.py runs it at the end of a run
    and for `--resume --sample`."""
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    return runtime.command('sample.py', lambda: sample_checkpoint(flags.parse_args(['--resume', '--sample',
                                                                                        *argv])))


def sample_checkpoint(args):
    """What the checkpoint of out_dir learned, at the evaluation depth; trains nothing."""
    model, ckpt = runtime.checkpoint_model(args.out_dir)
    val_tokens = None if args.prompt or model.cfg.kind == 'gpt' else data.load(args.data)[2]
    return show_sample(model.to(runtime.pick_device(args)), ckpt['meta'], args, val_tokens)


@torch.no_grad()
def show_sample(model, meta, args, val_tokens=None):
    """GPT: continue --prompt (or start a file). BERT: fill the [MASK] markers of --prompt, or 15% masked
    positions of a validation window. At the evaluation depth (Apollo's shared blocks at L); always seed 0, so
    a checkpoint shows the same text every time. Prints and returns the text."""
    model.eval()
    g = torch.Generator().manual_seed(0)
    text = continue_text(model, meta, args, g) if model.cfg.kind == 'gpt' else \
        fill_masks(model, meta, args, val_tokens, g)
    model.train()
    print(text)
    return text


def continue_text(model, meta, args, g):
    enc, at = data.get_tokenizer(meta['tokenizer']), evaluation_depth(args, model.cfg)
    device = model.wte.weight.device
    idx = torch.tensor([[meta['eot_id']] + enc.encode_ordinary(args.prompt or '')], device=device)
    for _ in range(args.sample_tokens):
        logits = model(idx[:, -model.cfg.block_size:], **at)[0][:, -1].float().cpu()
        logits[:, meta['n_ordinary']:] = -float('inf')  # no special, [MASK] or padding ids in the text
        probs = torch.softmax(logits / 0.8, dim=-1)
        idx = torch.cat([idx, torch.multinomial(probs, 1, generator=g).to(device)], dim=1)
    return f"--- sample ---\n{printable(enc.decode(idx[0, 1:].tolist()))}\n--------------"


def printable(text):
    """The text as a terminal can show it: tiktoken already replaces bytes that are not UTF-8 with U+FFFD, and
    control characters (a byte model's early samples are full of them: bells, escapes, NULs) get it too."""
    return ''.join(c if c.isprintable() or c in '\n\t' else '\ufffd' for c in text)


def fill_masks(model, meta, args, val_tokens, g):
    enc, at = data.get_tokenizer(meta['tokenizer']), evaluation_depth(args, model.cfg)
    device = model.wte.weight.device
    if args.prompt:  # the user's [MASK] markers, one token each
        pieces = args.prompt.split('[MASK]')
        if len(pieces) == 1:
            raise InputError("--prompt: BERT fills the [MASK] markers of the prompt and it has none; e.g. "
                             "--prompt 'for i in [MASK][MASK][MASK]ge(10):'")
        ids = [t for piece in pieces for t in enc.encode_ordinary(piece) + [meta['mask_id']]][:-1]
        if len(ids) > model.cfg.block_size:
            raise InputError(f"--prompt is {len(ids)} tokens, longer than the model's block_size "
                             f"{model.cfg.block_size}")
        x = torch.tensor([ids])
        chosen = x == meta['mask_id']
    else:  # a validation window with 15% of its positions masked, and the truth to compare with
        T = min(model.cfg.block_size, args.sample_tokens, len(val_tokens))
        x = torch.from_numpy(val_tokens[:T].astype(np.int64))[None]
        chosen = torch.rand(x.shape, generator=g) < 0.15
    logits = model(torch.where(chosen, meta['mask_id'], x).to(device), **at)[0].float().cpu()
    logits[..., meta['n_ordinary']:] = -float('inf')
    filled = torch.where(chosen, logits.argmax(-1), x)
    blank = enc.encode_ordinary('_')[0]
    masked = enc.decode(torch.where(chosen, blank, x)[0].tolist())
    if args.prompt:
        guesses = [enc.decode([t]) for t in filled[chosen].tolist()]
        return f"--- fill the mask ---\nmasked: {masked!r}\nfilled: {enc.decode(filled[0].tolist())!r}\n" \
               f"guesses: {guesses}\n--------------"
    acc = (filled[chosen] == x[chosen]).float().mean().item() if chosen.any() else float('nan')
    return (f"--- fill the mask ({int(chosen.sum())} masked, {100 * acc:.0f}% right) ---\n"
            f"masked: {masked!r}\nfilled: {enc.decode(filled[0].tolist())!r}\n"
            f"truth:  {enc.decode(x[0].tolist())!r}\n--------------")


if __name__ == '__main__':
    main()
