"""
Where a run executes: the device and its autocast dtype, torchrun's processes (DDP), the memory a micro-batch
needs, where its records go (log.jsonl, and Weights & Biases with --wandb), and the signals that ask a run to
stop. grow.py holds the training and decides what to log; this file holds the machine under it, so that the
loop reads as nanoGPT's and bench.py can time a step on the same runtime without the loop.
"""
import json
import os
import secrets
import signal
import sys
import threading
import time
from contextlib import nullcontext
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

from data import InputError
from model import Config, Transformer

# bf16 dense peak by device name (first match wins); unknown devices get no MFU rather than a wrong one
PEAK_FLOPS = (('H100 PCIe', 756e12), ('H100 NVL', 835e12), ('H100', 989e12), ('H200', 989e12),
              ('A100', 312e12))


# ----------------------------------------------------------------------------- the device and the processes

@dataclass
class Runtime:
    """Where the run executes: the device, the autocast dtype and, under torchrun, this process's rank."""
    device: str
    dtype: str
    rank: int = 0
    world: int = 1
    unused: bool = False  # some parameters may get no gradient in a step (RaPTr's skipped layers)
    host_group: object = None  # DDP on CUDA: a gloo group for host values (`all_sum`)

    @property
    def ddp(self):
        return self.world > 1

    @property
    def master(self):  # rank 0 alone prints, logs and writes checkpoints
        return self.rank == 0

    def autocast(self):
        if self.dtype == 'float32':
            return nullcontext()
        return torch.autocast(self.device, dtype=getattr(torch, self.dtype))

    def scaler(self):
        """float16 needs a GradScaler (its range is narrow: small gradients would flush to zero); bfloat16 and
        float32 get a disabled one, whose calls do nothing. It starts at 2**10, not torch's 2**16: each
        overflow skips a step, and a run stops after --max_skips skips in a row."""
        return torch.amp.GradScaler(self.device, init_scale=2.0 ** 10, enabled=self.dtype == 'float16')

    def __str__(self):
        # the thread count is part of what a CPU run reproduces: other threads, other sums, other losses
        threads = torch.get_num_threads()
        how = self.dtype + (f", {threads} thread{'s' * (threads > 1)}" if self.device == 'cpu' else "")
        return f"{self.device} ({how})" + (f" x {self.world} processes" if self.ddp else "")

    def all_sum(self, *values):
        """Host values summed over the ranks. On CUDA through a gloo group of their own: NCCL would need them
        on the device and back, and the host would wait for every kernel queued before."""
        t = torch.tensor(values, dtype=torch.float64)
        dist.all_reduce(t, group=self.host_group)
        return t.tolist()

    def say(self, *text):
        if self.master:
            print(*text)

    def put(self, *tensors):
        """A micro-batch's tensors on the device (None stays None); on CUDA from pinned memory, so that the
        copies overlap the kernels."""
        if self.device == 'cuda':
            tensors = [t if t is None else t.pin_memory() for t in tensors]
        return [t if t is None else t.to(self.device, non_blocking=True) for t in tensors]

    def wrap(self, model):
        """DDP's wrapper (rebuilt after every growth: new parameters); it broadcasts rank 0's weights."""
        if not self.ddp:
            return model
        # RaPTr's skipped layers get no gradient in a step: DDP must not wait for them
        return DDP(model, device_ids=[torch.cuda.current_device()] if self.device == 'cuda' else None,
                   find_unused_parameters=self.unused)


def pick_device(args):
    """--device, or for auto the first there is of cuda, mps (an Apple-silicon GPU) and cpu."""
    have = {'cuda': torch.cuda.is_available(), 'mps': torch.backends.mps.is_available(), 'cpu': True}
    device = args.device if args.device != 'auto' else next(d for d, there in have.items() if there)
    if not have[device]:
        raise InputError(f"--device {device}: no {device.upper()} device is available; use --device cpu")
    return device


def auto_dtype(device):
    """--dtype auto, as nanoGPT picks: bfloat16 on a CUDA device that has it, float16 (with a GradScaler) on
    one that has not (T4, V100: most free notebooks), float32 elsewhere: on CPU, and on MPS, where nanoGPT
    runs float32 too (its autocast is for CUDA) and where we have not measured a lower precision."""
    if device != 'cuda':
        return 'float32'
    return 'bfloat16' if torch.cuda.is_bf16_supported() else 'float16'


def start_runtime(args, unused=False):
    """The device and dtype; under torchrun (it sets RANK, WORLD_SIZE, LOCAL_RANK) the process group, as in
    nanoGPT: NCCL on CUDA, gloo on CPU. `unused`: some parameters may get no gradient in a step."""
    device = pick_device(args)
    dtype = args.dtype if args.dtype != 'auto' else auto_dtype(device)
    rt = Runtime(device, dtype)
    if 'RANK' in os.environ and int(os.environ.get('WORLD_SIZE', 1)) > 1:
        dist.init_process_group('nccl' if device == 'cuda' else 'gloo')
        rt = Runtime(device, dtype, dist.get_rank(), dist.get_world_size(),
                     unused=unused,
                     host_group=dist.new_group(backend='gloo') if device == 'cuda' else None)
        if device == 'cuda':
            torch.cuda.set_device(int(os.environ['LOCAL_RANK']))
    if device == 'cuda':  # TF32 for the float32 matmuls that autocast leaves
        torch.set_float32_matmul_precision('high')
    if args.eval_batches < rt.world:
        raise InputError(f"--eval_batches {args.eval_batches}: DDP splits them over {rt.world} processes; "
                         f"give at least {rt.world}")
    return rt


def close(rt, log):
    """The end of a run: wandb's run finished, and under torchrun every rank leaving together (gloo has no
    shutdown: a rank that left first tore its connections down under a peer still writing the checkpoint,
    the likely cause of a rare SIGABRT at the end of a DDP test)."""
    if log.wandb:
        log.wandb.finish()
    if rt.ddp:
        dist.barrier()
        dist.destroy_process_group()


def check_memory(args, rt, cfg):
    """Refuse a micro-batch whose activations cannot fit (one line, before anything is allocated): a shape
    that does not fit would otherwise swap the machine to a halt (CPU) or fail deep inside torch (CUDA). The
    estimate is a floor: about 16 stored values per token, width and layer (Korthikanti et al. 2022 count 17
    in 16 bits, with attention scores on top where no fused kernel runs), and the float32 logits with their
    gradient."""
    tokens = args.batch_size * cfg.block_size
    width = 4 if rt.dtype == 'float32' else 2
    need = tokens * (16 * cfg.n_layer * cfg.n_embd * width + 2 * cfg.vocab_size * 4)
    have = torch.cuda.get_device_properties(torch.cuda.current_device()).total_memory if rt.device == 'cuda' \
        else os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES')
    if need > have:
        raise InputError(f"--batch_size {args.batch_size} x --block_size {cfg.block_size}: one micro-batch "
                         f"needs at least {need / 2 ** 30:.0f} GiB of activations and this {rt.device} has "
                         f"{have / 2 ** 30:.0f} GiB; lower them (raise --grad_accum to keep the tokens per "
                         f"step)")
    # the evaluation set stays on the host beside everything else: (x, y) in int64, at most an eighth of it
    held, host = args.eval_batches * tokens * 16, os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES')
    if held > host / 8:
        raise InputError(f"--eval_batches {args.eval_batches}: the evaluation set would hold "
                         f"{held / 2 ** 30:.1f} GiB of this machine's {host / 2 ** 30:.0f} GiB; use at most "
                         f"{int(host / 8 // (tokens * 16))}")


def out_of_memory(error, args):
    """The line for a step that ran out of memory anyway (the estimate is a floor): what to lower, and that
    the last checkpoint is intact (it is written atomically)."""
    return (f"out of memory ({str(error).splitlines()[0][:80]}): lower --batch_size or --block_size (raise "
            f"--grad_accum to keep the tokens per step); the last checkpoint, if any, stays in "
            f"{args.out_dir}")


def peak_flops(device):
    if device != 'cuda':
        return None
    name = torch.cuda.get_device_name()
    return next((v for k, v in PEAK_FLOPS if k in name), None)


@dataclass
class Stopwatch:
    """Wall time spent training: read (`lap`) before an evaluation, a checkpoint or a growth, restarted after.
    On a GPU (CUDA, MPS) it synchronises first: kernels are queued, so the time is only honest once they have
    run."""
    device: str
    mark: float = field(default_factory=time.perf_counter)

    def lap(self):
        synchronize(self.device)
        now = time.perf_counter()
        seconds, self.mark = now - self.mark, now
        return seconds

    def restart(self):
        self.mark = time.perf_counter()

    def peek(self):
        """Seconds since the mark on the host's clock, without waiting for the device (`grow.LogWindow.warmed`)."""
        return time.perf_counter() - self.mark


def synchronize(device):
    """Wait for a GPU's queued kernels (CUDA, MPS); the CPU runs each when it is called."""
    if device in ('cuda', 'mps'):
        getattr(torch, device).synchronize()


def compile_model(model, stage, probe, rt, drawn):
    """--compile. GPT where each stage runs one depth: the whole model, as nanoGPT compiles it, a graph per
    shape; a growth forgets the old model's graphs. On an H200, GPT small's forward and backward (batch 16 x
    1024, bfloat16) took 20.9 ms compiled whole and 29.2 ms block by block: the same GPU time, the rest the host
    calling 24 compiled pieces. Where a method draws a depth or path every step (`drawn`: Apollo, RaPTr), BERT
    (its head's rows change with each batch's masked positions): block by block, every block the same shapes,
    so one graph serves any depth or path and a growth compiles only new blocks; GPT's head and loss too
    (`LMLoss`). Then one forward and backward at the stage's training shape and depth, before its clock
    starts, so that its first step compiles nothing (the log counts the graphs). The batch is the probe's
    tokens laid out as the stage's (batch, seq); the random state is put back, no gradient is left."""
    whole = model.cfg.kind == 'gpt' and not drawn
    if whole:
        torch._dynamo.reset()
        model.compile(dynamic=False)
    for module in [] if whole else [*model.blocks] + ([model.lm_loss] if model.cfg.kind == 'gpt' else []):
        module.compile()
    x, y = (t.reshape(stage.batch, stage.seq).to(rt.device) for t in probe)
    with torch.random.fork_rng(devices=[torch.cuda.current_device()] if rt.device == 'cuda' else []):
        with rt.autocast():
            loss = model(x, y, depth=len(model.blocks), pool=stage.pool)[1]
        loss.backward()
    model.zero_grad(set_to_none=True)


def compiled_graphs(args):
    return torch._dynamo.utils.counters['stats']['unique_graphs'] if args.compile else None


def not_finite(rt, loss_sum, norm):
    """1.0 on the device where the step's loss or gradient norm is not finite, else 0.0, computed without
    waiting for the device. Under DDP a flag on any rank holds on every rank, so all of them skip alike."""
    bad = (~(torch.isfinite(loss_sum) & torch.isfinite(norm))).float()
    if rt.ddp:
        dist.all_reduce(bad)
        bad = (bad > 0).float()  # (the fused kernel skips where found_inf is exactly 1)
    return bad


def rng_states(rt):
    """torch's random states that a resumed run continues: the CPU generator's, and on CUDA the device's
    (dropout draws its masks there)."""
    return dict(torch_rng=torch.get_rng_state(), cuda_rng=torch.cuda.get_rng_state() if rt.device == 'cuda'
                else None)


def set_rng_states(ckpt, rt):
    """This rank's torch random states from a checkpoint."""
    states = ckpt['rank_rngs'][rt.rank]
    torch.set_rng_state(states['torch_rng'])
    if rt.device == 'cuda' and states.get('cuda_rng') is not None:  # (a CPU checkpoint on CUDA has none)
        torch.cuda.set_rng_state(states['cuda_rng'])


# ----------------------------------------------------------------------------- checkpoints

# what a checkpoint must hold for --resume, sample.py and export.py
CHECKPOINT_KEYS = ('config', 'model', 'optimizer', 'args', 'run', 'meta', 'data_rng', 'rank_rngs', 'sampler_rng',
                   'scaler')


def read_checkpoint(out_dir, say=print, mapped=False):
    """(checkpoint, path) of a run: out_dir/ckpt.pt, or ckpt.prev.pt (the one before it, with a warning) when
    ckpt.pt is missing or cannot be read. A checkpoint that lacks what this version needs is refused. `mapped`:
    its tensors mapped from the file, not read (a reader of its flags reads only those)."""
    path, prev = os.path.join(out_dir, 'ckpt.pt'), os.path.join(out_dir, 'ckpt.prev.pt')
    if not os.path.isfile(path) and not os.path.isfile(prev):
        raise InputError(f"--resume: no checkpoint at {path}; check --out_dir")
    try:
        ckpt = torch.load(path, map_location='cpu', weights_only=False, mmap=mapped)
    except Exception as e:  # missing, truncated, not a checkpoint at all: all unreadable alike
        why = f"{path} cannot be read ({type(e).__name__}: {str(e).splitlines()[0][:80]})"
        try:
            ckpt = torch.load(prev, map_location='cpu', weights_only=False, mmap=mapped)
        except Exception:
            raise InputError(f"{why}; it is damaged and there is no readable ckpt.prev.pt to fall back to: "
                             f"start the run again")
        say(f"warning: {why}; resuming from the checkpoint before it, {prev}")
        path = prev
    missing = [k for k in CHECKPOINT_KEYS if not isinstance(ckpt, dict) or k not in ckpt]
    if missing:
        raise InputError(f"{path} lacks {', '.join(missing)}: it was not written by this version of grow.py; "
                         f"start the run again")
    return ckpt, path


def write_checkpoint(state, out_dir):
    """out_dir/ckpt.pt, written atomically: a temporary file, flushed to the disk, then renamed; the
    checkpoint it replaces is kept as ckpt.prev.pt, so a write that dies half-way, or one damaged file, never
    costs the run (`read_checkpoint` falls back to it)."""
    path = os.path.join(out_dir, 'ckpt.pt')
    with open(path + '.tmp', 'wb') as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    if os.path.exists(path):
        os.replace(path, os.path.join(out_dir, 'ckpt.prev.pt'))
    os.replace(path + '.tmp', path)


# what the run here decides of an optimizer's groups, never the checkpoint: the device's implementation flags,
# and a group's rate over --lr (`model.make_optimizer`)
BUILT = ('fused', 'foreach', 'capturable', 'differentiable', 'rate')


def load_optimizer(optimizer, saved):
    """A checkpoint's optimizer state (AdamW's, or Muon's and AdamW's) in an optimizer built here."""
    states = saved.values() if 'muon' in saved else [saved]
    for part, state in zip(getattr(optimizer, 'parts', [optimizer]), states):
        groups = [dict(g, **{k: built[k] for k in BUILT if k in built})
                  for g, built in zip(state['param_groups'], part.param_groups)]
        part.load_state_dict(dict(state, param_groups=groups))


def checkpoint_model(out_dir):
    """The model of out_dir's checkpoint (in eval mode), and the checkpoint: what sample.py and export.py
    read."""
    ckpt, _ = read_checkpoint(out_dir)
    model = Transformer(Config(**ckpt['config']))
    model.load_state_dict(ckpt['model'])
    return model.eval(), ckpt


# ----------------------------------------------------------------------------- the run's log


class Log:
    """JSON lines in out_dir/log.jsonl, one record per log step and per evaluation, for plotting.
    On resume the records the interrupted run wrote after its checkpoint are dropped (they are redone).
    With --wandb each record also goes to the Weights & Biases run (`start_wandb`), its numbers under
    "<type>/<name>" at the run's FLOPs so far: the x-axis on which growth methods and scratch line up."""

    def __init__(self, path, resume_step=None, enabled=True, wandb=None):
        self.path, self.enabled, self.wandb, self.flops = path, enabled, wandb, 0.0
        if not enabled:  # DDP: rank 0 alone writes
            return
        os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
        records = []
        if resume_step is not None and os.path.isfile(path):
            with open(path) as f:
                lines = f.read().split('\n')
            # a kill during a write can leave a partial last line: it is after the checkpoint, so dropped
            # anyway
            records = [r for r in map(json.loads, lines[:-1]) if r['step'] < resume_step or
                       (r['step'] == resume_step and r['type'] in ('train', 'skip'))]
        with open(path + '.tmp', 'w') as f:
            f.writelines(json.dumps(r) + '\n' for r in records)
        os.replace(path + '.tmp', path)

    def write(self, **record):
        if self.enabled:
            with open(self.path, 'a') as f:
                f.write(json.dumps(record) + '\n')
        if self.wandb:  # (a skip or stage record has no FLOPs of its own: the last ones logged)
            self.flops = record.get('flops', self.flops)
            numbers = {f"{record['type']}/{k}": v for k, v in record.items()
                       if isinstance(v, (int, float)) and not isinstance(v, bool) and k != 'flops'}
            self.wandb.log({'flops': self.flops, **numbers})
        return record


def read_log(folder):
    """The evaluations, growths and stages of the run in `folder`, from its log.jsonl (none before it has one)."""
    path = os.path.join(folder, 'log.jsonl')
    with open(path) if os.path.isfile(path) else nullcontext([]) as lines:
        records = [json.loads(line) for line in lines]
    pick = lambda kind: [r for r in records if r['type'] == kind]  # noqa: E731
    return dict(evals=pick('eval'), growths=pick('growth'), stages=pick('stage'))


@dataclass
class LogWindow:
    """The steps since the last train log line: the counters where it began, each step's depths, rate, loss
    and skip flag. Losses and flags stay on the device until `settle` reads them (reading waits for it)."""
    step: int
    time: float
    tokens: int
    flops: float
    depths: list = field(default_factory=list)
    lrs: list = field(default_factory=list)
    losses: list = field(default_factory=list)  # on the device
    bad: list = field(default_factory=list)     # on the device: 1.0 where the step was not applied
    read: int = 0                               # steps whose loss and flag `settle` has read
    cold: tuple = None    # (time, tokens, FLOPs) after a start, resume or growth: the next step warms up
    warmup: tuple = (0, 0.0, 0, 0.0)            # the warm-up steps' count, seconds, tokens and FLOPs

    @staticmethod
    def at(progress, cold=False):
        window = LogWindow(progress.step, progress.train_time, progress.tokens, progress.flops)
        return window.mark_cold(progress) if cold else window

    def mark_cold(self, progress):
        """The next step warms up (after a start, a resume or a growth): `warmed` sets its cost aside."""
        self.cold = progress.train_time, progress.tokens, progress.flops
        return self

    def add(self, depths, loss, bad, lr):
        self.depths += depths
        self.lrs.append(lr)
        self.losses.append(loss)
        self.bad.append(bad)

    def warmed(self, progress, watch):
        """After the first step of a start, a resume or a growth: its cost goes into `warmup`, which the rates
        leave out, as nanoGPT's MFU leaves out its first steps (read on the host's clock: no wait)."""
        if self.cold:
            spent = (1, progress.train_time + watch.peek() - self.cold[0], progress.tokens - self.cold[1],
                     progress.flops - self.cold[2])
            self.warmup, self.cold = tuple(a + b for a, b in zip(self.warmup, spent)), None

    def rates(self, progress):
        """(seconds, tokens, FLOPs) of the window's steps, its warm-up left out unless it was all warm-up."""
        spent = (progress.train_time - self.time, progress.tokens - self.tokens, progress.flops - self.flops)
        if progress.step - self.step <= self.warmup[0]:
            return spent
        return tuple(a - b for a, b in zip(spent, self.warmup[1:]))


def plot_run(out_dir):
    """out_dir/run.png, drawn at the end of every run: the validation loss against training FLOPs, each growth
    a dotted line with what it changed, and beneath, the depth each stage executed (Apollo: the mean of its
    draws). Returns the path, or None (with the hint) without matplotlib."""
    plt = pyplot()
    if plt is None:
        return None
    log = read_log(out_dir)
    evals, growths, stages = log['evals'], log['growths'], log['stages']
    xs, ys = [e['flops'] for e in evals], [e['val_loss'] for e in evals]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 5.5), sharex=True, height_ratios=(3, 1))
    top.plot(xs, ys, marker='.', lw=1.6)
    for g in growths:
        changed = ', '.join(f"{k[4:]} {g[k]} -> {g['new_' + k[4:]]}" for k in g
                            if k.startswith('old_') and g[k] != g['new_' + k[4:]])
        for ax in (top, bottom):
            ax.axvline(g['flops'], color='grey', lw=0.8, ls=':')
        top.annotate(changed, (g['flops'], max(ys)), rotation=90, va='top', ha='right', fontsize=7)
    starts = {1: 0.0, **{g['stage']: g['flops'] for g in growths}}  # stage -> where it began
    for st in stages:  # (a stage that ran no step has no record)
        end = min([x for k, x in starts.items() if k > st['stage']] + [xs[-1]])
        bottom.fill_between([starts[st['stage']], end], [st['mean_depth']] * 2, color='C0', alpha=0.4, lw=0)
    top.set_ylabel('validation loss')
    top.set_title(f"{os.path.basename(os.path.abspath(out_dir))}: the loss through each growth")
    bottom.set_ylabel('executed depth')
    bottom.set_xlabel('training FLOPs')
    for ax in (top, bottom):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    path = os.path.join(out_dir, 'run.png')
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def pyplot():
    """matplotlib's pyplot, drawing to files only; None, with the install hint, where it is missing
    (optional)."""
    try:
        import matplotlib
        matplotlib.use('Agg')
        import matplotlib.pyplot as plt
    except ImportError:
        print("plots skipped: matplotlib is not installed (pip install matplotlib)")
        return None
    return plt


def start_wandb(args):
    """--wandb: the Weights & Biases run of this one, with the flags as its config and the FLOPs clock as the
    x-axis of every chart (a growth's record is a point on its charts); --compare groups its runs. Its id is
    kept in out_dir/wandb_id, so a resumed run continues the same wandb run."""
    import wandb  # (optional; flags.check refused --wandb without it)
    os.makedirs(args.out_dir, exist_ok=True)
    path = os.path.join(args.out_dir, 'wandb_id')
    if not (args.resume and os.path.isfile(path)):
        with open(path, 'w') as f:
            f.write(secrets.token_hex(4))
    with open(path) as f:
        run_id = f.read().strip()
    run = wandb.init(project=args.wandb, name=args.wandb_run or f"{args.method}-{args.model}-seed{args.seed}",
                     group=args.wandb_group, config=vars(args), id=run_id, resume='allow', dir=args.out_dir)
    run.define_metric('flops')
    run.define_metric('*', step_metric='flops')
    return run


def human(n):
    for unit in ('', 'k', 'M', 'G', 'T'):
        if abs(n) < 1000:
            return f"{n:.1f}{unit}" if unit else f"{n:.0f}"
        n /= 1000
    return f"{n:.1f}P"


def duration(s):
    if s >= 3600:
        return f"{int(s // 3600)}h{int(s % 3600 // 60):02d}m"
    return f"{int(s // 60)}m{int(s % 60):02d}s"


# ----------------------------------------------------------------------------- stopping a run

class StopRequest:
    """SIGTERM (what SLURM, preemptible clouds and `kill` send) and SIGINT (Ctrl-C) ask the run to stop: the
    current optimizer step finishes, a checkpoint is written, and grow.py exits with the resume command. A
    second SIGINT exits at once, and so does any signal while `at_once` (grow.py's setup, before its first
    step: there is nothing to checkpoint yet). The handlers exist only inside `with StopRequest()` (and only
    in the main thread)."""

    def __init__(self, at_once=False):
        self.signum, self.saved, self.at_once = 0, {}, at_once

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self.saved = {s: signal.signal(s, self.handle) for s in (signal.SIGTERM, signal.SIGINT)}
        return self

    def __exit__(self, *exc):
        for s, handler in self.saved.items():
            signal.signal(s, handler)

    def handle(self, signum, frame):
        if signum == signal.SIGINT and self.signum == signal.SIGINT:
            raise KeyboardInterrupt  # the second Ctrl-C
        if self.at_once:
            raise Interrupted(signum, f"stopped by {signal.Signals(signum).name} before the first step: "
                                      f"nothing to checkpoint yet")
        self.signum = signum

    def agreed(self, rt):
        """Stop now? Under torchrun every rank stops at the same step if any rank was asked to."""
        if rt.ddp:  # (every rank must join the collective, asked or not)
            asked = rt.all_sum(self.signum)[0]
            self.signum = self.signum or (signal.SIGTERM if asked else 0)
        return bool(self.signum)


def command(prog, body):
    """A command's `body`, run: bad input ends it with one line and exit status 2, a run stopped early with its
    line and status (grow.py and the scripts above it)."""
    for stream in (sys.stdout, sys.stderr):  # log lines reach a pipe (`| tee run.log`) as they are printed
        if hasattr(stream, 'reconfigure'):
            stream.reconfigure(line_buffering=True)
    try:
        return body()
    except InputError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        sys.exit(2)
    except RunStopped as e:
        print(f"{prog}: stopped: {e}", file=sys.stderr)
        sys.exit(e.status)


class RunStopped(Exception):
    """A run that ends before its budget: grow.py prints the message and exits with `status`."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


class Diverged(RunStopped):
    """The loss, the gradient norm or the weights stopped being finite: the run stops (exit status 3) and its
    last good checkpoint stays."""

    def __init__(self, message):
        super().__init__(3, message)


class Interrupted(RunStopped):
    """A stop request ended the run at the end of a step, with a checkpoint (exit status 128 + the signal)."""

    def __init__(self, signum, message):
        super().__init__(128 + signum, message)
        self.signum = signum
