"""
The flags of grow.py and the schedule they describe: the method table (one `Method` entry per method), the
stages a run trains (depth, width, length, and where each starts), the run's clock (`Budget`: steps, or FLOPs
in steps of the target) and the learning rate at every point of it. Everything here is checked before anything
trains: bad input is one line naming the flag and what would be valid.
"""
import argparse
import importlib.util
import math
import os
import sys
from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np

import data
from data import InputError
from model import (SIZES, config_for, depth_probabilities, depth_source, draw_depth, flops_per_step,
                   map_layers, random_path)
from runtime import pick_device, read_checkpoint


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
    """One method: everything the loop, the budget, --compare and the export ask of it. Adding a method is one
    entry in METHODS (and a depth operator in `deepen` of model.py if it copies blocks a new way)."""
    paper: str                # where it comes from
    stages: Callable          # L -> weight blocks per stage (draws 'path': path lengths, owning all L blocks)
    stage_at: object = ()     # budget fractions where stages 2.. start, or a rule: n_stages -> fractions
    depth_op: str = None      # how depth grows at a boundary (`deepen`); None: the model never deepens
    draws: str = None         # what each step draws with the run's sampler: 'depth' (Apollo), 'path' (RaPTr)
    dims: tuple = ()          # dimensions grown besides depth (--grow's default)
    defaults: dict = field(default_factory=dict)  # its defaults of its own flags (DRAW_FLAGS)
    check: Callable = None    # its own validation of (args, stages): raises InputError

    @property
    def grows(self):  # the baseline trains the target from the first step: no stage starts later
        return bool(self.stage_at)


def check_paths(args, n_blocks):
    """RaPTr's own rules: its stages are path lengths, and it owns every block from the start."""
    if n_blocks[0] < 2 or args.depth_op or args.depth_noise is not None:
        raise InputError(f"--method {args.method}: --stages {fmt(n_blocks)} are path lengths, each keeping "
                         f"the first and last layer (at least 2); it owns all blocks from the start, so "
                         f"--depth_op and --depth_noise do not apply")


BASELINE = 'scratch'  # the method every comparison measures against
METHODS = {
    'apollo': Method('Apollo, Pan et al. AAAI 2024 (Eqs. 7-12)', lambda L: [1, L // 4, L // 2, L],
                     [0.05, 0.1, 0.25], 'interpolate', draws='depth', defaults=dict(sampling='lvps')),
    'scratch': Method('the target trained from random initialisation: the baseline', lambda L: [L]),
    # StackBERT's stages last 50k, 70k and 280k of 400k updates: growths at 12.5% and 30%, which interpolate
    # shares so that the two operators differ in nothing else
    'stack': Method('StackBERT, Gong et al. 2019', lambda L: [L // 4, L // 2, L], [0.125, 0.3], 'stack'),
    'interpolate': Method('Apollo, Pan et al. AAAI 2024, Eq. 12', lambda L: [L // 4, L // 2, L], [0.125, 0.3],
                          'interpolate'),
    # CompoundGrow's operators (FFN tiling, embedding pooling); its schedule is not published in code, so ours
    'compound': Method('CompoundGrow, Gu et al. NAACL 2021', lambda L: [L // 4, L // 2, L], [0.1, 0.3],
                       'stack', dims=('width', 'length')),
    # G_stack (Du et al. 2024, "Stacking Your Transformers"): one growth, stacking the whole L/4-layer model 4
    # times (their growth factor g = 4). Its timing is a token count from a law they fitted to model size and
    # compute; we grow at a fraction of the budget like every other method.
    'gstack': Method('G_stack, Du et al. NeurIPS 2024', lambda L: [L // 4, L], [0.25], 'stack'),
    # MIDAS: gradual middle stacking by groups of b = L/6 layers (6 stages; `midas_stages`, the group size is
    # our choice), each stage's length proportional to its index (the paper's Prop-alpha with alpha = 1, as a
    # public re-implementation quotes it), so the full model trains the last 2/7; the copied group is
    # `middle_copy`.
    'midas': Method('MIDAS, Saunshi et al. NeurIPS 2024 (Fig. 1a)', midas_stages, prop1, 'middle'),
    # RaPTr (Panigrahi et al. 2024): random paths of L/2, 2L/3, 5L/6 and L layers (6-8-10-12 for BERT-Base, as
    # in the paper), in stages of equal length (ours); it owns all L blocks from the start. The draw is
    # `random_path`; whether the paper rescales outputs we could not check (no code was released).
    # Zero/one-layer progressive training (Bu, "Scaling depth capacity via zero/one-layer model expansion",
    # ICML 2026, arXiv 2511.04981; no code released): one block trained for most of the run, then one growth
    # straight to L, late: at about 80% of the iterations (the paper's time, as its summaries give it; the
    # paper finds one late growth better than several, e.g. 0 -> 2 -> 12), under a warmup-stable-decay
    # schedule (--decay wsd, whose default decay is the last 20%: the full model trains the whole decay). The
    # paper finds both copying the trained layer and a random initialisation of the new ones to converge
    # fast; the default copies it (from one block, stack, interpolate and middle all copy it alike),
    # --depth_op fresh initialises them, and --stages 0,L with fresh starts with no block at all (the
    # zero-layer model).
    'onelayer': Method('zero/one-layer progressive training, Bu, ICML 2026 (arXiv 2511.04981)',
                       lambda L: [1, L], [0.8], 'stack'),
    'raptr': Method('RaPTr, Panigrahi et al. 2024', lambda L: sorted({L // 2, 2 * L // 3, 5 * L // 6, L}),
                    lambda S: [round(i / S, 4) for i in range(1, S)], draws='path', check=check_paths),
}
# the flags of what a method draws per step: refused for the other methods, dropped for them in --compare
DRAW_FLAGS = {'depth': ('sampling', 'layer_map', 'sample_per', 'shared_lr')}


# --grow's dimensions, each with the flag of its per-stage fractions and the target size it scales
DIMS = {'width': ('ffn_stages', 'd_ff'), 'embd': ('embd_stages', 'n_embd'),
        'length': ('seq_stages', 'block_size')}
DEFAULT_DATA = data.DEFAULT
# flags a resumed run may change; every other flag is the checkpoint's (changing it would change the run)
# (--lr too: after a divergence, lower it and resume from the last good checkpoint; README says so)
RESUMABLE = {'resume', 'out_dir', 'stop_at', 'device', 'compile', 'log_interval', 'eval_interval',
             'sample_tokens', 'export_hf', 'force', 'sample', 'prompt', 'lr', 'max_skips', 'plan'}
# flags that shape growth: meaningless for the baseline (refused there, dropped for it in --compare)
GROWTH_FLAGS = ('stages', 'stage_at', 'depth_op', 'grow', 'ffn_stages', 'seq_stages', 'embd_stages',
                'length_op', 'depth_noise')


class Parser(argparse.ArgumentParser):
    def error(self, message):  # one line and exit status 2, instead of usage + message
        print(f"grow.py: error: {message}", file=sys.stderr)
        sys.exit(2)


def get_parser():
    """The flags, in the groups that `--help` shows: the model, its growth, the training, the run."""
    p = Parser(description='Progressive training of GPT and BERT (nanogrow).')
    model_flags(p.add_argument_group('the model').add_argument)
    growth_flags(p.add_argument_group('the method and how it grows').add_argument)
    training_flags(p.add_argument_group('training: data, budget, schedule, evaluation').add_argument)
    run_flags(p.add_argument_group('the run: device, checkpoints, samples, comparisons, export').add_argument)
    return p


def model_flags(a):
    """The target model: its kind, size and architecture."""
    a('--model', default='gpt', choices=('gpt', 'bert'), help='gpt: causal LM; bert: masked LM')
    a('--size', default='auto', choices=('auto',) + tuple(SIZES), help='auto: small on CUDA, tiny on CPU')
    for name in ('n_layer', 'n_head', 'n_embd', 'd_ff', 'block_size', 'vocab_size'):
        a(f'--{name}', type=int, default=None, help='override the size')
    a('--dropout', type=float, default=0.0)
    a('--bias', type=int, default=1, choices=(0, 1))
    a('--pos', default=None, choices=('learned', 'rope'), help='positions: learned (an absolute table; '
      'GPT\'s default and the original BERT\'s) or rope (rotary on q and k, no table; RoFormer; BERT\'s '
      'default: it leaves the unigram plateau that a learned table keeps a small BERT on, see RESULTS.md)')
    a('--norm', default=None, choices=('pre', 'post'), help='LayerNorm before each sublayer (pre; GPT\'s '
      'default) or after it (post; the original BERT\'s, its default)')
    a('--mask_rate', type=float, default=0.15, help='BERT: share of positions masked and predicted in '
      'training (80%% [MASK], 10%% random, 10%% kept); evaluation always masks 15%%')


def growth_flags(a):
    """The method, and every choice of how it grows (the method's entry gives the defaults)."""
    a('--method', default='apollo', choices=tuple(METHODS))
    a('--stages', type=int_list, default=None, help="weight blocks per stage, e.g. 3,6,12 (default: the "
      "method's; raptr: the layers its random path runs per stage, e.g. 6,8,10,12)")
    a('--stage_at', type=float_list, default=None,
      help="budget fractions where stages 2.. start, e.g. 0.125,0.3")
    a('--depth_op', '--expand', dest='depth_op', default=None,
      choices=('stack', 'interpolate', 'identity', 'middle', 'fresh'),
      help="how depth grows (default: the method's; --expand is Apollo's name for it); middle = copy the "
           "middle group of layers (MIDAS); identity = new blocks on top, random as StackBERT's identity.py "
           "makes them, with zeroed output projections (pre-LN only); fresh = the same with the model's own "
           "initialisation (Bu)")
    a('--sampling', default=None, choices=('lvps', 'us', 'es', 'fs', 'none'),
      help='apollo: depth sampled each step (default lvps; none: no draw, each stage trains, is evaluated '
           'and grows at its own k blocks: the paper\'s "w/o sampling" ablation)')
    a('--layer_map', default=None, choices=('interpolate', 'stack'),
      help='apollo: which block runs each sampled layer (default interpolate)')
    a('--sample_per', default=None, choices=('step', 'micro'), help='apollo: draw the depth once per '
      'optimizer step (default; every micro-batch and process alike) or once per micro-batch (the official '
      'code)')
    a('--shared_lr', default=None, choices=('none', 'uses', 'ratio'), help='apollo: the learning rate of a '
      'shared block is lr (none, default), lr / u with u the layers it runs this step (uses), or lr * k / d '
      '(ratio)')
    a('--depth_noise', type=float, default=None, help='at a depth growth, every copy after the first of a '
      'block gets W + noise * std(W) * N(0, 1) in each weight tensor (default 0: exact copies; G_stack found '
      '~0.2 helps)')
    a('--opt_state', default='copy', choices=('copy', 'reset', 'slots'),
      help='AdamW moments at a growth: copied through the same map as the weights (copy), started afresh '
           '(reset), or kept by block index, new indices fresh (slots: the official Apollo code)')
    a('--rewarmup', type=int, default=0, help='steps of linear LR re-warmup after each growth')
    a('--grow', type=dims_list, default=None, help="dimensions grown besides depth, comma-separated: width "
      "(the FFN's d_ff), embd (hidden size n_embd with n_head), length (sequence length), or none (default: "
      "compound width,length; the others none)")
    a('--ffn_stages', type=float_list, default=None, help='d_ff fraction per stage, e.g. 0.25,0.5,1')
    a('--embd_stages', type=float_list, default=None,
      help='n_embd (and n_head) fraction per stage, e.g. 0.5,1')
    a('--seq_stages', type=float_list, default=None,
      help='sequence-length fraction per stage, e.g. 0.25,0.5,1')
    a('--length_op', default=None, choices=('truncate', 'pool'),
      help='how a stage shorter than block_size sees its data: truncate (default: shorter windows, '
           'proportionally more of them) or pool (BERT: full windows whose embeddings are mean-pooled over '
           'neighbouring positions, the masked positions kept as queries of their own; CompoundGrow)')


def training_flags(a):
    """The data, the budget, the optimizer and its learning-rate schedule, evaluation."""
    a('--data', default=DEFAULT_DATA,
      help='a folder prepared by data.py (the default is prepared if missing)')
    a('--max_steps', type=int, default=600, help='optimizer steps: the budget')
    a('--budget', default='steps', choices=('steps', 'flops'), help="steps: every method trains max_steps "
      "steps (the papers' protocol); flops: until it has spent what scratch spends in max_steps (equal "
      "compute)")
    a('--stage_clock', default='steps', choices=('steps', 'flops'), help="--budget flops: where stages start and "
      "the LR schedule runs: at fractions of the method's own steps, their number solved so that it spends "
      "scratch's FLOPs (steps, default: the papers' schedules are fractions of their steps), or at fractions of "
      "the FLOPs spent (flops: a cheap stage then takes more of the method's steps)")
    a('--batch_size', type=int, default=32, help='sequences per micro-batch')
    a('--grad_accum', type=int, default=1, help='micro-batches per optimizer step')
    a('--lr', type=float, default=None, help='peak learning rate (default 1e-3; BERT 5e-4: a post-LN BERT of '
      'width 128 stays on the unigram plateau at 1e-3 in some seeds, see RESULTS.md)')
    a('--min_lr', type=float, default=None, help='final learning rate (default lr/10)')
    a('--warmup', type=int, default=None, help='linear warmup steps (default 5%% of max_steps)')
    a('--decay', default='cosine', choices=('cosine', 'linear', 'wsd'), help='after the warmup: cosine or '
      'linear decay to min_lr over the whole run, or wsd (warmup-stable-decay): the peak rate until the last '
      '--decay_frac of the run, then a linear decay to min_lr')
    a('--decay_frac', type=float, default=None, help='--decay wsd: the share of the run the decay takes '
      '(default 0.2: the last 20%%, which the one-layer method\'s growth at 80%% starts)')
    a('--weight_decay', type=float, default=0.1)
    a('--grad_clip', type=float, default=1.0, help='0 disables clipping')
    a('--max_skips', type=int, default=3, help='consecutive steps with a non-finite loss or gradient norm '
      'that are skipped (not applied) before the run stops with exit status 3')
    a('--eval_interval', type=int, default=100)
    a('--eval_batches', type=int, default=20)
    a('--log_interval', type=int, default=10)
    a('--seed', type=int, default=1337)


def run_flags(a):
    """Where and how the run executes, what it writes, and the modes that train nothing or many runs."""
    a('--out_dir', default='out')
    a('--device', default='auto', choices=('auto', 'cpu', 'cuda', 'mps'),
      help='auto: cuda, else mps (Apple silicon; untested by us), else cpu')
    a('--dtype', default='auto', choices=('auto', 'float32', 'bfloat16', 'float16'),
      help='autocast dtype; auto: bfloat16 on CUDA where the GPU has it, float16 with a GradScaler where '
           'not, float32 on CPU')
    a('--compile', action='store_true', help='torch.compile each block')
    a('--resume', action='store_true', help='continue from out_dir/ckpt.pt with its flags')
    a('--stop_at', type=int, default=None, help='stop after this step with a checkpoint (resume later)')
    a('--sample_tokens', type=int, default=200, help='tokens generated at the end (0: none)')
    a('--sample', action='store_true',
      help='with --resume: show what the checkpoint learned (a sample), train nothing')
    a('--prompt', default=None,
      help='the sample starts from this text (GPT), or fills its [MASK] markers (BERT)')
    a('--wandb', default=None, metavar='PROJECT', help='also log every record of log.jsonl to this Weights & '
      'Biases project, against the FLOPs clock (needs pip install wandb; WANDB_MODE=offline works offline)')
    a('--wandb_run', default=None, help='--wandb: the run\'s name (default: method-model-seedS)')
    a('--wandb_group', default=None,
      help='--wandb: the runs\' group (--compare sets it to its folder\'s name)')
    a('--compare', default=None, help='methods to train into out_dir/<method>/seed<S> and compare (e.g. '
      'scratch,stack,interpolate,apollo,compound), or a comparison folder to print again')
    a('--seeds', type=int, default=1, help='--compare: train every method with seeds seed, seed+1, ..., '
      'seed+N-1 (model init, data order, Apollo\'s sampler; the evaluation batches stay fixed)')
    a('--jobs', type=int, default=1, help='--compare: runs at once (CPU: each gets its share of the cores; '
      'CUDA: one per visible GPU); wall-clock columns compare only runs made with the same --jobs')
    a('--plan', action='store_true', help='train nothing: print the schedule (stages, depths, growths, the '
      'learning rate, the FLOPs against scratch); with --compare a,b,c every method\'s, and their picture')
    a('--export_hf', default=None, help='with --resume: write the checkpoint of out_dir as a Hugging Face '
      'model folder (GPT2LMHeadModel / BertForMaskedLM, safetensors); needs transformers')
    a('--force', action='store_true', help='--export_hf: replace a non-empty folder')


def int_list(text):
    try:
        return [int(v) for v in text.split(',')]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of integers, e.g. 3,6,12")


def float_list(text):
    try:
        return [float(v) for v in text.split(',')] if text else []
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of numbers, e.g. 0.125,0.3")


def dims_list(text):
    dims = [d for d in text.split(',') if d not in ('', 'depth', 'none')]  # depth always grows
    if any(d not in DIMS for d in dims) or ('none' in text.split(',') and dims):
        raise argparse.ArgumentTypeError(f"{text!r}: give none, or dimensions among {', '.join(DIMS)} "
                                         f"(depth always grows)")
    return dims


def parse(argv=None):
    """(the flags, the names of those typed on the command line): a resumed run needs to know which."""
    p = get_parser()
    args = p.parse_args(argv)
    for action in p._actions:  # parse again without defaults: only the flags typed on the command line
        action.default = argparse.SUPPRESS
    return args, set(vars(p.parse_args(argv)))


def parse_args(argv=None):
    """The run's flags, checked; with --resume, the checkpoint's flags (a resumed run is the same run)."""
    args, typed = parse(argv)
    if args.resume:
        ckpt, path = read_checkpoint(args.out_dir)
        args = resumed(args, typed, ckpt['args'], path)
    check(args, typed)
    if args.size == 'auto':
        args.size = 'small' if pick_device(args) == 'cuda' else 'tiny'
        print(f"--size auto: {args.size} on {pick_device(args)}")
    return args


def resumed(args, typed, saved, path):
    """The flags of a resumed run: the checkpoint's `saved` flags, and the RESUMABLE ones typed now; typing
    any other flag with another value is refused (a resumed run is the same run)."""
    for k in typed:
        if k not in RESUMABLE and saved.get(k) != getattr(args, k):
            raise InputError(f"--{k} {getattr(args, k)} differs from the checkpoint's {saved.get(k)} "
                             f"({path}); a resumed run keeps its flags except {', '.join(sorted(RESUMABLE))}")
    now = {k: getattr(args, k) for k in typed if k in RESUMABLE}
    # defaults first: a checkpoint written before a flag existed still resumes with that flag's default
    return argparse.Namespace(**{**vars(args), **saved, 'stop_at': None, 'out_dir': args.out_dir, **now})


def check(args, typed):
    """Every flag's value and every combination, checked before anything trains (the schedule's in
    `schedule`)."""
    if args.lr is None:
        args.lr = 5e-4 if args.model == 'bert' else 1e-3
    check_numbers(args)
    if args.warmup is not None and not 0 <= args.warmup < args.max_steps:
        raise InputError(f"--warmup must be in [0, max_steps={args.max_steps}), got {args.warmup}")
    if args.decay_frac is not None and args.decay != 'wsd':
        raise InputError(f"--decay_frac is the share of --decay wsd's decay; --decay {args.decay} decays "
                         f"over the whole run: add --decay wsd or drop --decay_frac")
    if args.stage_clock == 'flops' and args.budget != 'flops':
        raise InputError("--stage_clock flops places stages on the FLOPs clock of --budget flops; add --budget "
                         "flops, or drop --stage_clock")
    if args.stop_at is not None and not 0 < args.stop_at <= args.max_steps:
        raise InputError(f"--stop_at must be in [1, max_steps={args.max_steps}], got {args.stop_at}")
    if args.compare and int(os.environ.get('WORLD_SIZE', 1)) > 1:
        raise InputError("--compare starts its own runs (--jobs at once); run it without torchrun")
    if not args.compare and ({'seeds', 'jobs'} & typed):
        raise InputError(f"--{min({'seeds', 'jobs'} & typed)} belongs to --compare (several runs); "
                         f"a single run has one seed: --seed")
    if (args.wandb_run or args.wandb_group) and not args.wandb:
        raise InputError(f"--wandb_{'run' if args.wandb_run else 'group'} names a Weights & Biases run: add "
                         f"--wandb PROJECT")
    if args.wandb and importlib.util.find_spec('wandb') is None:
        raise InputError("--wandb needs the wandb package: pip install wandb")
    if args.sample and not args.resume:
        raise InputError("--sample shows what a checkpoint learned: add --resume (and --out_dir of the run)")
    if args.length_op == 'pool' and args.model != 'bert':
        raise InputError("--length_op pool keeps the masked positions as queries: it is for --model bert; "
                         "use --length_op truncate with gpt")
    if args.length_op == 'pool' and positions(args) != 'learned':
        raise InputError("--length_op pool averages position embeddings, and --pos rope (BERT's default) has "
                         "none: add --pos learned, or use --length_op truncate")
    return args


# Numeric flags and what is valid for each (a test of the value, given the other flags, and the words for it).
POSITIVE = 'a positive integer'
NUMBERS = {
    **{k: (lambda v, a: v > 0, POSITIVE) for k in ('max_steps', 'batch_size', 'grad_accum', 'eval_interval',
                                                   'eval_batches', 'log_interval', 'max_skips', 'seeds',
                                                   'jobs')},
    'lr': (lambda v, a: v > 0, 'a positive number, e.g. 1e-3'),
    'min_lr': (lambda v, a: v is None or 0 <= v <= a.lr, 'a number in [0, --lr] (default lr/10)'),
    'weight_decay': (lambda v, a: v >= 0, '0 or a positive number'),
    'grad_clip': (lambda v, a: v >= 0, '0 (no clipping) or a positive number'),
    'dropout': (lambda v, a: 0 <= v < 1, 'a number in [0, 1)'),
    'mask_rate': (lambda v, a: 0 < v < 1, 'a number in (0, 1)'),
    'depth_noise': (lambda v, a: v is None or v >= 0, "0 or positive (a share of each tensor's std)"),
    'rewarmup': (lambda v, a: v >= 0, '0 or a positive number of steps'),
    'decay_frac': (lambda v, a: v is None or 0 < v <= 1, 'a number in (0, 1], e.g. 0.2'),
    'seed': (lambda v, a: 0 <= v < 2 ** 31, 'an integer in [0, 2**31)'),
}


def check_numbers(args):
    """Every numeric flag finite and in its range (NUMBERS): a nonsense value is refused, never trained on."""
    for k, (valid, words) in NUMBERS.items():
        v = getattr(args, k)
        if isinstance(v, float) and not math.isfinite(v) or not valid(v, args):
            raise InputError(f"--{k} must be {words}, got {v}")


def to_argv(args):
    """The command line that gives `args` (the flags that differ from their defaults): how --compare starts a
    run in a process of its own."""
    argv = []
    for action in get_parser()._actions:
        value = getattr(args, action.dest, None)
        if not action.option_strings or action.dest == 'help' or value == action.default:
            continue
        if isinstance(value, bool):
            argv.append(action.option_strings[0])
        elif isinstance(value, list):
            listed = ','.join(map(str, value)) or ('none' if action.dest == 'grow' else '')
            argv += [action.option_strings[0], listed]
        else:
            argv += [action.option_strings[0], str(value)]
    return argv


def schedule(args, cfg):
    """The stages of a run, in order: where each starts (a step of the budget's clock) and the model it trains
    (n_blocks, n_embd, n_head, d_ff) on `batch` windows of `seq` tokens (tokens per step stay constant), each
    mean-pooled by `pool` under --length_op pool, and (RaPTr) the length of its random `path`; plus the depth
    operator of its growths."""
    n_blocks, stage_at, op = depth_schedule(args, cfg)
    fractions = dim_fractions(args, cfg, n_blocks)
    if METHODS[args.method].draws == 'path':  # RaPTr: the stages are the layers run per step, of all L blocks
        paths, n_blocks = n_blocks, [cfg.n_layer] * len(n_blocks)
    else:
        paths = [None] * len(n_blocks)
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
        stages.append(dict(n_blocks=n_blocks[i], n_embd=int(embd * cfg.n_embd),
                           n_head=int(embd * cfg.n_head), d_ff=int(fractions['ffn_stages'][i] * cfg.d_ff),
                           seq=seq * pool, batch=args.batch_size * cfg.block_size // (seq * pool), pool=pool,
                           path=paths[i]))
    return place(args, cfg, stages, stage_at), op


def place(args, cfg, stages, stage_at):
    """Each stage's `start` and `end` on the run's clock, at the fractions `stage_at` of its length: --max_steps,
    or under --budget flops --stage_clock steps the method's own steps, solved so that the stages' expected
    FLOPs add up to what scratch spends in --max_steps (the papers' schedules are fractions of their steps;
    the expected FLOPs of a step of each stage are known before training)."""
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
        raise InputError(f"--stage_at puts the last stage at step {starts[-1]} of {of}: it would never train; use "
                         f"earlier fractions or more --max_steps")
    return [dict(st, start=s, end=e) for st, s, e in zip(stages, starts, ends)]


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
    if not m.grows and any(getattr(args, k) is not None for k in GROWTH_FLAGS):
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
    """Apollo's per-step depth sampling and layer map, or (None, 'interpolate') for the other methods and for
    --sampling none, which draws nothing: each stage trains, is evaluated and grows at its own k blocks (the
    paper's "w/o sampling" ablation, interpolation on Apollo's schedule)."""
    sampling = args.sampling or METHODS[args.method].defaults.get('sampling')
    return None if sampling == 'none' else sampling, args.layer_map or 'interpolate'


# what a growth changes: stage key -> its name in the growth's record (old_<name>, new_<name>) and line
GROWN = {'n_blocks': 'blocks', 'path': 'path', 'n_embd': 'n_embd', 'd_ff': 'd_ff', 'seq': 'seq',
         'pool': 'pool'}


def changes(old, new):
    """What a growth from stage `old` to stage `new` changes, in words ('blocks 3 -> 6')."""
    return [f"{name} {old[key]} -> {new[key]}" for key, name in GROWN.items() if old[key] != new[key]]


def draw_step(args, stage, model, rng):
    """What the method draws for one step (`Method.draws`): the depth each micro-batch runs, and the layer map
    that runs it. Apollo draws one depth per step (every micro-batch and process run it), or one per
    micro-batch with --sample_per micro (the official code's granularity); RaPTr draws one random path of the
    stage's length per step (`random_path`); the others run their k blocks."""
    k, (sampling, layer_map) = len(model.blocks), depth_sampling(args)
    if stage['path']:
        path = random_path(k, stage['path'], rng)
        return [len(path)], path
    if not sampling:
        return [k], layer_map
    draws = args.grad_accum if args.sample_per == 'micro' else 1
    return [draw_depth(k, model.cfg.n_layer, sampling, rng) for _ in range(draws)], layer_map


def stage_lines(args, stages, depth_op, budget):
    """One line per stage: where it starts on the run's clock, its model and batch, and how it grows."""
    sampling, layer_map = depth_sampling(args)
    lines = []
    for i, st in enumerate(stages):
        lines.append(f"stage {i + 1}/{len(stages)} from {budget.where(st['start'])}: {st['n_blocks']} blocks, "
                     f"n_embd {st['n_embd']}, d_ff {st['d_ff']}, T {st['seq']}" +
                     (f" pooled to {st['seq'] // st['pool']}" if st['pool'] > 1 else "") +
                     f" x batch {st['batch']}" + (f", grown by {depth_op}" if i and depth_op else "") +
                     (f", random paths of {st['path']} layers" if st['path'] else "") +
                     (f", depth sampled by {sampling} ({layer_map} map)" if sampling else ""))
    return lines


def evaluation_depth(args, cfg):
    """The depth (and layer map) that evaluation, growth probes, samples and the export run for a model of
    config `cfg`: Apollo's shared blocks run the target depth L, every other model its own blocks."""
    sampling, layer_map = depth_sampling(args)
    return dict(depth=cfg.n_layer if sampling else cfg.n_blocks, layer_map=layer_map)


def stage_of(position, stages):
    """Index of the stage that trains at `position` (stages whose start rounds to the same step are
    skipped)."""
    return max(i for i, stage in enumerate(stages) if stage['start'] <= position)


def fmt(values):
    return ','.join(str(v) for v in values)


def positions(args):
    """--pos, or the kind's default: GPT a learned table, BERT rotary (why: RESULTS.md, "A BERT that learns on
    a CPU")."""
    return args.pos or ('rope' if args.model == 'bert' else 'learned')


def model_config(args, meta):
    """The target Config from --size and its overrides, checked against the data."""
    need = data.model_vocab(meta['vocab_size'])
    if args.vocab_size is not None and args.vocab_size < meta['vocab_size'] + 1:
        raise InputError(f"{args.data}/meta.json: vocabulary of {meta['vocab_size']} tokens (+[MASK]) "
                         f"exceeds --vocab_size {args.vocab_size}; use at least {meta['vocab_size'] + 1} (or "
                         f"omit it: {need})")
    cfg = config_for(args.model, args.size, args.vocab_size or need, n_layer=args.n_layer, n_head=args.n_head,
                     n_embd=args.n_embd, d_ff=args.d_ff, block_size=args.block_size, dropout=args.dropout,
                     bias=bool(args.bias), pos=positions(args),
                     pre_ln=None if args.norm is None else args.norm == 'pre')
    for k in ('n_layer', 'n_head', 'n_embd', 'd_ff', 'block_size'):
        if getattr(cfg, k) <= 0:
            raise InputError(f"--{k} must be a positive integer, got {getattr(cfg, k)}")
    if cfg.n_embd % cfg.n_head:
        raise InputError(f"--n_embd {cfg.n_embd} is not divisible by --n_head {cfg.n_head}")
    return cfg


def lr_at(position, args, budget, since_growth=None):
    """Linear warmup, then the decay to min_lr: cosine or linear over the rest of the run, or WSD
    (warmup-stable-decay; Hu et al. 2024, MiniCPM): the peak rate until the last --decay_frac of the run, then
    a linear decay. Growth never restarts it. `position` is on the run's clock (`Budget`), a float on the
    FLOPs clock. With --rewarmup N the rate is ramped up again over the N optimizer steps after each growth
    (Staged Training): `since_growth` counts them (None before the first growth)."""
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
    """(the warmup's steps, where the decay starts, the final rate) on a clock of `length`: WSD's stable phase
    holds the peak from the warmup's end to the decay's start; cosine and linear decay from the warmup's end.
    The default warmup is 5% of the clock."""
    warmup = args.warmup if args.warmup is not None else length // 20
    start = max(warmup, length * (1 - (args.decay_frac or 0.2))) if args.decay == 'wsd' else warmup
    return warmup, start, args.min_lr if args.min_lr is not None else args.lr / 10


def shared_lr_scales(k, depths, layer_map, how):
    """--shared_lr: block index -> the factor of its learning rate this step. A block run u times in one
    forward receives the sum of u gradients: AdamW normalises the sum, but the function moves about u times as
    far as an unshared layer's would. uses: 1 / u per block; ratio: k / d for all (averaged over the
    micro-batches)."""
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
    """The run's budget and its clock: optimizer steps (--budget steps, and --budget flops with its default
    --stage_clock steps, where the method takes as many steps of its own as spend scratch's FLOPs), or the
    FLOPs spent in units of one step of the full target (--stage_clock flops). Stage boundaries, the LR
    schedule, evaluations and the end all read this clock."""
    steps: int            # the clock's length: --max_steps, or the method's own steps (`place`)
    by_flops: bool        # the clock reads the FLOPs spent (--stage_clock flops)
    scratch_step: float   # the FLOPs of one step of the target: scratch's step
    starts: list          # each stage's start on the clock
    step_flops: list      # the expected FLOPs of one step of each stage (Apollo: at its mean sampled depth)

    def position(self, progress):
        return progress.flops / self.scratch_step if self.by_flops else progress.step

    def where(self, position):
        """A point of the clock in words: 'step 120/1871' or '12% of the FLOPs'."""
        if self.by_flops:
            return f"{100 * position / self.steps:.3g}% of the FLOPs"
        return f"step {position}/{self.steps}"

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
        spent = (f"this run spent {progress.flops:.3e} FLOPs in {progress.step} steps: {100 * share:.0f}% of "
                 f"what scratch spends in {args.max_steps} steps")
        if not METHODS[args.method].grows:
            return spent
        return (f"{spent}; `python grow.py --compare {BASELINE},{args.method} ...` shows whether it reached "
                f"scratch's loss")


def make_budget(args, cfg, stages, world=1):
    """The Budget of a run (`world` processes): its clock and the expected FLOPs of a step of each stage."""
    return Budget(stages[-1]['end'], args.budget == 'flops' and args.stage_clock == 'flops',
                  step_flops(args, cfg, None, world), [st['start'] for st in stages],
                  [step_flops(args, cfg, st, world) for st in stages])


def step_flops(args, cfg, stage, world=1):
    """The expected FLOPs of one optimizer step of `stage` (None: of scratch's target) over `world` processes:
    at its mean executed depth (Apollo's draw), BERT's head on --mask_rate of the tokens."""
    tokens = args.batch_size * args.grad_accum * cfg.block_size * world
    head = args.mask_rate * tokens if cfg.kind == 'bert' else None
    if stage is None:
        return flops_per_step(cfg, cfg.n_layer, tokens, cfg.block_size, head)
    depth = mean_depth(stage_depths(args, cfg, stage))
    shape = replace(cfg, n_embd=stage['n_embd'], n_head=stage['n_head'], d_ff=stage['d_ff'])
    queries = math.ceil(args.mask_rate * stage['seq']) if stage['pool'] > 1 else 0
    return flops_per_step(shape, depth, tokens, stage['seq'], head, stage['pool'], queries)


def stage_depths(args, cfg, stage):
    """The depths a stage executes and their probabilities: Apollo's draw (`depth_probabilities`), the
    length of RaPTr's path, or the stage's blocks."""
    sampling, _ = depth_sampling(args)
    if stage['path']:
        return {stage['path']: 1.0}
    return depth_probabilities(stage['n_blocks'], cfg.n_layer, sampling or 'none')


def mean_depth(depths):
    """The mean of a {depth: probability} distribution (`stage_depths`)."""
    return sum(d * p for d, p in depths.items())


# ----------------------------------------------------------------------------- --plan

def plan(args, cfg):
    """--plan: what these flags will train, before a step is spent: each stage's range on the clock (and its
    steps and FLOPs), model, executed depths with their probabilities and the block each layer runs, each
    growth's copies, the learning rate at each boundary, and the FLOPs against scratch. Returns (lines,
    series): the series is (share of scratch's FLOPs, mean executed depth, learning rate) at every step of
    the clock, for the picture (`compare.plot_plans`)."""
    stages, op = schedule(args, cfg)
    budget = make_budget(args, cfg, stages)
    total = args.max_steps * budget.scratch_step  # what scratch spends
    spent = [(st['end'] - st['start']) * (budget.scratch_step if budget.by_flops else f)
             for st, f in zip(stages, budget.step_flops)]
    lines = [f"{args.method} ({METHODS[args.method].paper}): {cfg.kind} {args.size}, {cfg.n_layer} layers of "
             f"n_embd {cfg.n_embd}, {clock_words(args, budget)} of "
             f"{args.batch_size * args.grad_accum * cfg.block_size:,} tokens; " + lr_words(args, budget)]
    for i, (st, flops) in enumerate(zip(stages, spent)):
        if i:
            lr = lr_at(st['start'], args, budget, since_growth=0)
            lines.append(f"  {growth_words(stages[i - 1], st, op)}; lr {lr:.2e}")
        steps = flops / budget.step_flops[i]
        depths = stage_depths(args, cfg, st)
        mean = mean_depth(depths)
        lines.append(f"stage {i + 1}/{len(stages)}: clock {st['start']:g}-{st['end']:g}, {steps:,.0f} steps, "
                     f"{flops:.3e} FLOPs ({100 * flops / sum(spent):.0f}% of the run); "
                     f"blocks {st['n_blocks']}, "
                     f"d_ff {st['d_ff']}, n_embd {st['n_embd']}, T {st['seq']}; depth " +
                     (' '.join(f"{d}:{p:.3f}" for d, p in depths.items()) + f" (mean {mean:.2f})"
                      if len(depths) > 1 else f"{mean:g}") + layer_words(args, cfg, st))
    lines.append(f"total: {sum(spent):.3e} FLOPs, {100 * sum(spent) / total:.1f}% of scratch's {total:.3e}")
    return lines, plan_series(args, cfg, stages, budget)


def clock_words(args, budget):
    """The run's clock in words, for the start banner and --plan."""
    if args.budget == 'steps':
        return f"{budget.steps} steps"
    if budget.by_flops:
        return f"scratch's FLOPs of {args.max_steps} steps, stages placed on the FLOPs clock"
    return f"{budget.steps} steps of its own (scratch's FLOPs of {args.max_steps} steps)"


def lr_words(args, budget):
    """The learning-rate schedule in words."""
    warmup, start, min_lr = lr_corners(args, budget.steps)
    decay = f"held to {start:g}, then linear" if args.decay == 'wsd' else args.decay
    return (f"lr: warmup to {args.lr:g} over {warmup} steps, {decay} to {min_lr:g} at {budget.steps}" +
            (f", re-warmed over {args.rewarmup} steps after each growth" if args.rewarmup else ""))


def growth_words(old, new, op):
    """A growth between two stages: what changes, and where each new block comes from."""
    words = f"growth at clock {new['start']:g}: " + ', '.join(changes(old, new))
    if new['n_blocks'] > old['n_blocks']:
        src = depth_source(old['n_blocks'], new['n_blocks'], op)
        words += f" by {op} (new block <- old: {','.join('new' if j is None else str(j) for j in src)})"
    return words


def layer_words(args, cfg, stage):
    """Which block each executed layer runs, where that is not simply layer t -> block t."""
    sampling, layer_map = depth_sampling(args)
    if stage['path']:
        return (f"; a random path: layers 0 and {cfg.n_layer - 1} and {stage['path'] - 2} others drawn per "
                f"step")
    if sampling and stage['n_blocks'] < cfg.n_layer:
        blocks = map_layers(stage['n_blocks'], cfg.n_layer, layer_map)
        return f"; at depth {cfg.n_layer} layer t runs block {fmt(blocks)}"
    return ""


def plan_series(args, cfg, stages, budget):
    """(share of scratch's FLOPs, mean executed depth, learning rate) at each step of the clock."""
    means = [mean_depth(stage_depths(args, cfg, st)) for st in stages]
    series, flops, total = [], 0.0, args.max_steps * budget.scratch_step
    for position in range(budget.steps + 1):
        i = stage_of(position, stages)
        at = min(position, budget.steps - 1)
        # (--rewarmup counts optimizer steps; a unit of the FLOPs clock is scratch's step)
        since = (at - stages[i]['start']) * (budget.scratch_step / budget.step_flops[i] if budget.by_flops else 1)
        x = position / budget.steps if budget.by_flops else flops / total
        series.append((x, means[i], lr_at(at, args, budget, since if i else None)))
        flops += budget.step_flops[i]
    return series
