"""
A checkpoint as a Hugging Face model folder (GPT2LMHeadModel, BertForMaskedLM or RoFormerForMaskedLM,
safetensors) that transformers loads with from_pretrained; transformers is optional and needed here only.

    python export.py --out_dir out --to hf_model

`python grow.py --resume --out_dir out --export_hf hf_model` is the same command. The mapping of our weights
onto transformers' names is `to_hf`.
"""
import argparse
import os
import shutil
import sys

import torch

import flags
import runtime
from data import InputError
from schedule import evaluation_depth
from model import map_layers


def main(argv=None):
    """`python export.py --out_dir out --to hf_model [--force]`, or grow.py's flags with --export_hf."""
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    if not any(a.split('=')[0] == '--export_hf' for a in argv):
        p = argparse.ArgumentParser(description='A nanogrow checkpoint as a Hugging Face model folder.')
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
    meta = {k: ckpt['meta'][k] for k in ('tokenizer', 'vocab_size', 'eot_id', 'mask_id', 'n_ordinary')}
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


# ----------------------------------------------------------------------------- the mapping

def to_hf(model, depth, layer_map, meta=None):
    """The model as a Hugging Face `GPT2LMHeadModel` or `BertForMaskedLM` with the same logits (transformers
    is optional and imported here only). Shared blocks are written out at `depth` through the layer map.

    What maps to what: GPT2's Conv1D stores W transposed; our exact GELU is its 'gelu' (not 'gelu_new');
    LayerNorm eps is PyTorch's 1e-5; missing biases (--bias 0) become zeros; BERT's token-type embedding (we
    have none) is a single zero row; our MLM head is BERT's cls.predictions (dense, GELU, LayerNorm, decoder
    tied to the word embeddings, bias); the vocabulary keeps our padding and [MASK] id. A BERT with rotary
    positions is RoFormerForMaskedLM: the same layers, no position table, the same interleaved rotation."""
    cfg = model.cfg
    if cfg.pre_ln != (cfg.kind == 'gpt') or (cfg.kind == 'gpt' and cfg.pos != 'learned'):
        norm = 'pre' if cfg.pre_ln else 'post'
        raise ValueError(f"no transformers class computes a {norm}-LN {cfg.kind} with "
                         f"{cfg.pos} positions; export GPTs with learned positions and post-LN BERTs")
    try:
        import transformers
    except ImportError:
        raise ImportError("the export needs transformers: pip install transformers safetensors")
    blocks = [model.blocks[i] for i in map_layers(len(model.blocks), depth, layer_map)]
    hf_cfg, state = (_gpt2_state if cfg.kind == 'gpt' else _bert_state)(transformers, model, blocks)
    hf = (transformers.GPT2LMHeadModel if cfg.kind == 'gpt' else transformers.RoFormerForMaskedLM
          if cfg.pos == 'rope' else transformers.BertForMaskedLM)(hf_cfg)
    missing, unexpected = hf.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith(('attn.bias', 'attn.masked_bias', 'position_ids',
                                                      'embed_positions.weight'))]  # (buffers, rebuilt)
    if missing or unexpected:
        raise ValueError(f"export mapping incomplete: missing {missing}, unexpected {unexpected}")
    hf.config.nanogrow = dict(kind=model.cfg.kind, **(meta or {}))  # tokenizer name, [MASK] and special ids
    return hf.eval()


def _weight(m):
    return m.weight.detach().float().cpu()


def _bias(m):
    return m.bias.detach().float().cpu() if m.bias is not None else torch.zeros(m.weight.shape[0])


def _gpt2_state(transformers, model, blocks):
    cfg, w, bias = model.cfg, _weight, _bias
    hf_cfg = transformers.GPT2Config(vocab_size=cfg.vocab_size, n_positions=cfg.block_size, n_embd=cfg.n_embd,
                                     n_layer=len(blocks), n_head=cfg.n_head, n_inner=cfg.d_ff,
                                     activation_function='gelu', layer_norm_epsilon=1e-5, resid_pdrop=0.0,
                                     embd_pdrop=0.0, attn_pdrop=0.0, tie_word_embeddings=True)
    out = {'transformer.wte.weight': w(model.wte), 'transformer.wpe.weight': w(model.wpe)}
    for i, b in enumerate(blocks):
        p = f'transformer.h.{i}.'
        for ours, theirs in ((b.ln_1, 'ln_1'), (b.ln_2, 'ln_2')):
            out[p + theirs + '.weight'], out[p + theirs + '.bias'] = w(ours), bias(ours)
        for ours, theirs in ((b.attn.c_attn, 'attn.c_attn'), (b.attn.c_proj, 'attn.c_proj'),
                             (b.mlp.c_fc, 'mlp.c_fc'), (b.mlp.c_proj, 'mlp.c_proj')):
            out[p + theirs + '.weight'], out[p + theirs + '.bias'] = w(ours).T.contiguous(), bias(ours)
    out['transformer.ln_f.weight'], out['transformer.ln_f.bias'] = w(model.ln_f), bias(model.ln_f)
    out['lm_head.weight'] = w(model.wte)
    return hf_cfg, out


def _bert_state(transformers, model, blocks):
    cfg, w, bias, C = model.cfg, _weight, _bias, model.cfg.n_embd
    rope = cfg.pos == 'rope'
    hf_cfg = (transformers.RoFormerConfig if rope else transformers.BertConfig)(
        vocab_size=cfg.vocab_size, hidden_size=C, num_hidden_layers=len(blocks),
        num_attention_heads=cfg.n_head, intermediate_size=cfg.d_ff, hidden_act='gelu',
        max_position_embeddings=cfg.block_size, type_vocab_size=1, layer_norm_eps=1e-5,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, tie_word_embeddings=True)
    e = ('roformer' if rope else 'bert') + '.embeddings.'
    out = {e + 'word_embeddings.weight': w(model.wte), e + 'token_type_embeddings.weight': torch.zeros(1, C),
           e + 'LayerNorm.weight': w(model.ln_emb), e + 'LayerNorm.bias': bias(model.ln_emb)}
    if not rope:
        out[e + 'position_embeddings.weight'] = w(model.wpe)
    for i, b in enumerate(blocks):
        p = ('roformer' if rope else 'bert') + f'.encoder.layer.{i}.'
        qkv_w, qkv_b = w(b.attn.c_attn).split(C), bias(b.attn.c_attn).split(C)
        for j, name in enumerate(('query', 'key', 'value')):
            out[p + f'attention.self.{name}.weight'] = qkv_w[j]
            out[p + f'attention.self.{name}.bias'] = qkv_b[j]
        for ours, theirs in ((b.attn.c_proj, 'attention.output.dense'),
                             (b.ln_1, 'attention.output.LayerNorm'), (b.mlp.c_fc, 'intermediate.dense'),
                             (b.mlp.c_proj, 'output.dense'), (b.ln_2, 'output.LayerNorm')):
            out[p + theirs + '.weight'], out[p + theirs + '.bias'] = w(ours), bias(ours)
    c = 'cls.predictions.'
    out[c + 'transform.dense.weight'] = w(model.mlm_dense)
    out[c + 'transform.dense.bias'] = bias(model.mlm_dense)
    out[c + 'transform.LayerNorm.weight'] = w(model.ln_f)
    out[c + 'transform.LayerNorm.bias'] = bias(model.ln_f)
    out[c + 'bias'] = out[c + 'decoder.bias'] = model.mlm_bias.detach().float().cpu()
    out[c + 'decoder.weight'] = w(model.wte)
    return hf_cfg, out


if __name__ == '__main__':
    main()
