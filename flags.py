"""
The command line of grow.py and of the scripts that take its flags: the flags in four groups, parsing (with a
resumed run's flags merged from its checkpoint), every check of a value or a combination, and `to_argv`, the
command line that gives a set of flags. What the flags describe, the method table and the schedule, is in
schedule.py.
"""
import argparse
import importlib.util
import math
import os
import sys
from dataclasses import replace

import data
from data import InputError
from model import SIZES, config_for
from runtime import pick_device, read_checkpoint
from schedule import BASELINE, DIMS, METHODS, Budget, lr_at


# flags a resumed run may change; every other flag is the checkpoint's (changing it would change the run)
# (--lr too: after a divergence, lower it and resume from the last good checkpoint; README says so)
RESUMABLE = {'resume', 'out_dir', 'stop_at', 'device', 'compile', 'log_interval', 'eval_interval',
             'sample_tokens', 'export_hf', 'force', 'sample', 'prompt', 'lr', 'max_skips', 'plan'}


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
    a('--size', default='auto', choices=('auto',) + tuple(SIZES), help='auto: small on CUDA, nano on CPU')
    for name in ('n_layer', 'n_head', 'n_embd', 'd_ff', 'block_size', 'vocab_size'):
        a(f'--{name}', type=int, default=None, help='override the size')
    a('--dropout', type=float, default=0.0)
    a('--bias', type=int, default=1, choices=(0, 1))
    a('--pos', default=None, choices=('learned', 'rope'), help='positions: learned (an absolute table; '
      'GPT\'s default and the original BERT\'s) or rope (rotary on q and k, no table; RoFormer; BERT\'s '
      'default: it leaves the unigram plateau that a learned table keeps a small BERT on, see RESULTS.md)')
    a('--norm', default=None, choices=('pre', 'post'), help='LayerNorm before each sublayer (pre; GPT\'s '
      'default) or after it (post; the original BERT\'s, its default)')
    a('--scaling', default='standard', choices=('standard', 'completep'), help='completep (Dey et al. 2025, '
      'alpha = 1, with muP\'s width rules; the target is the base): residual branches x L / d for the depth d '
      'run, the hidden rate constant in depth; the readout x 1/m, the blocks\' matrices\' init variance and '
      'AdamW rate x 1/m (m: n_embd over the target\'s), AdamW\'s epsilon x L / (k m) for k blocks; '
      'attention keeps 1/sqrt(head size), not muP\'s 1/head size: a widening keeps the head size')
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
    a('--data', default=data.DEFAULT,
      help='a folder prepared by data.py (the default is prepared if missing)')
    a('--max_steps', type=int, default=1000, help='optimizer steps: the budget')
    a('--budget', default='steps', choices=('steps', 'flops'), help="steps: every method trains max_steps "
      "steps (the papers' protocol); flops: until it has spent what scratch spends in max_steps (equal "
      "compute)")
    a('--stage_clock', default='steps', choices=('steps', 'flops'), help="--budget flops: where stages start "
      "and the LR schedule runs: at fractions of the method's own steps, their number solved so that it spends "
      "scratch's FLOPs (steps, default: the papers' schedules are fractions of their steps), or at fractions "
      "of the FLOPs spent (flops: a cheap stage then takes more of the method's steps)")
    a('--batch_size', type=int, default=32, help='sequences per micro-batch')
    a('--grad_accum', type=int, default=1, help='micro-batches per optimizer step')
    a('--lr', type=float, default=None, help='peak learning rate (default 1e-3; BERT 5e-4: a post-LN BERT of '
      'width 128 stays on the unigram plateau at 1e-3 in some seeds, see RESULTS.md)')
    a('--min_lr', type=float, default=None, help='final learning rate (default lr/10)')
    a('--warmup', type=float, default=None, help='linear warmup: steps, or below 1 a share of the run\'s clock '
      '(default 0.05: 5%%)')
    a('--decay', default='cosine', choices=('cosine', 'linear', 'wsd'), help='after the warmup: cosine or '
      'linear decay to min_lr over the whole run, or wsd (warmup-stable-decay): the peak rate until the last '
      '--decay_frac of the run, then a linear decay to min_lr')
    a('--decay_frac', type=float, default=None, help='--decay wsd: the share of the run the decay takes '
      '(default 0.2: the last 20%%, which the one-layer method\'s growth at 80%% starts)')
    a('--weight_decay', type=float, default=0.1)
    a('--recipe', default=None, choices=tuple(RECIPES), help='a paper\'s training recipe: the flags it sets '
      'unless typed (bu: Bu\'s one-layer recipe, Muon, WSD with 2%% warmup and a 10%% decay to 0, weight decay '
      '0.01, no clipping (with --optimizer adamw add --grad_clip 1: RESULTS.md), onelayer\'s growth at 0.9)')
    a('--optimizer', default=None, choices=('adamw', 'muon'), help='GPT\'s default muon: Muon for the blocks\' '
      'matrices at --muon_lr, AdamW for the rest at --lr (nanochat\'s split); BERT\'s default adamw: all AdamW')
    a('--muon_lr', type=float, default=None, help='--optimizer muon: the matrices\' peak rate (default 0.02, '
      'nanochat\'s; nano 0.04, fitted; it follows --lr\'s schedule)')
    a('--beta2', type=float, default=0.95, help="AdamW's second-moment decay (0.95: nanoGPT's; Apollo's and "
      "StackBERT's official code use 0.999)")
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
    a('--curve', type=float_list, default=None, help='--compare --decay wsd: scratch also at these multiples of '
      '--max_steps (e.g. 0.5,2,4), one run branched into each decay, for each method\'s compute multiplier: '
      'the compute scratch needs for its loss over its own (README "Comparing methods")')
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
        ckpt, path = read_checkpoint(args.out_dir, mapped=True)  # (its flags: grow.py reads the rest)
        args = resumed(args, typed, ckpt, path)
    if args.size == 'auto':
        device = pick_device(args)
        args.size = 'small' if device == 'cuda' else 'nano'
        print(f"--size auto: {args.size} on {device}")
    check(args, typed)
    return args


def resumed(args, typed, ckpt, path):
    """The flags of a resumed run: the checkpoint's flags, and the RESUMABLE ones typed now; typing any other
    flag with another value is refused (a resumed run is the same run), except --max_steps where it `branches`."""
    saved = ckpt['args']
    if 'max_steps' in typed and args.max_steps != saved['max_steps']:
        branches(saved, args.max_steps, ckpt['run']['step'], path)  # (refused in one line unless it is one)
        typed, saved = typed - {'max_steps'}, dict(saved, max_steps=args.max_steps)
    for k in typed:
        if k not in RESUMABLE and saved.get(k) != getattr(args, k):
            raise InputError(f"--{k} {getattr(args, k)} differs from the checkpoint's {saved.get(k)} "
                             f"({path}); a resumed run keeps its flags except {', '.join(sorted(RESUMABLE))}")
    missing = [k for k in vars(args) if k not in saved]
    if missing:
        raise InputError(f"{path} was written by an earlier version of grow.py (its flags lack --{missing[0]}); "
                         f"start the run again")
    now = {k: getattr(args, k) for k in typed if k in RESUMABLE}
    return argparse.Namespace(**{**saved, 'stop_at': None, 'out_dir': args.out_dir, **now})


def branches(saved, max_steps, step, path):
    """--resume with another --max_steps: a WSD scratch run branched into a decay of its own (compare's
    --curve: scratch's loss at several budgets from one stable run). Allowed where every step taken had the
    rate it has under the new length, so that the run is exactly the one started with it; else InputError."""
    old, new = argparse.Namespace(**saved), argparse.Namespace(**dict(saved, max_steps=max_steps))
    clock = lambda n: Budget(n, False, 1.0, [0], [1.0])  # noqa: E731 (scratch's clock: its steps)
    if saved['method'] != BASELINE or saved['decay'] != 'wsd' or not 0 < max_steps or any(
            lr_at(s, old, clock(old.max_steps)) != lr_at(s, new, clock(max_steps)) for s in range(step)):
        raise InputError(f"--max_steps {max_steps} differs from the checkpoint's {saved['max_steps']} ({path}): "
                         f"a resumed run changes its length only as a --decay wsd scratch run whose {step} steps "
                         f"all had the new length's rates (its stable phase, the warmup in steps)")


# --recipe: (the flags a paper's recipe sets unless typed, those it sets for one method)
RECIPES = {
    # zero/one-layer progressive training (Bu, ICML 2026, arXiv 2511.04981) as its summaries give it: Muon, WSD
    # with 2% warmup and a 10% decay to 0, weight decay 0.01, no clipping, one growth at 0.9 of the run (where
    # the decay starts). Not confirmed from the paper's text, so ours: AdamW (not normalised SGD) for the
    # non-matrix parameters at --lr, Muon at nanochat's 0.02, and the standard scaling unless --scaling
    # completep is typed (the paper keeps its rates across the jump by a spectral scaling of its own)
    'bu': (dict(optimizer='muon', decay='wsd', warmup=0.02, decay_frac=0.1, min_lr=0.0, weight_decay=0.01,
                grad_clip=0.0), {'onelayer': dict(stage_at=[0.9])}),
}


def recipe(args, method):
    """{flag: value} that --recipe sets for `method` unless typed (none without a recipe)."""
    common, own = RECIPES[args.recipe] if args.recipe else ({}, {})
    return {**common, **own.get(method, {})}


def check(args, typed):
    """Every flag's value and every combination, checked before anything trains (the schedule's own checks
    are in `schedule.stages_for`)."""
    # the defaults: BERT rotary positions and a lower rate (why: RESULTS.md, "A BERT that learns on a CPU"); GPT
    # nano, the CPU default: AdamW's rate fitted to it (RESULTS.md, "GPT at equal compute on the papers' stage
    # clock"), and kept under Muon (RESULTS.md, "The default run")
    if args.lr is None:
        args.lr = 5e-4 if args.model == 'bert' else 8e-3 if args.size == 'nano' else 1e-3
    args.pos = args.pos or ('rope' if args.model == 'bert' else 'learned')
    if not args.resume:  # (a resumed run's flags hold its recipe already)
        for k, v in recipe(args, args.method).items():
            setattr(args, k, getattr(args, k) if k in typed else v)
    # GPT trains its matrices with Muon, as nanochat and modded-nanogpt do (why: RESULTS.md, "The default run");
    # BERT keeps AdamW, which its tables were measured with (Muon on a post-LN BERT is unmeasured)
    args.optimizer = args.optimizer or ('adamw' if args.model == 'bert' else 'muon')
    if args.optimizer == 'muon':  # (nanochat's 0.02; nano's fitted, RESULTS.md "The default run")
        args.muon_lr = (0.04 if args.size == 'nano' else 0.02) if args.muon_lr is None else args.muon_lr
    elif args.muon_lr is not None:
        raise InputError("--muon_lr is the rate of --optimizer muon: add --optimizer muon, or drop --muon_lr")
    check_numbers(args)
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
    if args.scaling == 'completep' and METHODS[args.method].draws == 'path':
        raise InputError(f"--scaling completep scales branches by depth; with --method {args.method} (RaPTr's "
                         f"paths) its own path scaling would compound it")
    if args.curve is not None and not (args.compare and args.decay == 'wsd'):
        raise InputError("--curve trains scratch at other budgets for a comparison's compute multiplier, its "
                         "decays branched from one WSD run: add --compare METHODS and --decay wsd")
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
    if args.length_op == 'pool' and args.pos != 'learned':
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
    'muon_lr': (lambda v, a: v is None or v > 0, 'a positive number, e.g. 0.02'),
    'beta2': (lambda v, a: 0 <= v < 1, 'a number in [0, 1), e.g. 0.95 or 0.999'),
    'mask_rate': (lambda v, a: 0 < v < 1, 'a number in (0, 1)'),
    'depth_noise': (lambda v, a: v is None or v >= 0, "0 or positive (a share of each tensor's std)"),
    'warmup': (lambda v, a: v is None or 0 <= v < 1 or v == int(v) and v < a.max_steps,
               'a share of the clock below 1, or whole steps below --max_steps'),
    'rewarmup': (lambda v, a: v >= 0, '0 or a positive number of steps'),
    'sample_tokens': (lambda v, a: v >= 0, '0 (no sample) or a positive number of tokens'),
    'decay_frac': (lambda v, a: v is None or 0 < v <= 1, 'a number in (0, 1], e.g. 0.2'),
    'seed': (lambda v, a: 0 <= v < 2 ** 31, 'an integer in [0, 2**31)'),
    'curve': (lambda v, a: v is None or v and all(math.isfinite(m) and round(m * a.max_steps) > 0 for m in v),
              'positive multiples of --max_steps, e.g. 0.5,2,4'),
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


def model_config(args, meta):
    """The target Config from --size and its overrides, checked against the data."""
    need = data.model_vocab(meta['vocab_size'])
    if args.vocab_size is not None and args.vocab_size < meta['vocab_size'] + 1:
        raise InputError(f"{args.data}/meta.json: vocabulary of {meta['vocab_size']} tokens (+[MASK]) "
                         f"exceeds --vocab_size {args.vocab_size}; use at least {meta['vocab_size'] + 1} (or "
                         f"omit it: {need})")
    cfg = config_for(args.model, args.size, args.vocab_size or need, n_layer=args.n_layer, n_head=args.n_head,
                     n_embd=args.n_embd, d_ff=args.d_ff, block_size=args.block_size, dropout=args.dropout,
                     bias=bool(args.bias), pos=args.pos, pre_ln=None if args.norm is None else args.norm == 'pre')
    if args.scaling == 'completep':  # (the base: the target, which then runs with every multiplier 1)
        cfg = replace(cfg, base_depth=cfg.n_layer, base_width=cfg.n_embd)
    for k in ('n_layer', 'n_head', 'n_embd', 'd_ff', 'block_size'):
        if getattr(cfg, k) <= 0:
            raise InputError(f"--{k} must be a positive integer, got {getattr(cfg, k)}")
    if cfg.n_embd % cfg.n_head:
        raise InputError(f"--n_embd {cfg.n_embd} is not divisible by --n_head {cfg.n_head}")
    return cfg
