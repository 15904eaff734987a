"""
The schedule of a run: the method table (`METHODS`) and all that an entry implies: the stages (depth, width,
length, and where each starts on the run's clock), what a step draws (Apollo's depth, RaPTr's path), the
depth evaluation runs, the learning rate, the budget's clock (`Budget`) and --plan's description of it all,
checked before anything trains.
"""
import math
from dataclasses import dataclass, replace
from typing import Callable

import numpy as np

from data import InputError
from model import depth_source, flops_per_step, map_layers, newton_schulz_flops


def midas_stages(L):
    """MIDAS's weight blocks per stage: groups of b = L/6 layers added one at a time (2, 4, ..., 12 of 12)."""
    b = max(1, L // 6)
    return list(range(b, L, b)) + [L]


def prop1(n_stages):
    """Stage boundaries (fractions of the budget) when stage i (1-based) lasts in proportion to i."""
    total = n_stages * (n_stages + 1) / 2
    return [round(sum(range(1, i + 1)) / total, 4) for i in range(1, n_stages)]


@dataclass(frozen=True)
class Method:
    """One method: everything the loop, the budget and --compare ask of it (adding a method: README)."""
    paper: str                # where it comes from
    stages: Callable          # L -> weight blocks per stage (draws 'path': path lengths, owning all L blocks)
    stage_at: object = ()     # budget fractions where stages 2.. start, or a rule: n_stages -> fractions
    depth_op: str = None      # how depth grows at a boundary (`deepen`); None: the model never deepens
    draws: str = None         # what each step draws with the run's sampler: 'depth' (Apollo), 'path' (RaPTr)
    dims: tuple = ()          # dimensions grown besides depth (--grow's default)
    sampling: str = None      # the depth it draws by default (--sampling; draws 'depth' only)
    check: Callable = None    # its own validation of (args, stages): raises InputError


@dataclass(frozen=True)
class Stage:
    """A stretch of a run with one model shape: its clock range, its model, its micro-batch (same tokens)."""
    start: int
    end: int
    n_blocks: int             # weight blocks (RaPTr: all L)
    n_embd: int
    n_head: int
    d_ff: int
    seq: int                  # tokens per window
    batch: int                # windows per micro-batch
    pool: int = 1             # --length_op pool: the window's embeddings mean-pooled by this factor
    path: int = None          # RaPTr: the layers its random path runs


def check_paths(args, n_blocks):
    """RaPTr's own rules: its stages are path lengths, and it owns every block from the start."""
    if n_blocks[0] < 2 or args.depth_op or args.depth_noise is not None:
        raise InputError(f"--method {args.method}: --stages {fmt(n_blocks)} are path lengths, each keeping "
                         f"the first and last layer (at least 2); it owns all blocks from the start, so "
                         f"--depth_op and --depth_noise do not apply")


BASELINE = 'scratch'  # the method every comparison measures against


METHODS = {
    'apollo': Method('Apollo, Pan et al. AAAI 2024 (Eqs. 7-12)', lambda L: [1, L // 4, L // 2, L],
                     [0.05, 0.1, 0.25], 'interpolate', draws='depth', sampling='lvps'),
    'scratch': Method('the target trained from random initialisation: the baseline', lambda L: [L]),
    # StackBERT's stages: 50k, 70k and 280k of 400k updates; interpolate shares them to differ in nothing else
    'stack': Method('StackBERT, Gong et al. 2019', lambda L: [L // 4, L // 2, L], [0.125, 0.3], 'stack'),
    'interpolate': Method('Apollo, Pan et al. AAAI 2024, Eq. 12', lambda L: [L // 4, L // 2, L], [0.125, 0.3],
                          'interpolate'),
    # CompoundGrow's operators (FFN tiling, embedding pooling); its schedule is not published in code, so ours
    'compound': Method('CompoundGrow, Gu et al. NAACL 2021', lambda L: [L // 4, L // 2, L], [0.1, 0.3],
                       'stack', dims=('width', 'length')),
    # G_stack: one growth stacking the L/4-layer model 4 times (g = 4); its timing comes from a law fitted to
    # model size and compute, ours is a fraction of the budget like every method's
    'gstack': Method('G_stack, Du et al. NeurIPS 2024', lambda L: [L // 4, L], [0.25], 'stack'),
    # MIDAS: middle stacking by groups of L/6 layers (our choice), stage i lasting in proportion to i (the
    # paper's Prop-alpha, alpha = 1, as a public re-implementation quotes it); the copy: `middle_copy`
    'midas': Method('MIDAS, Saunshi et al. NeurIPS 2024 (Fig. 1a)', midas_stages, prop1, 'middle'),
    # RaPTr: random paths of L/2, 2L/3, 5L/6 and L layers (6-8-10-12 for BERT-Base, as the paper), in stages
    # of equal length (ours), owning all L blocks; `random_path` scaled by `path_scales` (our reading of the
    # paper's scaling: its full text and code were not available here).
    # Zero/one-layer progressive training (Bu, ICML 2026; no code released): one block for most of the run,
    # then one late growth straight to L. Its recipe (Muon, WSD, the growth at 0.9) is --recipe bu, which a
    # comparison gives every method alike, so it is not this entry's default (a growth at 0.8). It copies the
    # trained layer; --depth_op fresh initialises the new ones, and --stages 0,L with it the zero-layer model.
    'onelayer': Method('zero/one-layer progressive training, Bu, ICML 2026 (arXiv 2511.04981)',
                       lambda L: [1, L], [0.8], 'stack'),
    'raptr': Method('RaPTr, Panigrahi et al. 2024', lambda L: sorted({L // 2, 2 * L // 3, 5 * L // 6, L}),
                    lambda S: [round(i / S, 4) for i in range(1, S)], draws='path', check=check_paths),
}


# the flags of what a method draws per step: refused for the other methods, dropped for them in --compare
DRAW_FLAGS = {'depth': ('sampling', 'layer_map', 'sample_per', 'shared_lr')}
# --grow's dimensions, each with the flag of its per-stage fractions and the target size it scales
DIMS = {'width': ('ffn_stages', 'd_ff'), 'embd': ('embd_stages', 'n_embd'), 'length': ('seq_stages', 'block_size')}
# flags that shape growth: meaningless for the baseline (refused there, dropped for it in --compare)
GROWTH_FLAGS = ('stages', 'stage_at', 'depth_op', 'grow', 'ffn_stages', 'seq_stages', 'embd_stages',
                'length_op', 'depth_noise')


def stages_for(args, cfg):
    """The stages of a run in order (`Stage`), and the depth operator of its growths."""
    n_blocks, stage_at, op = depth_schedule(args, cfg)
    fractions = dim_fractions(args, cfg, n_blocks)
    paths = n_blocks if METHODS[args.method].draws == 'path' else [None] * len(n_blocks)
    if paths[0]:  # RaPTr: the stages are the layers run per step, of all L blocks
        n_blocks = [cfg.n_layer] * len(n_blocks)
    pooled = args.length_op == 'pool'
    if pooled and min(fractions['seq_stages']) == 1:
        raise InputError("--length_op pool shortens the stages that --seq_stages (or --grow length) makes "
                         "short, and there are none")
    stages = []
    for i in range(len(n_blocks)):
        seq = int(fractions['seq_stages'][i] * cfg.block_size)
        if args.batch_size * cfg.block_size % seq:
            raise InputError(f"--seq_stages: length {seq} does not divide the "
                             f"{args.batch_size * cfg.block_size} tokens of a batch, so tokens per step "
                             f"could not stay constant")
        embd, pool = fractions['embd_stages'][i], cfg.block_size // seq if pooled else 1  # (seq divides T)
        # truncate: `batch` windows of `seq` tokens; pool: full windows, each run as seq / pool positions
        stages.append(Stage(0, 0, n_blocks=n_blocks[i], n_embd=int(embd * cfg.n_embd),
                            n_head=int(embd * cfg.n_head), d_ff=int(fractions['ffn_stages'][i] * cfg.d_ff),
                            seq=seq * pool, batch=args.batch_size * cfg.block_size // (seq * pool), pool=pool,
                            path=paths[i]))
    return place(args, cfg, stages, stage_at), op


def place(args, cfg, stages, stage_at):
    """Each stage's `start` and `end` at the fractions `stage_at` of the clock's length: --max_steps, or under
    --budget flops --stage_clock steps the method's own steps, solved so that the stages' expected FLOPs add
    up to scratch's in --max_steps (the papers' schedules are fractions of their steps)."""
    length = args.max_steps
    if args.budget == 'flops' and args.stage_clock == 'steps':
        per_step = [step_flops(args, cfg, st) for st in stages]
        target = args.max_steps * step_flops(args, cfg, None)
        spent = lambda n: sum((e - s) * f for s, e, f in zip(*bounds(stage_at, n), per_step))  # noqa: E731
        fractions = [0] + list(stage_at) + [1]
        mean = sum((b - a) * f for a, b, f in zip(fractions, fractions[1:], per_step))  # the mean step's FLOPs
        guess = round(target / mean)
        # the boundaries are rounded to steps, which moves the total by a step or so: the closest length wins
        length = min(range(max(1, guess - 2), guess + 3), key=lambda n: abs(spent(n) - target))
    starts, ends = bounds(stage_at, length)
    if starts[-1] >= length:
        of = f"--max_steps {length}" if length == args.max_steps else f"its own {length} steps"
        raise InputError(f"--stage_at puts the last stage at step {starts[-1]} of {of}: it would never train; "
                         f"use earlier fractions or more --max_steps")
    return [replace(st, start=s, end=e) for st, s, e in zip(stages, starts, ends)]


def bounds(stage_at, length):
    """(starts, ends) of the stages at the fractions `stage_at` of a clock of `length`, rounded to steps."""
    starts = [0] + [round(f * length) for f in stage_at]
    return starts, starts[1:] + [length]


def depth_schedule(args, cfg):
    """Weight blocks per stage, the step where each stage starts, and the depth operator; all checked."""
    m, L = METHODS[args.method], cfg.n_layer
    for draws, names in DRAW_FLAGS.items():
        if m.draws != draws and any(getattr(args, k) for k in names):
            owners = ', '.join(k for k, other in METHODS.items() if other.draws == draws)
            raise InputError(f"{', '.join('--' + k for k in names)} belong to --method {owners}, not "
                             f"{args.method}")
    if not m.stage_at and any(getattr(args, k) is not None for k in GROWTH_FLAGS):  # (no stage starts later)
        raise InputError(f"--method {args.method} trains the target from the first step; "
                         f"{', '.join('--' + k for k in GROWTH_FLAGS)} need a growth method")
    n_blocks = args.stages if args.stages is not None else m.stages(L)
    stage_at = args.stage_at if args.stage_at is not None else m.stage_at
    if callable(stage_at):  # a rule for any number of stages (midas, raptr)
        stage_at = stage_at(len(n_blocks))
    op = args.depth_op or m.depth_op
    if any(b <= a for a, b in zip(n_blocks, n_blocks[1:])) or n_blocks[0] < (op != 'fresh'):
        raise InputError(f"--stages {fmt(n_blocks)} must be positive and strictly increasing (a first stage "
                         f"of 0 blocks: --depth_op fresh, the only operator that grows it)")
    if m.draws == 'depth' and n_blocks[0] < 1:
        raise InputError(f"--stages {fmt(n_blocks)}: --method {args.method} runs every depth through shared "
                         f"blocks, and a stage of 0 blocks has none to share; start from 1")
    if m.check:
        m.check(args, n_blocks)
    if n_blocks[-1] != L:
        raise InputError(f"--stages {fmt(n_blocks)} must end with n_layer = {L}")
    if len(stage_at) != len(n_blocks) - 1:
        raise InputError(f"--stage_at {fmt(stage_at)} needs {len(n_blocks) - 1} fractions, one per stage "
                         f"after the first of --stages {fmt(n_blocks)}")
    if any(b <= a for a, b in zip(stage_at, stage_at[1:])) or any(not 0 < f < 1 for f in stage_at):
        raise InputError(f"--stage_at {fmt(stage_at)} must be strictly increasing inside (0, 1)")
    if op == 'middle' and any(b > 2 * a for a, b in zip(n_blocks, n_blocks[1:])):
        raise InputError(f"--depth_op middle copies a middle block of the old layers, so a growth can at "
                         f"most double the depth; --stages {fmt(n_blocks)} grows more")
    if op == 'identity' and not cfg.pre_ln:
        raise InputError("--depth_op identity preserves the function of pre-LN models only; use it with "
                         "--model gpt or --norm pre")
    return n_blocks, stage_at, op


def dim_fractions(args, cfg, n_blocks):
    """Per stage, the fraction of the target's d_ff, n_embd and sequence length it trains, checked: each flag
    given, or our ramp (..., 1/4, 1/4, 1/2, 1) for a dimension that --grow (or the method) switches on."""
    S = len(n_blocks)
    dims = args.grow if args.grow is not None else METHODS[args.method].dims
    ramp = [max(0.25, 2.0 ** (i - S + 1)) for i in range(S)]
    fractions = {}
    for dim, (flag, key) in DIMS.items():
        size, given = getattr(cfg, key), getattr(args, flag)
        fr = fractions[flag] = given if given is not None else ramp if dim in dims else [1.0] * S
        if len(fr) != S:
            raise InputError(f"--{flag} {fmt(fr)} has {len(fr)} entries; it needs one per stage of --stages "
                             f"{fmt(n_blocks)} ({S})")
        if any(f > 1 for f in fr):
            raise InputError(f"--{flag} {fmt(fr)}: a stage of {max(fr) * size:g} exceeds the target's {size}")
        if any(f <= 0 for f in fr) or fr[-1] != 1 or any(b < a for a, b in zip(fr, fr[1:])):
            raise InputError(f"--{flag} {fmt(fr)} must be positive fractions of the target, non-decreasing, "
                             f"ending with 1")
        sizes = [f * size for f in fr]
        if any(v != int(v) for v in sizes) or any(int(b) % int(a) for a, b in zip(sizes, sizes[1:])):
            raise InputError(f"--{flag} {fmt(fr)} of {size} gives sizes {fmt(sizes)}: each must be a whole "
                             f"number that divides the next (growth tiles by whole factors)")
    if METHODS[args.method].draws == 'path' and min(fractions['ffn_stages'] + fractions['embd_stages']) < 1:
        raise InputError(f"--method {args.method} trains paths through the full model from the first step: "
                         f"it does not grow width or embd (--grow length, shorter sequences early, does "
                         f"apply)")
    if any((f * cfg.n_head) != int(f * cfg.n_head) for f in fractions['embd_stages']):
        raise InputError(f"--embd_stages {fmt(fractions['embd_stages'])} of --n_head {cfg.n_head}: the head "
                         f"count must scale to whole numbers too (head_dim stays fixed)")
    return fractions


def depth_sampling(args):
    """Apollo's depth sampling and layer map; (None, 'interpolate') for the others and --sampling none, which
    trains, evaluates and grows at its own k blocks (the paper's "w/o sampling" ablation)."""
    sampling = args.sampling or METHODS[args.method].sampling
    return None if sampling == 'none' else sampling, args.layer_map or 'interpolate'


# what a growth can change: the Stage fields its record holds as old_<field> and new_<field>
GROWN = ('n_blocks', 'path', 'n_embd', 'd_ff', 'seq', 'pool')


def changes(old, new):
    """What a growth from stage `old` to stage `new` changes, in words ('n_blocks 3 -> 6')."""
    return [f"{k} {getattr(old, k)} -> {getattr(new, k)}" for k in GROWN if getattr(old, k) != getattr(new, k)]


def draw_depth(k, L, how, rng):
    """Apollo's depth for one step of a model owning k of L blocks (Apollo, Table 1). lvps (low-value-
    prioritised sampling, Eqs. 7-10): d = floor(k * y), y on `lvps_curve` at x ~ U(x_min, 1) clipped to
    [1, L/k]: the cheap shallow depths get most of the mass. us: uniform on k..L; es: k or L; fs: L; none: k.
    `rng` is seeded alike on every rank, so all ranks run the same depth."""
    if how == 'lvps':
        m, n, x_min = lvps_curve(k, L)
        y = min(max(m / (rng.uniform(x_min, 1) + n), 1.0), L / k)
        return int(k * y)
    if how == 'us':
        return int(rng.integers(k, L + 1))
    if how == 'es':
        return k if rng.random() < 0.5 else L
    if how in ('fs', 'none'):
        return L if how == 'fs' else k
    raise ValueError(f"unknown sampling {how!r}; valid: lvps, us, es, fs, none")


def lvps_curve(k, L):
    """LVPS's curve y = m / (x + n) for x in (x_min, 1), through y(x_min) = a = L/k + 0.4 and y(1) = b = 0.6
    (Apollo, Eqs. 7-10; the official code's constants): (m, n, x_min)."""
    a, b, x_min = L / k + 0.4, 0.6, 1e-6
    n = (a * x_min - b) / (b - a)
    return b * (n + 1), n, x_min


def depth_probabilities(k, L, how):
    """The exact distribution of `draw_depth`, {depth: probability}. lvps: y decreases in x, so d >= j
    exactly when x <= m k / j - n, and P(d >= j) is that interval's share of (x_min, 1)."""
    if how == 'lvps':
        m, n, x_min = lvps_curve(k, L)
        at_least = [1.0] + [min(1.0, max(0.0, (m * k / j - n - x_min) / (1 - x_min)))
                            for j in range(k + 1, L + 1)]
        return {k + i: p - q for i, (p, q) in enumerate(zip(at_least, at_least[1:] + [0.0])) if p > q}
    if how == 'us':
        return {d: 1 / (L - k + 1) for d in range(k, L + 1)}
    if how == 'es':
        return {k: 0.5, L: 0.5} if k < L else {k: 1.0}
    return {L if how == 'fs' else k: 1.0}


def random_path(L, p, rng):
    """RaPTr's path for one step (Panigrahi et al. 2024, Sec. 3): the first and last of L layers, and p - 2 of
    the others drawn without replacement, in order (4 of 6: 0,2,3,5); a skipped layer is the identity. The
    paper draws each layer by its own chance; an exact length gives each the same, (p - 2) / (L - 2), and
    every step the same FLOPs. `rng` is seeded alike on every rank."""
    if not 2 <= p <= L:
        raise ValueError(f"a path keeps the first and last of {L} layers: its length must be in 2..{L}, "
                         f"not {p}")
    middle = rng.choice(np.arange(1, L - 1), size=p - 2, replace=False) if p < L else np.arange(1, L - 1)
    return [0] + sorted(int(i) for i in middle) + [L - 1]


def draw_step(args, stage, model, rng):
    """What the method draws for one step: the depth each micro-batch runs and the layer map. Apollo one depth
    per step (or per micro-batch with --sample_per micro, the official code's), RaPTr a random path."""
    k, (sampling, layer_map) = len(model.blocks), depth_sampling(args)
    if stage.path:
        path = random_path(k, stage.path, rng)
        return [len(path)], path
    if not sampling:
        return [k], layer_map
    draws = args.grad_accum if args.sample_per == 'micro' else 1
    return [draw_depth(k, model.cfg.n_layer, sampling, rng) for _ in range(draws)], layer_map


def evaluation_depth(args, cfg):
    """The depth and layer map that evaluation, probes, samples and the export run: Apollo's shared blocks run
    the target depth L, every other model its own blocks."""
    sampling, layer_map = depth_sampling(args)
    return dict(depth=cfg.n_layer if sampling else cfg.n_blocks, layer_map=layer_map)


def stage_of(position, stages):
    """Index of the stage that trains at `position`."""
    return max(i for i, stage in enumerate(stages) if stage.start <= position)


def fmt(values):
    return ','.join(str(v) for v in values)


def lr_at(position, args, budget, since_growth=None):
    """Linear warmup, then cosine or linear decay to min_lr, or WSD (Hu et al. 2024): the peak until the last
    --decay_frac, then linear. Growth never restarts it; --rewarmup N ramps it up again over the N optimizer
    steps after a growth (Staged Training), `since_growth` (None before the first)."""
    warmup, start, min_lr = lr_corners(args, budget.steps)
    if position < warmup:
        return args.lr * min(1.0, (position + 1) / warmup)
    decayed = max(0.0, position - start) / max(1, budget.steps - start)  # the share of the decay behind us
    shape = 0.5 * (1 + math.cos(math.pi * decayed)) if args.decay == 'cosine' else 1 - decayed
    lr = min_lr + shape * (args.lr - min_lr)
    if args.rewarmup and since_growth is not None and since_growth < args.rewarmup:
        lr *= (since_growth + 1) / args.rewarmup
    return lr


def lr_corners(args, length):
    """(the warmup's steps, where the decay starts, the final rate) on a clock of `length` (warmup: 5%)."""
    warmup = length // 20 if args.warmup is None else int(args.warmup) if args.warmup >= 1 else \
        round(args.warmup * length)
    start = max(warmup, length * (1 - (args.decay_frac or 0.2))) if args.decay == 'wsd' else warmup
    return warmup, start, args.min_lr if args.min_lr is not None else args.lr / 10


def shared_lr_scales(k, depths, layer_map, how):
    """--shared_lr: block -> its rate's factor this step. A block run u times moves the function about u times
    as far as an unshared one (AdamW normalises the summed gradient). uses: 1 / u; ratio: k / d."""
    if how in (None, 'none'):
        return {}
    scales = {}
    for d in depths:
        uses = np.bincount(map_layers(k, d, layer_map), minlength=k)
        for i in range(k):
            step = k / d if how == 'ratio' else 1 / max(1, uses[i])
            scales[i] = scales.get(i, 0.0) + step / len(depths)
    return scales


@dataclass
class Budget:
    """The run's clock, which stages, the LR, evaluations and the end read: optimizer steps (--budget flops
    with --stage_clock steps: as many as spend scratch's FLOPs), or FLOPs in units of scratch's step."""
    steps: int            # the clock's length: --max_steps, or the method's own steps (`place`)
    by_flops: bool        # the clock reads the FLOPs spent (--stage_clock flops)
    scratch_step: float   # the FLOPs of one step of the target: scratch's step
    starts: list          # each stage's start on the clock
    step_flops: list      # the expected FLOPs of one step of each stage (Apollo: at its mean sampled depth)

    def position(self, progress):
        return progress.flops / self.scratch_step if self.by_flops else progress.step

    def where(self, position):
        """A point of the clock in words: 'step 120/1871' or '12% of the FLOPs'."""
        return f"{100 * position / self.steps:.3g}% of the FLOPs" if self.by_flops else \
            f"step {position}/{self.steps}"

    def to_go(self, position):
        """The FLOPs still to spend: the schedule is known, so shallow stages are not taken for the pace."""
        if self.by_flops:  # (the last step may pass the end)
            return max(0.0, self.steps - position) * self.scratch_step
        ends = self.starts[1:] + [self.steps]
        return sum(max(0, end - max(start, position)) * f
                   for start, end, f in zip(self.starts, ends, self.step_flops))

    def cost(self, progress, args):
        """What a finished run spent against a scratch run of the same budget (known without training it)."""
        share = progress.flops / (args.max_steps * self.scratch_step)
        return (f"this run spent {progress.flops:.3e} FLOPs in {progress.step} steps: {100 * share:.0f}% of what "
                f"scratch spends in {args.max_steps} steps" + (f"; `python grow.py --compare {BASELINE},"
                f"{args.method} ...` shows whether it reached scratch's loss" if args.method != BASELINE else ""))


def make_budget(args, cfg, stages, world=1):
    """The Budget of a run (`world` processes): its clock and the expected FLOPs of a step of each stage."""
    return Budget(stages[-1].end, args.budget == 'flops' and args.stage_clock == 'flops',
                  step_flops(args, cfg, None, world), [st.start for st in stages],
                  [step_flops(args, cfg, st, world) for st in stages])


def step_flops(args, cfg, stage, world=1):
    """The expected FLOPs of one step of `stage` (None: scratch's) over `world` processes, at its mean depth."""
    tokens = args.batch_size * args.grad_accum * cfg.block_size * world
    head = args.mask_rate * tokens if cfg.kind == 'bert' else None
    if stage is None:
        return flops_per_step(cfg, cfg.n_layer, tokens, cfg.block_size, head) + world * optimizer_flops(
            args, cfg, cfg.n_layer)
    depth = mean_depth(stage_depths(args, cfg, stage))
    shape = replace(cfg, n_embd=stage.n_embd, n_head=stage.n_head, d_ff=stage.d_ff)
    queries = math.ceil(args.mask_rate * stage.seq) if stage.pool > 1 else 0
    return (flops_per_step(shape, depth, tokens, stage.seq, head, stage.pool, queries) +
            world * optimizer_flops(args, shape, stage.n_blocks))


def optimizer_flops(args, cfg, n_blocks):
    """One process's optimizer step: Muon's Newton-Schulz (AdamW's elementwise update left out, as nanoGPT)."""
    return newton_schulz_flops(cfg, n_blocks) if args.optimizer == 'muon' else 0


def stage_depths(args, cfg, stage):
    """{depth: probability} of a stage: Apollo's draw, RaPTr's path length, or its blocks."""
    sampling, _ = depth_sampling(args)
    if stage.path:
        return {stage.path: 1.0}
    return depth_probabilities(stage.n_blocks, cfg.n_layer, sampling or 'none')


def mean_depth(depths):
    """The mean of a {depth: probability} distribution (`stage_depths`)."""
    return sum(d * p for d, p in depths.items())


# ----------------------------------------------------------------------------- --plan

def plan(args, cfg):
    """What these flags will train, as lines (--plan's text, a run's banner): each stage's clock, steps, FLOPs,
    model, batch, depths and blocks run, each growth's copies and rate, the total against scratch's."""
    stages, op = stages_for(args, cfg)
    budget = make_budget(args, cfg, stages)
    total = args.max_steps * budget.scratch_step  # what scratch spends
    spent = [(st.end - st.start) * (budget.scratch_step if budget.by_flops else f)
             for st, f in zip(stages, budget.step_flops)]
    lines = [f"{args.method} ({METHODS[args.method].paper}): {cfg.kind} {args.size}, {cfg.n_layer} layers of "
             f"n_embd {cfg.n_embd}{' (CompleteP)' * (args.scaling == 'completep')}, "
             f"{args.batch_size * args.grad_accum * cfg.block_size:,} tokens a step, " + clock_words(args, budget)]
    for i, (st, flops) in enumerate(zip(stages, spent)):
        if i:
            lr = lr_at(st.start, args, budget, since_growth=0)
            lines.append(f"  {growth_words(stages[i - 1], st, op)}; lr {lr:.2e}")
        steps, depths = flops / budget.step_flops[i], stage_depths(args, cfg, st)
        mean = mean_depth(depths)
        lines.append(f"stage {i + 1}/{len(stages)}: clock {st.start:g}-{st.end:g}, {steps:,.0f} steps, "
                     f"{flops:.3e} FLOPs ({100 * flops / sum(spent):.0f}% of the run); "
                     f"blocks {st.n_blocks}, d_ff {st.d_ff}, n_embd {st.n_embd}, T {st.seq}" +
                     (f" pooled to {st.seq // st.pool}" if st.pool > 1 else "") +
                     f" x batch {st.batch}; depth " +
                     (' '.join(f"{d}:{p:.3f}" for d, p in depths.items()) + f" (mean {mean:.2f})"
                      if len(depths) > 1 else f"{mean:g}") + layer_words(args, cfg, st))
    lines.append(f"total: {sum(spent):.3e} FLOPs, {100 * sum(spent) / total:.1f}% of scratch's {total:.3e}")
    return lines


def clock_words(args, budget):
    """The run's clock and learning rate in words."""
    clock = (f"{budget.steps} steps" if args.budget == 'steps' else
             f"scratch's FLOPs of {args.max_steps} steps, stages placed on the FLOPs clock" if budget.by_flops
             else f"{budget.steps} steps of its own (scratch's FLOPs of {args.max_steps} steps)")
    warmup, start, min_lr = lr_corners(args, budget.steps)
    decay = f"held to {start:g}, then linear" if args.decay == 'wsd' else args.decay
    muon = f"Muon at {args.muon_lr / args.lr:g} x lr for block matrices, " if args.optimizer == 'muon' else ''
    rewarm = f", re-warmed over {args.rewarmup} steps after each growth" if args.rewarmup else ""
    return (f"{clock}; {muon}AdamW; lr: warmup to {args.lr:g} over {warmup} steps, {decay} to {min_lr:g} at "
            f"{budget.steps}{rewarm}")


def growth_words(old, new, op):
    """A growth between two stages: what changes, and where each new block comes from."""
    words = f"growth at clock {new.start:g}: " + ', '.join(changes(old, new))
    if new.n_blocks > old.n_blocks:
        src = depth_source(old.n_blocks, new.n_blocks, op)
        words += f" by {op} (new block <- old: {','.join('new' if j is None else str(j) for j in src)})"
    return words


def layer_words(args, cfg, stage):
    """Which block each executed layer runs, where that is not simply layer t -> block t."""
    sampling, layer_map = depth_sampling(args)
    if stage.path:
        return (f"; a random path: layers 0 and {cfg.n_layer - 1} and {stage.path - 2} others drawn per "
                f"step")
    if sampling and stage.n_blocks < cfg.n_layer:
        blocks = map_layers(stage.n_blocks, cfg.n_layer, layer_map)
        return f"; at depth {cfg.n_layer} layer t runs block {fmt(blocks)}"
    return ""
