"""
Train a Transformer from scratch or progressively (growing it) and account for every FLOP.

    python grow.py                                   # GPT on the offline stdlib corpus, default method
    python grow.py --model bert --method scratch --size tiny --max_steps 600
    python grow.py --resume --out_dir out            # continue an interrupted run exactly

Read top-down: `train` is the loop (evaluate and checkpoint when due, grow at a stage boundary, one optimizer
step, log), then its helpers in the order it calls them, then the command line. Below it: schedule.py, model.py,
runtime.py (device, processes, checkpoints, log, signals), flags.py; the scripts above import it, not it them.
"""
import argparse
import copy
import math
import os
import signal
import subprocess
import sys
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import torch
import torch.distributed as dist

import data
import flags
from data import InputError
from model import (Config, Transformer, carry_moments, deepen, growth_map, make_optimizer, micro_batch_flops,
                   num_params, widen)
from runtime import (Diverged, Interrupted, Log, LogWindow, Runtime, StopRequest, Stopwatch, check_memory,
                     close, command, compile_model, compiled_graphs, duration, human, load_optimizer,
                     not_finite, out_of_memory, peak_flops, plot_run, read_checkpoint, rng_states,
                     set_rng_states, start_runtime, start_wandb, write_checkpoint)
from schedule import (GROWN, METHODS, Budget, changes, draw_step, evaluation_depth, lr_at, make_budget,
                      optimizer_flops, plan, shared_lr_scales, stage_of, stages_for)


# ----------------------------------------------------------------------------- the training loop

def train(args, request=None, hook=None):
    """Train as the flags say; returns a summary dict. A stop `request` (SIGTERM, SIGINT) ends the run after a
    step with a checkpoint, raising Interrupted. `hook(run)` runs after each log line (bench.py's)."""
    run, request = start(args), request or StopRequest()
    rt, progress, model, optimizer = run.rt, run.progress, run.model, run.optimizer
    net = rt.wrap(model)  # DDP's wrapper under torchrun, the model itself otherwise
    while True:
        pos = run.budget.position(progress)  # the clock: steps, or FLOPs in steps of the target
        done = pos >= run.budget.steps - 1e-9  # (float FLOPs sums)
        stop = done or progress.step == args.stop_at or request.agreed(rt)
        if pos >= progress.next_eval or stop:  # evaluate, then checkpoint
            run.val_loss = evaluate_and_save(run)
        if stop:
            break
        request.at_once = False  # (from the first step on, a signal stops the run with a checkpoint)
        i = stage_of(pos, run.stages)
        if i > progress.stage_index:  # where the model grows: at the first step of each new stage
            model, optimizer = grow_at_boundary(run, i)
            net = rt.wrap(model)
        since_growth = progress.step - progress.grown_at if progress.stage_index else None
        stage, lr = run.stages[i], lr_at(pos, args, run.budget, since_growth)
        depths, layers = draw_step(args, stage, model, run.sampler)  # Apollo: depths; RaPTr: a path
        scales = shared_lr_scales(len(model.blocks), depths, layers, args.shared_lr)
        for group in optimizer.param_groups:
            group['lr'] = lr * group.get('rate', 1.0) * scales.get(group.get('block'), 1.0)  # (Muon: rate)

        # forward and backward over --grad_accum micro-batches, clip, then step unless a value is not finite
        loss_sum, flops = torch.zeros((), device=rt.device), optimizer_flops(args, model.cfg, len(model.blocks))
        for micro in range(args.grad_accum):
            depth = depths[micro % len(depths)]
            x, y = run.batches.next(stage.batch, stage.seq)
            flops += micro_batch_flops(model.cfg, depth, stage, y)
            x, y, masked = rt.put(x, y, data.masked_positions(y, model.cfg.kind))
            # DDP averages the gradients across ranks once per step, on the last micro-batch
            sync = not rt.ddp or micro == args.grad_accum - 1
            with nullcontext() if sync else net.no_sync(), rt.autocast():
                loss = net(x, y, depth=depth, layer_map=layers, pool=stage.pool, masked=masked)[1]
            run.scaler.scale(loss / args.grad_accum).backward()  # (scaled under float16 only)
            loss_sum += loss.detach()
        run.scaler.unscale_(optimizer)
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip or math.inf)
        # the fused AdamW skips the update on the device where found_inf is 1, as under a GradScaler: no
        # step waits for the device to decide (`settle` reads the flags when the loop logs)
        optimizer.found_inf = not_finite(rt, loss_sum, norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        run.scaler.update()  # float16: a smaller scale after an overflow (a skipped step), larger after 2000

        progress.add_step(depths, run.step_tokens, rt.all_sum(flops)[0] if rt.ddp else flops)
        run.window.add(depths, loss_sum / args.grad_accum, optimizer.found_inf, lr)
        run.window.warmed(progress, run.watch)  # (the first step after a start or growth: not in the rates)
        run.executed += depths
        run.paths += [layers] if stage.path else []
        if progress.step % args.log_interval == 0:
            log_train(run)  # the loop's one wait for the device between evaluations
            if hook:
                hook(run)
    return finish(run, request, done)


@dataclass
class Run:
    """One run's state, as `start` builds it; the loop's helpers take the run."""
    args: argparse.Namespace
    rt: Runtime
    cfg: Config
    stages: list              # the schedule (`stages_for`): each stage's shape and start on the clock
    depth_op: str             # how depth grows at a stage boundary (None: it does not)
    budget: Budget
    corpus: tuple             # (meta, train tokens, validation tokens)
    evals: list               # the fixed evaluation batches; the first is also the growth probe
    model: Transformer = None
    optimizer: torch.optim.Optimizer = None  # or model.Optimizers (Muon and AdamW)
    batches: data.Batches = None
    sampler: np.random.Generator = None  # Apollo's depths and RaPTr's paths: seeded alike on every rank
    progress: 'Progress' = None
    log: 'Log' = None
    window: 'LogWindow' = None  # the steps since the last train log line
    watch: Stopwatch = None
    scaler: torch.amp.GradScaler = None  # float16's loss scale (`Runtime.scaler`)
    step_tokens: int = 0      # tokens per optimizer step, all ranks: the same in every stage
    val_loss: float = None
    executed: list = field(default_factory=list)  # every executed depth (tests and the summary)
    paths: list = field(default_factory=list)  # every RaPTr path


def start(args):
    """The Run of these flags: the runtime, the data, the schedule, the first stage's model (or the
    checkpoint's state, with --resume), announced."""
    rt = start_runtime(args, unused=METHODS[args.method].draws == 'path')  # (RaPTr's skipped layers)
    if rt.ddp and not rt.master:  # rank 0 prepares the default corpus first
        dist.barrier()
    corpus = data.load(args.data)
    if rt.ddp and rt.master:
        dist.barrier()
    cfg = flags.model_config(args, corpus[0])
    stages, depth_op = stages_for(args, cfg)
    check_memory(args, rt, cfg)
    val = data.Batches(corpus[2], cfg.kind, corpus[0], seed=data.EVAL_SEED)  # (meta, train, val tokens)
    evals = data.eval_batches(val, args.eval_batches, args.batch_size, cfg.block_size)
    run = Run(args, rt, cfg, stages, depth_op, make_budget(args, cfg, stages, rt.world), corpus, evals,
              step_tokens=args.batch_size * args.grad_accum * cfg.block_size * rt.world)
    start_or_resume(run)
    if args.compile:
        compile_model(run.model, stages[run.progress.stage_index], evals[0], rt, METHODS[args.method].draws)
    run.log = Log(os.path.join(args.out_dir, 'log.jsonl'), run.progress.step if args.resume else None,
                  enabled=rt.master, wandb=start_wandb(args) if args.wandb and rt.master else None)
    with torch.device('meta'):  # what is about to train: the target's size (not allocated), --plan's lines
        rt.say(f"target: {num_params(Transformer(cfg)) / 1e6:.2f}M parameters, T {cfg.block_size}; on {rt}")
    for line in plan(args, cfg):
        rt.say(line)
    run.watch, run.window = Stopwatch(rt.device), LogWindow.at(run.progress, cold=True)
    return run


def finish(run, request, done):
    """The end of the loop: a finished run's stage summary, cost and sample, or the resume line of a run that
    stopped early. Returns the run's summary."""
    args, rt, progress = run.args, run.rt, run.progress
    if done:
        stage_summary(run)
        rt.say(run.budget.cost(progress, args))
        if rt.master:  # its picture; what it learned (sample.py, above, in a process of its own)
            plot_run(args.out_dir)
            if args.sample_tokens > 0:
                subprocess.run([sys.executable, os.path.join(os.path.dirname(__file__), 'sample.py'), '--out_dir',
                                args.out_dir, '--device', args.device, '--sample_tokens', str(args.sample_tokens),
                                *(['--prompt', args.prompt] if args.prompt else [])])
    close(rt, run.log)
    if not done:  # (--stop_at or a signal) say how to continue
        resume = f"continue with: python grow.py --resume --out_dir {args.out_dir}"
        if request.signum:
            raise Interrupted(request.signum, f"stopped by {signal.Signals(request.signum).name} after step "
                                              f"{progress.step} with a checkpoint; {resume}")
        rt.say(f"stopped at step {progress.step}; {resume}")
    return dict(step=progress.step, val_loss=run.val_loss, flops=progress.flops, tokens=progress.tokens,
                model=run.model, depths=run.executed, paths=run.paths, graphs=compiled_graphs(args))


@dataclass
class Progress:
    """The run's counters: what a checkpoint saves beside the weights, the optimizer and the random states."""
    step: int = 0             # optimizer steps taken
    stage_index: int = 0      # the stage being trained, an index into the schedule's stages
    grown_at: int = 0         # the step at which the model last grew (--rewarmup counts the steps since)
    tokens: int = 0           # training tokens seen (all processes)
    flops: float = 0.0        # training FLOPs spent, at the depth executed at each step
    train_time: float = 0.0   # seconds spent training (evaluation, checkpoints and growth excluded)
    next_eval: float = 0.0    # the clock position of the next evaluation
    skips: int = 0            # consecutive steps skipped for a non-finite loss or gradient norm
    depths: dict = field(default_factory=dict)  # executed depth -> micro-batches run at it, this stage

    def add_step(self, depths, tokens, flops):
        """One step taken: its data and compute are spent even when its update is skipped (`settle`)."""
        self.step, self.tokens, self.flops = self.step + 1, self.tokens + tokens, self.flops + flops
        for depth in depths:
            self.depths[str(depth)] = self.depths.get(str(depth), 0) + 1


# ----------------------------------------------------------------------------- helpers of the loop


def start_or_resume(run):
    """The first stage's model, optimizer, samplers and counters, or the checkpoint's (--resume)."""
    args, rt, cfg, (meta, train_tokens, _) = run.args, run.rt, run.cfg, run.corpus
    ckpt, ckpt_path = read_checkpoint(args.out_dir, say=lambda *_: None) if args.resume else (None, None)
    torch.manual_seed(args.seed)
    first = {k: getattr(run.stages[0], k) for k in ('n_blocks', 'n_embd', 'n_head', 'd_ff')}
    run.model = Transformer(Config(**ckpt['config']) if ckpt else replace(cfg, **first)).to(rt.device)
    run.optimizer = optimizer_of(run.model, args)
    if rt.ddp:  # the same initial weights, then each rank its own dropout masks (nanoGPT: seed + rank)
        torch.manual_seed(args.seed + rt.rank)
    # each rank its own data; BERT masks --mask_rate of the positions (evaluation always 15%)
    run.batches = data.Batches(train_tokens, cfg.kind, meta, seed=args.seed + rt.rank,
                               mlm_prob=args.mask_rate)
    run.sampler = np.random.default_rng([args.seed, 1])  # seeded alike: the same on every rank
    run.progress, run.scaler = Progress(), rt.scaler()
    if not ckpt:
        return
    if len(ckpt['data_rng']) != rt.world:
        raise InputError(f"--resume: {ckpt_path} was written by {len(ckpt['data_rng'])} processes, not "
                         f"{rt.world}")
    run.model.load_state_dict(ckpt['model'])
    load_optimizer(run.optimizer, ckpt['optimizer'])
    run.batches.rng.bit_generator.state = ckpt['data_rng'][rt.rank]
    run.sampler.bit_generator.state = ckpt['sampler_rng']
    set_rng_states(ckpt, rt)
    if run.scaler.is_enabled() and ckpt['scaler']:  # (float16; a run without it saved an empty state)
        run.scaler.load_state_dict(ckpt['scaler'])
    rt.say(f"resumed {ckpt_path} at step {ckpt['run']['step']}")
    run.progress = Progress(**ckpt['run'])


def optimizer_of(model, args):
    """The run's AdamW (or Muon and AdamW) for `model` (`make_optimizer`); Apollo's --shared_lr: per block."""
    return make_optimizer(model, args.lr, args.weight_decay, args.shared_lr not in (None, 'none'), args.beta2,
                          args.muon_lr if args.optimizer == 'muon' else None)


def evaluate_and_save(run):
    """Evaluate on the fixed batches, log it, write a checkpoint (rank 0); returns the validation loss."""
    args, rt, progress, model = run.args, run.rt, run.progress, run.model
    progress.train_time += run.watch.lap()
    settle(run)  # (a run that diverged stops here, its last good checkpoint kept)
    at = evaluation_depth(args, model.cfg)
    val, acc = evaluate(model, run.evals[rt.rank::rt.world], rt, **at)
    if not math.isfinite(val) or not all(bool(torch.isfinite(p).all()) for p in model.parameters()):
        raise Diverged(f"the validation loss at step {progress.step} is {val:.4g}" + stuck_at(run))
    run.log.write(type='eval', step=progress.step, val_loss=val, val_acc=acc, tokens=progress.tokens,
                  flops=progress.flops, time=progress.train_time, depth=at['depth'],
                  graphs=compiled_graphs(args))
    rt.say(f"eval step {progress.step}: val loss {val:.4f}, {100 * acc:.1f}% of the " +
           ("masked tokens" if model.cfg.kind == 'bert' else "next tokens") + " predicted right")
    # every rank's random states: each resumes its own data and dropout masks
    states = [(run.batches.rng.bit_generator.state, rng_states(rt))] * rt.world
    if rt.ddp:
        dist.all_gather_object(states, states[0])
    # saved before next_eval moves on: a run resumed here evaluates again (its log drops this record)
    if rt.master:
        save_checkpoint(run, data_rng=[d for d, _ in states], rank_rngs=[r for _, r in states],
                        sampler_rng=run.sampler.bit_generator.state, scaler=run.scaler.state_dict())
    progress.next_eval = (run.budget.position(progress) // args.eval_interval + 1) * args.eval_interval
    run.watch.restart()
    return val


@torch.no_grad()
def evaluate(model, evals, rt, **depth):
    """Mean loss over the fixed evaluation batches (each rank its share), and the share of predicted tokens
    whose argmax is right."""
    model.eval()
    loss, right, count = 0.0, 0, 0
    for x, y in evals:
        with rt.autocast():
            logits, batch_loss = model(x.to(rt.device), y.to(rt.device), **depth)
        truth = y[y != -100].to(rt.device)  # (BERT's logits are those of its masked positions, in this order)
        loss += batch_loss.item()
        right += int((logits.flatten(0, -2).argmax(-1) == truth).sum())
        count += truth.numel()
    model.train()
    totals = (loss, len(evals), right, count)
    loss, n, right, count = rt.all_sum(*totals) if rt.ddp else totals  # (every rank's share)
    return loss / n, right / count


def grow_at_boundary(run, i):
    """The growth into stage i, with the loss and gradient norm on a fixed batch just before and after
    (stacking raises both more than interpolation: Apollo, Table 2), its record and line. Returns the new
    (model, optimizer), also set on the run."""
    args, rt, progress, probe = run.args, run.rt, run.progress, run.evals[0]
    progress.train_time += run.watch.lap()
    settle(run)
    stage_summary(run)
    old, new = run.stages[progress.stage_index], run.stages[i]
    loss_before, grad_before = loss_and_grad_norm(run.model, probe, rt, **evaluation_depth(args, run.model.cfg))
    run.model, run.optimizer, src = grow_to(new, run.model, run.optimizer, run.depth_op, args)
    if args.compile:
        compile_model(run.model, new, probe, rt, METHODS[args.method].draws)
    loss_after, grad_after = loss_and_grad_norm(run.model, probe, rt, **evaluation_depth(args, run.model.cfg))
    record = dict(op=run.depth_op, src=src, loss_before=loss_before, loss_after=loss_after,
                  grad_norm_before=grad_before, grad_norm_after=grad_after)
    for k in GROWN:
        record['old_' + k], record['new_' + k] = getattr(old, k), getattr(new, k)
    run.log.write(type='growth', step=progress.step, stage=i + 1, flops=progress.flops,
                  time=progress.train_time, graphs=compiled_graphs(args), **record)
    rt.say(f"grow at step {progress.step}: stage {i + 1}/{len(run.stages)}, {', '.join(changes(old, new))} | "
           f"loss {loss_before:.4f} -> {loss_after:.4f} | grad norm {grad_before:.3f} -> {grad_after:.3f}")
    progress.stage_index, progress.grown_at = i, progress.step
    run.window.mark_cold(progress)
    run.watch.restart()
    return run.model, run.optimizer


def grow_to(stage, model, optimizer, op, args):
    """Grow the model to the shape of `stage`: deeper (`deepen` by `op`), then wider (`widen`). The optimizer's
    moments follow the weights' map (--opt_state copy, `growth_map`), start afresh (reset), or stay with their
    block index (slots: Apollo's official code). Returns (model, optimizer, src: each new block's old one)."""
    grown, src, tiles = model, None, {}
    if stage.n_blocks > len(model.blocks):
        grown, src = deepen(grown, stage.n_blocks, op, args.depth_noise or 0.0)
    if (stage.n_embd, stage.d_ff) != (grown.cfg.n_embd, grown.cfg.d_ff):
        grown, tiles = widen(grown, stage.n_embd, stage.d_ff)
    new_optimizer = optimizer_of(grown, args)
    if args.opt_state != 'reset':
        # (slots: block i keeps old block i's moments, so the depth map is left out; new indices get none)
        sources = growth_map(grown, src if args.opt_state == 'copy' else None, tiles)
        carry_moments((model, optimizer), (grown, new_optimizer), sources)
    return grown, new_optimizer, src


def loss_and_grad_norm(model, batch, rt, **depth):
    """Training loss and total gradient norm on one batch (at the given depth); leaves no gradient."""
    with rt.autocast():
        loss = model(*(t.to(rt.device) for t in batch), **depth)[1]
    loss.backward()
    norm = torch.sqrt(sum(p.grad.float().pow(2).sum() for p in model.parameters() if p.grad is not None))
    model.zero_grad(set_to_none=True)
    return loss.item(), norm.item()


def log_train(run):
    """The train record and line (after `settle`): rates over the window, the ETA from the FLOPs still to
    spend at the current FLOPs per second. A new window begins."""
    args, rt, progress, budget, window = run.args, run.rt, run.progress, run.budget, run.window
    progress.train_time += run.watch.lap()
    loss, lr = settle(run), window.lrs[-1]
    (seconds, tokens, flops), position = window.rates(progress), budget.position(progress)
    peak = peak_flops(rt.device)
    mfu = flops / rt.world / seconds / peak if peak else None  # per device
    depth = window.depths[-1]
    rec = run.log.write(type='train', step=progress.step, loss=loss, lr=lr, depth=depth,
                        depths=window.depths, stage=progress.stage_index + 1,
                        seq=run.stages[progress.stage_index].seq, tokens=progress.tokens, flops=progress.flops,
                        time=progress.train_time, tok_per_s=tokens / seconds,
                        mfu=mfu, graphs=compiled_graphs(args))
    where = f"step {rec['step']} ({budget.where(position)})" if budget.by_flops else budget.where(position)
    rt.say(f"{where} | stage {rec['stage']}/{len(run.stages)} | depth {depth} | loss {rec['loss']:.4f} | "
           f"lr {lr:.2e} | {human(rec['tokens'])} tokens | {rec['flops']:.3e} FLOPs | "
           f"{human(rec['tok_per_s'])} tok/s" +
           (f" | mfu {100 * mfu:.1f}%" if mfu else "") +
           (f" | {rec['graphs']} graphs compiled" if args.compile else "") +
           f" | eta {duration(budget.to_go(position) * seconds / max(flops, 1e-9))}")
    run.window = LogWindow.at(progress)


def settle(run):
    """Read the window's losses and skip flags (waits for the device): each step not applied gets a `skip`
    record and line; --max_skips in a row stop the run (Diverged). Returns the last step's loss."""
    window, progress, args = run.window, run.progress, run.args
    if window.read == len(window.bad):
        return window.losses[-1].item() if window.losses else None
    losses = torch.stack(window.losses[window.read:]).tolist()
    skipped = torch.stack(window.bad[window.read:]).tolist()
    for step, (loss, bad) in enumerate(zip(losses, skipped), start=window.step + window.read + 1):
        progress.skips, lr = progress.skips + 1 if bad else 0, window.lrs[step - window.step - 1]
        if not bad:
            continue
        run.log.write(type='skip', step=step, loss=loss, lr=lr, stage=progress.stage_index + 1,
                      skips=progress.skips)
        run.rt.say(f"step {step}: loss {loss:.4g} or its gradient norm is not finite; the step was not "
                   f"applied ({progress.skips} in a row, at most --max_skips {args.max_skips})")
        if progress.skips >= args.max_skips:
            raise Diverged(f"{progress.skips} steps in a row had a non-finite loss or gradient norm, the "
                           f"last at step {step}" + stuck_at(run, lr))
    window.read = len(window.bad)
    return losses[-1]


def stuck_at(run, lr=None):
    """Where a run diverged and what to try: the tail of the Diverged line."""
    where = f" (stage {run.progress.stage_index + 1}/{len(run.stages)}, lr {lr:.2e})" if lr is not None else ""
    return (f"{where}; the last good checkpoint stays in {run.args.out_dir}/ckpt.pt. Try a lower --lr "
            f"(allowed with --resume), --rewarmup N after growth, or --opt_state reset")


def stage_summary(run):
    """One record per finished stage: micro-batches run at each depth, and the mean executed depth."""
    progress = run.progress
    hist = {int(d): n for d, n in sorted(progress.depths.items(), key=lambda kv: int(kv[0]))}
    micro_batches = sum(hist.values())
    if micro_batches:
        mean = sum(d * n for d, n in hist.items()) / micro_batches
        run.log.write(type='stage', step=progress.step, stage=progress.stage_index + 1,
                      micro_batches=micro_batches, depth_hist=hist, mean_depth=mean)
        run.rt.say(f"stage {progress.stage_index + 1}/{len(run.stages)} done at step {progress.step}: mean depth "
                   f"{mean:.2f} over {micro_batches} micro-batches, histogram " +
                   ' '.join(f'{d}:{n}' for d, n in hist.items()))
    progress.depths = {}


def save_checkpoint(run, **extra):
    """Everything a resumed run needs to continue bit for bit (`runtime.write_checkpoint`)."""
    state = dict(config=asdict(run.model.cfg), model=run.model.state_dict(),
                 optimizer=run.optimizer.state_dict(), args=vars(run.args),
                 run=copy.deepcopy(asdict(run.progress)), meta=run.corpus[0], **extra)
    write_checkpoint(state, run.args.out_dir)


# ----------------------------------------------------------------------------- the command line

# grow.py's modes: a flag, and the script above that runs it with the same flags in place of this process
MODES = (('export_hf', 'export.py'), ('sample', 'sample.py'), ('plan', 'compare.py'), ('compare', 'compare.py'))


def main(argv=None):
    """`python grow.py`: train as the flags say; a mode of MODES runs its script with the same flags."""
    def body():
        args, typed = flags.parse(argv)
        script = next((script for flag, script in MODES if getattr(args, flag)), None)
        if script:  # checked here, resumed and run there
            flags.check(args, typed)
            if argv is not None:  # (called from Python, as the tests do: a process must not replace its caller)
                raise InputError(f"this mode of grow.py is {script}'s: call its main, or run python grow.py")
            os.execv(sys.executable, [sys.executable, os.path.join(os.path.dirname(__file__), script),
                                      *sys.argv[1:]])
        args = flags.parse_args(argv)
        try:
            with StopRequest(at_once=True) as request:
                return train(args, request)
        except RuntimeError as e:  # torch.cuda.OutOfMemoryError, or the CPU allocator's "can't allocate memory"
            if isinstance(e, torch.cuda.OutOfMemoryError) or "can't allocate memory" in str(e):
                raise InputError(out_of_memory(e, args))
            raise
    return command('grow.py', body)


if __name__ == '__main__':
    main()
