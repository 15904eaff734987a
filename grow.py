"""
Train a Transformer from scratch or progressively (growing it) and account for every FLOP.

    python grow.py                                   # GPT on the offline stdlib corpus, default method
    python grow.py --model bert --method scratch --size tiny --max_steps 600
    python grow.py --resume --out_dir out            # continue an interrupted run exactly

Read top-down: `train` (the loop: evaluate, checkpoint, grow, step, log), then the helpers it calls. The flags,
each method's stages and the LR schedule are in flags.py; the models and growth operators in model.py.
"""
import argparse
import copy
import json
import os
import shutil
import sys
import time
from contextlib import nullcontext
from dataclasses import asdict, replace

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

import compare
import data
from data import InputError
from flags import (DEFAULT_DATA, GROWTH_FLAGS, METHODS, depth_sampling, lr_at, model_config, parse_args,
                   pick_device, schedule, stage_of)
from model import (Config, Transformer, flops_per_step, grow_depth, grow_width, num_params, sample_depth, to_hf,
                   widen)

# bf16 dense peak by device name (first match wins); unknown devices get no MFU rather than a wrong one
PEAK_FLOPS = (('H100 PCIe', 756e12), ('H100', 989e12), ('H200', 989e12), ('A100', 312e12))


# ----------------------------------------------------------------------------- the training loop

def train(args):
    """Train as the flags say; returns a summary dict (final validation loss, FLOPs, steps, the model)."""
    device = pick_device(args)
    dtype = args.dtype if args.dtype != 'auto' else ('bfloat16' if device == 'cuda' else 'float32')
    ctx = torch.autocast(device, dtype=torch.bfloat16) if dtype == 'bfloat16' else nullcontext()
    # DDP, nanoGPT style: torchrun sets RANK/WORLD_SIZE/LOCAL_RANK; NCCL on CUDA, gloo on CPU
    ddp = 'RANK' in os.environ and int(os.environ.get('WORLD_SIZE', 1)) > 1
    rank, world = 0, 1
    if ddp:
        dist.init_process_group('nccl' if device == 'cuda' else 'gloo')
        rank, world = dist.get_rank(), dist.get_world_size()
        if device == 'cuda':
            torch.cuda.set_device(int(os.environ['LOCAL_RANK']))
    master = rank == 0
    say = print if master else (lambda *a, **k: None)
    if device == 'cuda':  # TF32 for the float32 matmuls that autocast leaves
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    if ddp and not master:
        dist.barrier()  # rank 0 prepares the default corpus first
    meta, train_tokens, val_tokens = load_data(args.data)
    if ddp and master:
        dist.barrier()
    if args.eval_batches < world:
        raise InputError(f"--eval_batches {args.eval_batches}: DDP splits them over {world} processes; give at least {world}")
    cfg = model_config(args, meta)
    plan, depth_op = schedule(args, cfg)
    starts = [st['start'] for st in plan]
    ckpt_path = os.path.join(args.out_dir, 'ckpt.pt')
    ckpt = torch.load(ckpt_path, map_location='cpu', weights_only=False) if args.resume else None

    torch.manual_seed(args.seed)
    first = {k: plan[0][k] for k in ('n_embd', 'n_head', 'd_ff')}
    model = Transformer(Config(**ckpt['config']) if ckpt else replace(cfg, n_blocks=plan[0]['blocks'], **first))
    model.to(device)
    optimizer = make_optimizer(model, args, device)
    batches = data.Batches(train_tokens, cfg.kind, meta, seed=args.seed + rank)  # each rank its own data
    # Apollo: a depth per step from an RNG of its own (the same on every rank, apart from the data's);
    # evaluation, growth probes and the final sample run the full depth L with the shared weights
    sampling, layer_map = depth_sampling(args)
    sampler = np.random.default_rng([args.seed, 1])
    full = dict(depth=cfg.n_layer, layer_map=layer_map) if sampling else {}
    evals = data.eval_batches(val_tokens, cfg.kind, meta, args.eval_batches, args.batch_size, cfg.block_size)
    run = dict(step=0, stage=0, tokens=0, flops=0.0, train_time=0.0, depths={}, next_eval=0)  # depths: histogram
    if ckpt:
        model.load_state_dict(ckpt['model'])
        optimizer.load_state_dict(ckpt['optimizer'])
        run = ckpt['run']
        batches.rng.bit_generator.state = ckpt['data_rng'][rank]
        sampler.bit_generator.state = ckpt['sampler_rng']
        torch.set_rng_state(ckpt['torch_rng'])
        say(f"resumed {ckpt_path} at step {run['step']}")
    if ckpt and len(ckpt['data_rng']) != world:
        raise InputError(f"--resume: {ckpt_path} was written by {len(ckpt['data_rng'])} processes, not {world}")
    if args.compile:  # block by block: every block has the same shapes, so one graph serves all of them,
        for block in model.blocks:  # at any depth Apollo samples; a growth compiles the new blocks
            block.compile()
        warm(model, plan[run['stage']], evals[0], ctx, device)
    graphs = lambda: torch._dynamo.utils.counters['stats']['unique_graphs'] if args.compile else None  # noqa: E731
    # the DDP wrapper is rebuilt after every growth (new parameters); wrapping broadcasts rank 0's weights
    wrap = (lambda m: DDP(m, device_ids=[torch.cuda.current_device()] if device == 'cuda' else None)) if ddp \
        else (lambda m: m)
    net = wrap(model)
    if master:
        os.makedirs(args.out_dir, exist_ok=True)
    log = Log(os.path.join(args.out_dir, 'log.jsonl'), resume_step=run['step'] if ckpt else None, enabled=master)
    step_tokens = args.batch_size * args.grad_accum * cfg.block_size * world  # the same in every stage
    with torch.device('meta'):  # the target's size without allocating it
        n_params = num_params(Transformer(cfg))
    say(f"{cfg.kind} {args.size}: {n_params / 1e6:.2f}M parameters at {cfg.n_layer} layers, n_embd {cfg.n_embd}, "
        f"T {cfg.block_size}, {args.method} on {device} ({dtype})" + (f" x {world} processes" if ddp else "") +
        f", {args.max_steps} steps of {step_tokens:,} tokens")
    for i, st in enumerate(plan if len(plan) > 1 else []):
        where = f"step {st['start']}" if args.budget == 'steps' else f"{100 * st['start'] / args.max_steps:g}% of the FLOPs"
        say(f"stage {i + 1}/{len(plan)} from {where}: {st['blocks']} blocks, n_embd {st['n_embd']}, "
            f"d_ff {st['d_ff']}, T {st['seq']} x batch {st['batch']}" + (f", grown by {depth_op}" if i else "") +
            (f", depth sampled by {sampling} ({layer_map} map)" if sampling else ""))
    peak = peak_flops(device)
    # The run's clock, in scratch-equivalent steps: the step itself (--budget steps), or the FLOPs spent over
    # what one step of the full target costs (--budget flops). Stages, LR schedule, evaluations and the end
    # all read this clock, so under equal compute a cheap method simply takes more steps.
    scratch_step = flops_per_step(cfg, cfg.n_layer, step_tokens, cfg.block_size)

    def position():
        return run['step'] if args.budget == 'steps' else run['flops'] / scratch_step

    session_start = position()
    # train_time is wall time spent training (evaluation and checkpoints excluded), read only after a sync
    t_mark, session_time = time.perf_counter(), 0.0
    last = dict(time=run['train_time'], tokens=run['tokens'], flops=run['flops'])  # at the last log line
    sampled, history = [], []  # depths run since the last log line, and in this whole session

    def clock():
        nonlocal t_mark, session_time
        if device == 'cuda':
            torch.cuda.synchronize()  # kernels are queued: the time is only honest once they have run
        now = time.perf_counter()
        run['train_time'] += now - t_mark
        session_time += now - t_mark
        t_mark = now

    while True:
        step, pos = run['step'], position()
        done = pos >= args.max_steps - 1e-9  # (float FLOPs sums)
        if pos >= run['next_eval'] or done or step == args.stop_at:
            clock()
            val = evaluate(model, evals[rank::world], ctx, device, **full)
            if ddp:  # each rank evaluated its share of the fixed batches: average them all
                total, count = all_sum(val * len(evals[rank::world]), len(evals[rank::world]), device=device)
                val = total / count
            log.write(type='eval', step=step, val_loss=val, tokens=run['tokens'], flops=run['flops'],
                      time=run['train_time'], depth=full.get('depth', len(model.blocks)), graphs=graphs())
            say(f"eval step {step}: val loss {val:.4f}")
            # saved before next_eval moves on: a run resumed here evaluates again (its log drops this record)
            data_rngs = [batches.rng.bit_generator.state] * world
            if ddp:
                dist.all_gather_object(data_rngs, batches.rng.bit_generator.state)
            if master:
                save_checkpoint(ckpt_path, model, optimizer, args, run, data_rng=data_rngs,
                                sampler_rng=sampler.bit_generator.state, meta=meta)
            run['next_eval'] = (pos // args.eval_interval + 1) * args.eval_interval
            t_mark = time.perf_counter()
        if done or step == args.stop_at:
            if done:
                stage_summary(log, step, run['stage'], len(plan), run, say)
            break

        # where the model grows: at the first step of each new stage
        stage = stage_of(pos, plan)
        st = plan[stage]
        if stage > run['stage']:
            clock()
            stage_summary(log, step, run['stage'], len(plan), run, say)
            model, optimizer, event = grow(model, optimizer, st, depth_op, args, device, ctx, evals[0], full)
            net = wrap(model)
            event.update(old_seq=plan[run['stage']]['seq'], new_seq=st['seq'])
            log.write(type='growth', step=step, stage=stage + 1, flops=run['flops'], time=run['train_time'],
                      graphs=graphs(), **event)
            say(f"grow at step {step}: stage {stage + 1}/{len(plan)}, " +
                ', '.join(f"{k} {event['old_' + k]} -> {event['new_' + k]}" for k in ('depth', 'n_embd', 'd_ff', 'seq')
                          if event['old_' + k] != event['new_' + k]) +
                f" | loss {event['loss_before']:.4f} -> {event['loss_after']:.4f} | grad norm "
                f"{event['grad_norm_before']:.3f} -> {event['grad_norm_after']:.3f}")
            run['stage'] = stage
            t_mark = time.perf_counter()

        # one optimizer step: grad_accum micro-batches at the depth the model executes
        lr = lr_at(pos, args, starts)
        for group in optimizer.param_groups:
            group['lr'] = lr
        depth = sample_depth(len(model.blocks), cfg.n_layer, sampling, sampler) if sampling else len(model.blocks)
        run['depths'][str(depth)] = run['depths'].get(str(depth), 0) + 1
        sampled.append(depth)
        history.append(depth)
        loss_sum, head_tokens = torch.zeros((), device=device), 0
        for micro in range(args.grad_accum):
            x, y = batches.next(st['batch'], st['seq'])
            head_tokens += int((y != -100).sum()) if cfg.kind == 'bert' else y.numel()
            if device == 'cuda':  # pinned host memory: the copy overlaps the previous step's kernels
                x, y = x.pin_memory(), y.pin_memory()
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            # DDP: gradients are averaged across ranks once per step, on the last micro-batch only
            with net.no_sync() if ddp and micro < args.grad_accum - 1 else nullcontext(), ctx:
                _, loss = net(x, y, depth=depth, layer_map=layer_map)
            (loss / args.grad_accum).backward()
            loss_sum += loss.detach()
        if ddp:  # every rank must count the same FLOPs: the clock decides when all of them grow
            head_tokens = int(all_sum(head_tokens, device=device)[0])
        if args.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        tokens = st['batch'] * args.grad_accum * st['seq'] * world
        flops = flops_per_step(model.cfg, depth, tokens, st['seq'], head_tokens)
        run.update(step=step + 1, tokens=run['tokens'] + tokens, flops=run['flops'] + flops)

        if run['step'] % args.log_interval == 0:
            clock()
            dt = run['train_time'] - last['time']
            mfu = (run['flops'] - last['flops']) / world / dt / peak if peak else None  # per device
            eta = (args.max_steps - position()) * session_time / max(1e-9, position() - session_start)
            rec = log.write(type='train', step=run['step'], loss=loss_sum.item() / args.grad_accum, lr=lr,
                            depth=depth, depths=sampled, stage=stage + 1, seq=st['seq'], tokens=run['tokens'],
                            flops=run['flops'],
                            time=run['train_time'], tok_per_s=(run['tokens'] - last['tokens']) / dt, mfu=mfu,
                            graphs=graphs())
            where = f"{rec['step']}/{args.max_steps}" if args.budget == 'steps' else \
                f"{rec['step']} ({100 * position() / args.max_steps:.0f}% of the FLOPs)"
            say(f"step {where} | stage {stage + 1}/{len(plan)} | depth {depth} | "
                  f"loss {rec['loss']:.4f} | lr {lr:.2e} | {human(rec['tokens'])} tokens | {rec['flops']:.3e} FLOPs | "
                  f"{human(rec['tok_per_s'])} tok/s" + (f" | mfu {100 * mfu:.1f}%" if mfu else "") +
                (f" | {rec['graphs']} graphs compiled" if args.compile else "") +
                  f" | eta {duration(eta)}")
            last, sampled = dict(time=run['train_time'], tokens=run['tokens'], flops=run['flops']), []

    if done and args.sample_tokens > 0 and master:
        show_sample(model, val_tokens, meta, device, args.sample_tokens, full)
    elif not done:
        say(f"stopped at step {run['step']}; continue with: python grow.py --resume --out_dir {args.out_dir}")
    if ddp:
        dist.destroy_process_group()
    return dict(step=run['step'], val_loss=val, flops=run['flops'], tokens=run['tokens'], model=model,
                depths=history, graphs=graphs())


# ----------------------------------------------------------------------------- helpers of the loop

def load_data(path):
    """The prepared corpus; the default one is prepared on first use (offline: stdlib + byte)."""
    if path == DEFAULT_DATA and not os.path.isfile(os.path.join(path, 'meta.json')):
        print(f"{path} not found: preparing it (stdlib .py files, byte tokenizer, offline)")
        data.prepare('stdlib', 'byte', path, verbose=False)
    elif not os.path.isdir(path):
        raise InputError(f"--data {path}: no such folder; prepare one with `python data.py --out_dir {path}`")
    return data.load(path)


def make_optimizer(model, args, device):
    """AdamW; weight decay on matrices and embeddings only, never on biases and LayerNorm gains."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [dict(params=[p for p in params if p.dim() >= 2], weight_decay=args.weight_decay),
              dict(params=[p for p in params if p.dim() < 2], weight_decay=0.0)]
    return torch.optim.AdamW(groups, lr=args.lr, betas=(0.9, 0.95), fused=device == 'cuda')


def grow(model, optimizer, stage, op, args, device, ctx, probe, full=None):
    """Grow the model to the stage's size: deeper (grow_depth), then wider (grow_width); carry the optimizer.

    The AdamW moments follow the weights through the same maps (--opt_state copy: the block index map, then
    the width tiling with exp_avg / n and exp_avg_sq / n^2; the step count kept) or start afresh (reset).
    Returns (new model, new optimizer, event). The event holds the loss and gradient norm on a fixed batch
    just before and after: stacking raises both more than interpolation does (Apollo, Table 2)."""
    loss_before, grad_before = loss_and_grad_norm(model, probe, ctx, device, **(full or {}))
    moments = {}  # parameter name -> its AdamW state, carried through the same maps as the weights
    if args.opt_state == 'copy':
        moments = {n: optimizer.state[p] for n, p in model.named_parameters() if p in optimizer.state}
    new, src = model, None
    if stage['blocks'] > len(model.blocks):
        new, src = grow_depth(new, stage['blocks'], op)
        moments = {n: moments[from_] for n, from_ in depth_names(new, src).items() if from_ in moments}
    if (stage['n_embd'], stage['d_ff']) != (new.cfg.n_embd, new.cfg.d_ff):
        new, plan = grow_width(new, stage['n_embd'], stage['d_ff'])
        moments = {n: dict(s, exp_avg=widen(s['exp_avg'], plan[n]), exp_avg_sq=widen(s['exp_avg_sq'], plan[n], 2))
                   for n, s in moments.items()}
    new_optimizer = make_optimizer(new, args, device)
    for n, p in new.named_parameters():
        if n in moments:
            new_optimizer.state[p] = {k: v.clone() for k, v in moments[n].items()}
    if args.compile:
        for block in new.blocks:
            block.compile()
        warm(new, stage, probe, ctx, device)
    loss_after, grad_after = loss_and_grad_norm(new, probe, ctx, device, **(full or {}))
    c, d = model.cfg, new.cfg
    event = dict(old_depth=c.n_blocks, new_depth=d.n_blocks, old_n_embd=c.n_embd, new_n_embd=d.n_embd,
                 old_d_ff=c.d_ff, new_d_ff=d.d_ff, op=op, src=src, loss_before=loss_before,
                 loss_after=loss_after, grad_norm_before=grad_before, grad_norm_after=grad_after)
    return new, new_optimizer, event


def warm(model, stage, probe, ctx, device):
    """--compile: one forward and backward at the stage's training shape, before the stage's clock starts, so that
    its first step compiles nothing (the count of graphs is logged to check it). The batch is the probe's tokens
    laid out as the stage's (batch, seq); the random state is put back, so warming changes no run."""
    x, y = (t.reshape(stage['batch'], stage['seq']) for t in probe)
    with torch.random.fork_rng(devices=[torch.cuda.current_device()] if device == 'cuda' else []):
        loss_and_grad_norm(model, (x, y), ctx, device)


def depth_names(new, src):
    """Parameter name in the grown model -> the name it was copied from (blocks.i. <- blocks.src[i].)."""
    names = {}
    for name, _ in new.named_parameters():
        if name.startswith('blocks.'):
            _, i, rest = name.split('.', 2)
            names[name] = f'blocks.{src[int(i)]}.{rest}'
        else:
            names[name] = name
    return names


def loss_and_grad_norm(model, batch, ctx, device, **depth):
    """Training loss and total gradient norm on one batch (at the evaluation depth); leaves no gradient."""
    x, y = batch
    with ctx:
        loss = model(x.to(device), y.to(device), **depth)[1]
    loss.backward()
    norm = torch.sqrt(sum(p.grad.float().pow(2).sum() for p in model.parameters() if p.grad is not None))
    model.zero_grad(set_to_none=True)
    return loss.item(), norm.item()


@torch.no_grad()
def evaluate(model, evals, ctx, device, **depth):
    """Mean loss over the fixed evaluation batches, at the model's own depth unless told otherwise."""
    model.eval()
    losses = []
    for x, y in evals:
        with ctx:
            losses.append(model(x.to(device), y.to(device), **depth)[1].item())
    model.train()
    return sum(losses) / len(losses)


def save_checkpoint(path, model, optimizer, args, run, **rngs):
    """Everything a resumed run needs to continue bit for bit; written atomically (temp file + rename)."""
    state = dict(config=asdict(model.cfg), model=model.state_dict(), optimizer=optimizer.state_dict(),
                 args=vars(args), run=copy.deepcopy(run), torch_rng=torch.get_rng_state(), **rngs)
    torch.save(state, path + '.tmp')
    os.replace(path + '.tmp', path)


def all_sum(*values, device):
    """DDP: each value summed over all ranks."""
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def stage_summary(log, step, stage, n_stages, run, say=print):
    """One record per finished stage: how often each depth ran and the mean executed depth."""
    hist = {int(d): n for d, n in sorted(run['depths'].items(), key=lambda kv: int(kv[0]))}
    steps = sum(hist.values())
    if steps:
        mean = sum(d * n for d, n in hist.items()) / steps
        log.write(type='stage', step=step, stage=stage + 1, steps=steps, depth_hist=hist, mean_depth=mean)
        say(f"stage {stage + 1}/{n_stages} done at step {step}: mean depth {mean:.2f} over {steps} steps, "
              f"histogram {' '.join(f'{d}:{n}' for d, n in hist.items())}")
    run['depths'] = {}


class Log:
    """JSON lines in out_dir/log.jsonl, one record per log step and per evaluation, for plotting.
    On resume the records the interrupted run wrote after its checkpoint are dropped (they are redone)."""

    def __init__(self, path, resume_step=None, enabled=True):
        self.path, self.enabled = path, enabled
        if not enabled:  # DDP: rank 0 alone writes
            return
        records = []
        if resume_step is not None and os.path.isfile(path):
            with open(path) as f:
                records = [r for r in map(json.loads, f) if r['step'] < resume_step or
                           (r['step'] == resume_step and r['type'] == 'train')]
        with open(path + '.tmp', 'w') as f:
            f.writelines(json.dumps(r) + '\n' for r in records)
        os.replace(path + '.tmp', path)

    def write(self, **record):
        if self.enabled:
            with open(self.path, 'a') as f:
                f.write(json.dumps(record) + '\n')
        return record


def peak_flops(device):
    if device != 'cuda':
        return None
    name = torch.cuda.get_device_name()
    return next((v for k, v in PEAK_FLOPS if k in name), None)


def human(n):
    for unit in ('', 'k', 'M', 'G', 'T'):
        if abs(n) < 1000:
            return f"{n:.1f}{unit}" if unit else f"{n:.0f}"
        n /= 1000
    return f"{n:.1f}P"


def duration(s):
    return f"{int(s // 3600)}h{int(s % 3600 // 60):02d}m" if s >= 3600 else f"{int(s // 60)}m{int(s % 60):02d}s"


# ----------------------------------------------------------------------------- what the model learned

@torch.no_grad()
def show_sample(model, val_tokens, meta, device, n_tokens, full, seed=0):
    """GPT: continue the start of a file. BERT: fill 15% masked positions of a validation window."""
    enc = data.get_tokenizer(meta['tokenizer'])
    model.eval()
    g = torch.Generator(device='cpu').manual_seed(seed)
    if model.cfg.kind == 'gpt':
        idx = torch.tensor([[meta['eot_id']]], device=device)
        for _ in range(n_tokens):
            logits = model(idx[:, -model.cfg.block_size:], **full)[0][:, -1].float().cpu()
            logits[:, meta['n_ordinary']:] = -float('inf')  # no special, [MASK] or padding ids in the text
            probs = torch.softmax(logits / 0.8, dim=-1)
            idx = torch.cat([idx, torch.multinomial(probs, 1, generator=g).to(device)], dim=1)
        print(f"--- sample ---\n{enc.decode(idx[0, 1:].tolist())}\n--------------")
    else:
        T = min(model.cfg.block_size, n_tokens, len(val_tokens))
        x = torch.from_numpy(val_tokens[:T].astype(np.int64))[None]
        chosen = torch.rand(x.shape, generator=g) < 0.15
        masked = torch.where(chosen, meta['mask_id'], x)
        logits = model(masked.to(device), **full)[0].float().cpu()
        logits[..., meta['n_ordinary']:] = -float('inf')
        filled = torch.where(chosen, logits.argmax(-1), x)
        blank = enc.encode_ordinary('_')[0]
        acc = (filled[chosen] == x[chosen]).float().mean().item() if chosen.any() else float('nan')
        print(f"--- fill the mask ({int(chosen.sum())} masked, {100 * acc:.0f}% right) ---\n"
              f"masked: {enc.decode(torch.where(chosen, blank, x)[0].tolist())!r}\n"
              f"filled: {enc.decode(filled[0].tolist())!r}\n"
              f"truth:  {enc.decode(x[0].tolist())!r}\n--------------")
    model.train()


def compare_methods(args):
    """--compare: every method with the same target, data, seed, evaluation batches, budget and LR schedule
    shape, one after another in out_dir/<method>; then the table of compare.py (and its plots)."""
    runs = []
    if os.path.isdir(args.compare):  # a finished comparison: report again, train nothing
        out_dir = args.compare
    else:
        methods = args.compare.split(',')
        if any(m not in METHODS for m in methods) or 'scratch' not in methods or len(set(methods)) < len(methods):
            raise InputError(f"--compare {args.compare}: give distinct methods among {', '.join(METHODS)}, "
                             f"scratch included (its final loss is the target), or an existing folder")
        if args.resume or args.stop_at:
            raise InputError("--compare runs whole runs: --resume and --stop_at apply to single runs")
        for m in ['scratch'] + [m for m in methods if m != 'scratch']:
            sub = argparse.Namespace(**{**vars(args), 'method': m, 'out_dir': os.path.join(args.out_dir, m),
                                        'compare': None})
            if m == 'scratch':  # flags that shape growth do not apply to the baseline
                for k in GROWTH_FLAGS:
                    setattr(sub, k, None)
            if m != 'apollo':
                sub.sampling = sub.layer_map = None
            if os.path.exists(os.path.join(sub.out_dir, 'ckpt.pt')):
                raise InputError(f"--out_dir {args.out_dir}: {sub.out_dir} already holds a run; choose another "
                                 f"--out_dir, or print it with --compare {args.out_dir}")
            schedule(sub, model_config(sub, load_data(sub.data)[0]))  # every flag checked before any training
            runs.append(sub)
        for sub in runs:
            print(f"=== {sub.method} -> {sub.out_dir}")
            train(sub)
        out_dir = args.out_dir
    try:
        rows, curves = compare.report(out_dir, [sub.method for sub in runs] or None)
    except (OSError, ValueError, KeyError) as e:
        raise InputError(f"--compare {out_dir}: not a comparison folder ({e})")
    print(compare.write(rows, out_dir))
    compare.plot(curves, out_dir)
    return rows


def export_hf(args):
    """--export_hf: the checkpoint as a folder that transformers loads with from_pretrained. Shared Apollo
    blocks are written out at depth L. The logits of both models are compared before anything is written:
    a model that would differ is refused, not saved."""
    if not args.resume:
        raise InputError("--export_hf exports the checkpoint of --out_dir: add --resume")
    if os.path.isdir(args.export_hf) and os.listdir(args.export_hf) and not args.force:
        raise InputError(f"--export_hf {args.export_hf} is not empty; add --force to replace it")
    ckpt = torch.load(os.path.join(args.out_dir, 'ckpt.pt'), map_location='cpu', weights_only=False)
    model = Transformer(Config(**ckpt['config']))
    model.load_state_dict(ckpt['model'])
    model.eval()
    sampling, layer_map = depth_sampling(args)
    depth = model.cfg.n_layer if sampling else len(model.blocks)  # what evaluation runs
    meta = ckpt.get('meta') or load_data(args.data)[0]  # (checkpoints of earlier versions lack it)
    meta = {k: meta[k] for k in ('tokenizer', 'vocab_size', 'eot_id', 'mask_id', 'n_ordinary')}
    try:
        hf = to_hf(model, depth, layer_map, meta)
    except ImportError as e:
        raise InputError(f"--export_hf: {e}")
    x = torch.randint(0, meta['n_ordinary'], (2, min(64, model.cfg.block_size)), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours = model(x, x, depth=depth, layer_map=layer_map)[0] if model.cfg.kind == 'gpt' else \
            model(x, depth=depth, layer_map=layer_map)[0]
        rel = ((hf(x).logits - ours).abs().max() / ours.abs().max()).item()
    if rel > 1e-4:
        raise InputError(f"--export_hf: the exported model's logits differ from ours (relative {rel:.1e}); refused")
    tmp = args.export_hf.rstrip('/') + '.tmp'
    hf.save_pretrained(tmp, safe_serialization=True)
    if os.path.isdir(args.export_hf):
        shutil.rmtree(args.export_hf)
    os.replace(tmp, args.export_hf)
    print(f"exported {args.out_dir}/ckpt.pt ({model.cfg.kind}, {depth} layers, step {ckpt['run']['step']}) to "
          f"{args.export_hf}: {type(hf).__name__}, logits match to {rel:.1e}")
    return dict(path=args.export_hf, rel_error=rel)


def main(argv=None):
    try:
        args = parse_args(argv)
        if args.export_hf:
            return export_hf(args)
        return compare_methods(args) if args.compare else train(args)
    except InputError as e:
        print(f"grow.py: error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == '__main__':
    main()
