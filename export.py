"""
A checkpoint as a Hugging Face model folder (GPT2LMHeadModel, BertForMaskedLM or RoFormerForMaskedLM,
safetensors) that transformers loads with from_pretrained; transformers is optional and needed here only.

    python export.py --out_dir out --to hf_model

`python grow.py --resume --out_dir out --export_hf hf_model` is the same command. The mapping of our weights
onto transformers' names is `to_hf` in model.py.
"""
import argparse
import os
import shutil
import sys

import torch

import data
import flags
import runtime
from data import InputError
from schedule import evaluation_depth
from model import to_hf


def main(argv=None):
    """`python export.py --out_dir out --to hf_model [--force]`, or grow.py's flags with --export_hf."""
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    if not any(a.split('=')[0] == '--export_hf' for a in argv):
        p = argparse.ArgumentParser(description='Export a nanogrow checkpoint to a Hugging Face model folder.')
        p.add_argument('--out_dir', default='out', help='the run whose ckpt.pt to export')
        p.add_argument('--to', required=True, help='the folder to write')
        p.add_argument('--force', action='store_true', help='replace a non-empty folder')
        a = p.parse_args(argv)
        argv = ['--resume', '--out_dir', a.out_dir, '--export_hf', a.to] + ['--force'] * a.force
    # the checkpoint's flags decide the depth written out (Apollo's shared blocks at L)
    return runtime.command('export.py', lambda: export_hf(flags.parse_args(argv)))


def export_hf(args):
    """--export_hf: the checkpoint as a folder that transformers loads with from_pretrained. Shared Apollo
    blocks are written out at depth L. The logits of both models are compared before anything is written:
    a model that would differ is refused, not saved."""
    if not args.resume:
        raise InputError("--export_hf exports the checkpoint of --out_dir: add --resume")
    if os.path.isdir(args.export_hf) and os.listdir(args.export_hf) and not args.force:
        raise InputError(f"--export_hf {args.export_hf} is not empty; add --force to replace it")
    model, ckpt = runtime.checkpoint_model(args.out_dir)
    at = evaluation_depth(args, model.cfg)  # Apollo's shared blocks are written out at depth L
    depth, layer_map = at['depth'], at['layer_map']
    meta = ckpt.get('meta') or data.load(args.data)[0]  # (checkpoints of earlier versions lack it)
    meta = {k: meta[k] for k in ('tokenizer', 'vocab_size', 'eot_id', 'mask_id', 'n_ordinary')}
    try:
        hf = to_hf(model, depth, layer_map, meta)
    except (ImportError, ValueError) as e:
        raise InputError(f"--export_hf: {e}")
    x = torch.randint(0, meta['n_ordinary'], (2, min(64, model.cfg.block_size)),
                      generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours = model(x, x, depth=depth, layer_map=layer_map)[0] if model.cfg.kind == 'gpt' else \
            model(x, depth=depth, layer_map=layer_map)[0]
        rel = ((hf(x).logits - ours).abs().max() / ours.abs().max()).item()
    if rel > 1e-4:
        raise InputError(f"--export_hf: the exported model's logits differ from ours (relative {rel:.1e}); "
                         f"refused")
    tmp = args.export_hf.rstrip('/') + '.tmp'
    hf.save_pretrained(tmp, safe_serialization=True)
    if os.path.isdir(args.export_hf):
        shutil.rmtree(args.export_hf)
    os.replace(tmp, args.export_hf)
    print(f"exported {args.out_dir}/ckpt.pt ({model.cfg.kind}, {depth} layers, step {ckpt['run']['step']}) "
          f"to {args.export_hf}: {type(hf).__name__}, logits match to {rel:.1e}")
    return dict(path=args.export_hf, rel_error=rel)


if __name__ == '__main__':
    main()
