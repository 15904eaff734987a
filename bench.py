"""
How fast is nanogrow's training step? bench.py runs grow.py's own loop (`grow.train`) and, after each of its
log windows (`train`'s hook), as many steps of a plain nanoGPT-style loop (batch, forward, backward, clip,
optimizer step, nothing else) over a model of the same shape, batch and optimizer, in one process: the two
take turns, so both meet the same machine state. The first window of each is warm-up; the figures are
medians of the rest.

    python bench.py                                        # GPT tiny on CPU, in seconds
    python bench.py --model bert --pos rope                # BERT with rotary positions (learned: a table)
    python bench.py --blocks 3                             # an Apollo shallow stage: 3 weight blocks of 12
    python bench.py --vocab_size 50304 --compile           # the GPT-2 vocabulary, both sides compiled
    python bench.py --optimizer muon                       # GPT's default optimizer on both sides
    python bench.py --size small --vocab_size 50304 --compile --batch_size 16   # on a GPU
    python bench.py --check                # on a new GPU first: every CUDA path, one line each, gpu_check.json
"""
import argparse
import contextlib
import io
import math
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import torch

import data
import flags
import grow
import runtime
from model import SIZES, Transformer, make_optimizer


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0].strip(),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--model', default='gpt', choices=('gpt', 'bert'))
    p.add_argument('--size', default='tiny', help='a grow.py --size (tiny, small, base, large)')
    p.add_argument('--pos', default=None, choices=('learned', 'rope'), help="positions (default: the kind's)")
    p.add_argument('--vocab_size', type=int, default=None, help='default: the corpus tokenizer\'s, padded')
    p.add_argument('--blocks', type=int, default=None,
                   help='time an Apollo shallow stage of this many weight blocks (default: the full model)')
    p.add_argument('--batch_size', type=int, default=32)
    p.add_argument('--steps', type=int, default=5, help='steps per window, on each side')
    p.add_argument('--rounds', type=int, default=4, help='windows on each side after the warm-up one')
    p.add_argument('--compile', action='store_true', help='torch.compile on both sides')
    p.add_argument('--optimizer', default='adamw', choices=('adamw', 'muon'), help="both sides' (muon: "
                   "Muon for the blocks' matrices at grow.py's --muon_lr, AdamW for the rest, as grow.py)")
    p.add_argument('--device', default='auto', choices=('auto', 'cpu', 'cuda', 'mps'))
    p.add_argument('--data', default=data.DEFAULT, help='a folder prepared by data.py (default: stdlib)')
    p.add_argument('--check', action='store_true', help='the GPU check: every CUDA path, one line each, and '
                   'out_gpu_check/gpu_check.json (about 3 minutes on an H200)')
    return p.parse_args(argv)


def grow_flags(a, out_dir):
    """The grow.py run that bench.py times: no evaluation between its first and last step, no sample."""
    steps = a.steps * (a.rounds + 1)
    argv = ['--model', a.model, '--size', a.size, '--batch_size', a.batch_size, '--max_steps', steps + 1,
            '--log_interval', a.steps, '--eval_interval', steps + 1, '--eval_batches', 1,
            '--sample_tokens', 0, '--device', a.device, '--data', a.data, '--out_dir', out_dir,
            '--optimizer', a.optimizer, '--method', 'scratch']
    # Apollo's first stage at its own depth (the plain loop runs k layers); it grows after the last window
    if a.blocks:
        argv[-1:] = ['apollo', '--stages', f"{a.blocks},{SIZES[a.size]['n_layer']}", '--stage_at',
                     f'{steps / (steps + 1):.9f}', '--sampling', 'none']
    argv += ['--pos', a.pos] * bool(a.pos) + ['--vocab_size', a.vocab_size] * bool(a.vocab_size) + \
        ['--compile'] * a.compile
    return [str(v) for v in argv]


class Plain:
    """nanoGPT's loop over a model of the stage's shape: the same batches (data.Batches), the same optimizer
    (`model.make_optimizer`; Muon's step here never reads a skip flag, grow.py's reads one: the wait it costs
    is in the ratio), the same clipping and autocast; torch.compile on the whole model, as nanoGPT."""

    def __init__(self, run):
        self.rt, self.args, self.stage = run.rt, run.args, run.stages[run.progress.stage_index]
        self.model = Transformer(run.model.cfg).to(self.rt.device)
        a = self.args
        self.optimizer = make_optimizer(self.model, a.lr, a.weight_decay, beta2=a.beta2, muon_lr=a.muon_lr)
        self.forward = torch.compile(self.model) if a.compile else self.model
        meta, tokens, _ = run.corpus
        self.batches = data.Batches(tokens, run.model.cfg.kind, meta, seed=0)

    def steps(self, n):
        """Seconds for n steps, waiting for the device at the end."""
        start = time.perf_counter()
        for _ in range(n):
            for _ in range(self.args.grad_accum):
                x, y = self.batches.next(self.stage.batch, self.stage.seq)
                x, y = x.to(self.rt.device, non_blocking=True), y.to(self.rt.device, non_blocking=True)
                with self.rt.autocast():
                    _, loss = self.forward(x, y)
                (loss / self.args.grad_accum).backward()
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.args.grad_clip or math.inf)
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
        runtime.synchronize(self.rt.device)
        return time.perf_counter() - start


def bench(a):
    """Tokens per second of nanogrow's windows and the plain loop's, interleaved. Returns the figures."""
    seconds, seen = dict(nanogrow=[], plain=[]), {}
    flops, plain, last = [], None, dict(step=0, time=0.0, flops=0.0)  # where the window began

    def each_window(run):  # after grow.py's log line: the plain loop's turn, off nanogrow's clock
        nonlocal plain
        progress = run.progress
        steps = progress.step - last['step']
        seconds['nanogrow'].append(progress.train_time - last['time'])
        flops.append((progress.flops - last['flops']) / steps)
        plain = plain or Plain(run)
        seen.update(tokens=run.step_tokens, peak=runtime.peak_flops(run.rt.device),
                    blocks=len(run.model.blocks), optimizer=type(plain.optimizer).__name__)
        seconds['plain'].append(plain.steps(steps))
        last.update(step=progress.step, time=progress.train_time, flops=progress.flops)
        run.watch.restart()

    with tempfile.TemporaryDirectory() as out_dir, contextlib.redirect_stdout(io.StringIO()):  # (its log)
        summary = grow.train(flags.parse_args(grow_flags(a, out_dir)), hook=each_window)
    seen.update(steps=summary['step'])
    return figures(a.steps, seconds, flops, seen)


def figures(steps, seconds, flops, seen):
    """Medians over the windows after the first, as tokens per second, their ratio and the MFU."""
    tokens, peak = seen['tokens'], seen['peak']
    rate = {side: statistics.median(steps * tokens / s for s in secs[1:]) for side, secs in seconds.items()}
    step_flops = statistics.median(flops[1:])
    mfu = {side: step_flops * r / tokens / peak if peak else None for side, r in rate.items()}
    return dict(tokens_per_s=rate, ratio=rate['nanogrow'] / rate['plain'], mfu=mfu, tokens_per_step=tokens,
                windows=len(seconds['nanogrow']), steps=seen['steps'], blocks=seen['blocks'],
                optimizer=seen['optimizer'])


def gpu_checks(out, gpus):
    """The GPU check: every CUDA path no GPU has run yet, as (name, command, seconds allowed: 15 minutes in
    all), each run in order in a process of its own (the seventh resumes the sixth's checkpoint); 2-process
    NCCL DDP where 2 GPUs exist."""
    grow_py = [sys.executable, 'grow.py', '--size', 'tiny', '--max_steps', '40', '--eval_interval', '20',
               '--sample_tokens', '0']
    bench_py = [sys.executable, 'bench.py', '--size', 'small', '--vocab_size', '50304', '--compile',
                '--batch_size', '16']
    checks = [  # (the H200 ran each in a fifth to a third of its time: RESULTS "The first GPU")
        ('the CUDA tests', [sys.executable, '-m', 'pytest', '-q', 'test_grow.py', '-k', 'cuda'], 120),
        ('GPT, bfloat16, compiled, through growth', grow_py + ['--method', 'stack', '--dtype', 'bfloat16',
                                                              '--compile', '--out_dir', f'{out}/gpt'], 90),
        ('BERT, bfloat16, compiled, through growth', grow_py + ['--model', 'bert', '--method', 'compound',
                                                               '--dtype', 'bfloat16', '--compile',
                                                               '--out_dir', f'{out}/bert'], 90),
        ('Muon and CompleteP, bfloat16, compiled, through growth', grow_py + [
            '--method', 'apollo', '--optimizer', 'muon', '--scaling', 'completep', '--dtype', 'bfloat16',
            '--compile', '--out_dir', f'{out}/muon'], 90),
        ('float16 with the GradScaler', grow_py + ['--method', 'apollo', '--dtype', 'float16', '--out_dir',
                                                   f'{out}/fp16'], 60),
        ('a CPU checkpoint, before its growth', grow_py + ['--method', 'stack', '--device', 'cpu', '--stop_at',
                                                           '4', '--out_dir', f'{out}/moved'], 45),
        ('... resumed on CUDA and grown', [sys.executable, 'grow.py', '--resume', '--out_dir', f'{out}/moved',
                                           '--device', 'cuda'], 60),
        ("bench.py's GPU row", bench_py, 120),
        ("... under Muon, GPT's default", bench_py + ['--optimizer', 'muon'], 120)]
    ddp = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2', *grow_py[1:],
           '--method', 'apollo', '--out_dir', f'{out}/ddp']
    return checks + [('2-process NCCL DDP', ddp, 105)] * (gpus >= 2)


def gpu_check(out='out_gpu_check'):
    """Run `gpu_checks`: one line per check, and out/gpu_check.json (each check's command, exit status,
    seconds and last lines). Without CUDA it says so in one line."""
    if not torch.cuda.is_available():
        print("bench.py --check: no CUDA device here; run it on a machine with a GPU")
        return []
    results, here = [], os.path.dirname(os.path.abspath(__file__))
    os.makedirs(out, exist_ok=True)
    for name, command, limit in gpu_checks(os.path.abspath(out), torch.cuda.device_count()):
        start = time.perf_counter()
        try:
            done = subprocess.run(command, cwd=here, capture_output=True, text=True, timeout=limit)
            status, output = done.returncode, done.stdout + done.stderr
        except subprocess.TimeoutExpired as e:
            status, output = 'timeout', str(e.stdout or '') + str(e.stderr or '')
        tail = [line for line in output.splitlines() if line.strip()][-3:]
        results.append(dict(name=name, command=command, status=status, seconds=time.perf_counter() - start,
                            tail=tail))
        print(f"{'ok' if status == 0 else 'FAILED':>6}  {name} ({results[-1]['seconds']:.0f}s)"
              + (f": {tail[-1]}" if tail else ""), flush=True)
        with open(os.path.join(out, 'gpu_check.json'), 'w') as f:  # after each check: a cut-off run still tells
            json.dump(dict(device=torch.cuda.get_device_name(), torch=torch.__version__, checks=results), f,
                      indent=1)
    return results


def main(argv=None):
    a = parse(argv)
    if a.check:
        return gpu_check()
    result = bench(a)
    name = f"{a.model} {a.size}" + (f", {a.blocks} blocks" if a.blocks else "") + (f", pos {a.pos}" if a.pos
                                                                                    else "")
    name += (f", vocab {a.vocab_size}" if a.vocab_size else "") + (", compiled" if a.compile else "") + \
        (", Muon" if a.optimizer == 'muon' else "")
    print(f"{name}: {result['tokens_per_step']:,} tokens per step, medians of {a.rounds} windows of "
          f"{a.steps} steps")
    for side in ('nanogrow', 'plain'):
        mfu = result['mfu'][side]
        print(f"  {side:>8}: {result['tokens_per_s'][side]:10,.0f} tok/s" +
              (f", MFU {100 * mfu:.1f}%" if mfu else ""))
    print(f"  nanogrow / plain: {result['ratio']:.3f}")
    return result


if __name__ == '__main__':
    main()
