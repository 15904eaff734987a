"""
The comparison report of `python grow.py --compare ...`: how much compute each method saves over scratch,
and whether the answer survives a second seed.

Reads the runs' log.jsonl files under one folder (out_dir/<method>/seed<S>/, one run per method and seed),
computes the acceleration ratio of bert2BERT, LiGO and Apollo (1 - F_method(L*) / F_scratch(L*), with L*
the final loss of scratch *of the same seed*), and over the seeds: means and standard deviations, the paired
difference to scratch with its 95% t-interval and a verdict (as Kaddour et al. 2023, "No Train No Gain",
ask of such claims). Writes compare.json, compare.csv and, when matplotlib is installed, the mean curves with
their min..max band against FLOPs and time. Nothing here trains: `python grow.py --compare OUT_DIR` re-prints.

`python compare.py OUT_A OUT_B ...` reads several comparisons of one setting at different budgets (a budget
sweep) and reports each method's FLOPs saved against scratch's tokens per parameter, with its plot.
"""
import argparse
import csv
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time

import torch

import data
import flags
import grow
import runtime
import schedule
from data import InputError
from flags import RESUMABLE, get_parser, model_config, to_argv
from model import Config, Transformer, num_params
from schedule import BASELINE, DRAW_FLAGS, GROWTH_FLAGS, METHODS, stages_for

# two-sided 95% quantiles of Student's t by degrees of freedom, 1..30 (`t95` goes beyond)
T95 = [None, 12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
       2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
       2.045, 2.042]
QUARTERS = (25, 50, 75, 100)


# ----------------------------------------------------------------------------- reading runs

def read_runs(out_dir, methods=None):
    """{method: {seed: run}}: out_dir/<method>/seed<S>/log.jsonl. Scratch comes first; every method needs
    scratch's seeds."""
    found = {}
    for m in methods or sorted(os.listdir(out_dir), key=lambda m: (m != BASELINE, m)):
        folder = os.path.join(out_dir, m)
        if os.path.isdir(folder):
            seeds = sorted(int(d[4:]) for d in os.listdir(folder) if d.startswith('seed') and d[4:].isdigit()
                           and os.path.isfile(os.path.join(folder, d, 'log.jsonl')))
            if seeds:
                found[m] = {s: runtime.read_log(os.path.join(folder, f'seed{s}')) for s in seeds}
    if BASELINE not in found:
        raise ValueError(f"{out_dir} holds no scratch run: it defines the target loss L*")
    for m, runs in found.items():
        if set(runs) != set(found[BASELINE]):
            raise ValueError(f"{m} has seeds {schedule.fmt(runs)} but scratch has "
                             f"{schedule.fmt(found[BASELINE])}: "
                             f"every method needs the same seeds (each is paired with scratch's)")
    return found


def read_curves(out_dir):
    """{seed: [(FLOPs, final loss)]} of scratch's finished runs at other budgets (--curve), from
    out_dir/curve/seed<S>/steps<N>; {} without a curve."""
    curves, root = {}, os.path.join(out_dir, 'curve')
    for seed_dir in sorted(os.listdir(root)) if os.path.isdir(root) else []:
        for steps_dir in os.listdir(os.path.join(root, seed_dir)):
            folder = os.path.join(root, seed_dir, steps_dir)
            evals = runtime.read_log(folder)['evals']
            if evals and f"steps{evals[-1]['step']}" == steps_dir:  # (finished)
                curves.setdefault(int(seed_dir[4:]), []).append((evals[-1]['flops'], evals[-1]['val_loss']))
    return curves


# ----------------------------------------------------------------------------- one run against scratch

def first_crossing(xs, losses, target):
    """The x (FLOPs or seconds) where a curve first reaches `target`, linearly interpolated between the two
    evaluations around the crossing; xs[0] if the first evaluation already reaches it; None if it never does.
    Non-monotone curves count at their first crossing, so a later bump does not undo a reached target."""
    for i, (x, loss) in enumerate(zip(xs, losses)):
        if loss <= target:
            if i == 0:
                return x
            x0, l0 = xs[i - 1], losses[i - 1]
            return x0 + (x - x0) * (l0 - target) / (l0 - loss)
    return None


def loss_at(xs, losses, x):
    """The loss at x, linearly interpolated; None beyond the curve."""
    for i in range(1, len(xs)):
        if xs[i - 1] <= x <= xs[i]:
            t = (x - xs[i - 1]) / (xs[i] - xs[i - 1]) if xs[i] > xs[i - 1] else 1.0
            return losses[i - 1] + t * (losses[i] - losses[i - 1])
    return losses[0] if xs and x == xs[0] else None


def curve(run, key):
    return [e[key] for e in run['evals']], [e['val_loss'] for e in run['evals']]


def against_scratch(method, seed, run, scratch, scratch_curve=None):
    """One row: a run measured against the scratch run of the same seed (its final loss is L*), and with
    `scratch_curve` of that seed (--curve: [(FLOPs, final loss)] at several budgets) its compute multiplier."""
    target = scratch['evals'][-1]['val_loss']
    f, t = first_crossing(*curve(run, 'flops'), target), first_crossing(*curve(run, 'time'), target)
    f_s = first_crossing(*curve(scratch, 'flops'), target)
    t_s = first_crossing(*curve(scratch, 'time'), target)
    weights = [st['micro_batches'] for st in run['stages']]
    row = dict(method=method, seed=seed, final_val_loss=run['evals'][-1]['val_loss'], target_loss=target,
               diff_to_scratch=run['evals'][-1]['val_loss'] - target, flops_total=run['evals'][-1]['flops'],
               flops_to_target=f, time_to_target=t, flops_saved=None if f is None else 1 - f / f_s,
               time_saved=None if t is None or not t_s else 1 - t / t_s,
               mean_depth=sum(st['mean_depth'] * n for st, n in zip(run['stages'], weights)) / sum(weights)
               if sum(weights) else None)
    for q in QUARTERS:  # equal-compute checkpoints: the loss at a share of scratch's FLOPs
        row[f'loss_at_{q}pct'] = loss_at(*curve(run, 'flops'), q / 100 * scratch['evals'][-1]['flops'])
    if scratch_curve:
        needed, row['multiplier_bound'] = scratch_compute(scratch_curve, row['final_val_loss'])
        row['compute_multiplier'] = needed / row['flops_total']
    return row


def scratch_compute(points, loss):
    """C_scratch(loss): the FLOPs scratch needs to reach `loss`, from its (FLOPs, final loss) at several
    budgets (one WSD run branched into each decay: --curve), interpolated linearly in log compute between the
    two budgets around it (no power law is fitted: at 4-5 budgets an interpolation assumes least). Returns
    (FLOPs, bound): '<' where `loss` is above every budget's (less than the smallest would do), '>' where it is
    below every one's (more than the largest), '' between."""
    points = sorted(points)
    xs, losses = [math.log(c) for c, _ in points], [loss for _, loss in points]
    if loss > losses[0]:
        return points[0][0], '<'
    x = first_crossing(xs, losses, loss)
    return (points[-1][0], '>') if x is None else (math.exp(x), '')


# ----------------------------------------------------------------------------- over the seeds

def mean_sd(values):
    """(mean, sample standard deviation) of the values that are not None; (None, None) if there are none."""
    v = [x for x in values if x is not None]
    if not v:
        return None, None
    m = sum(v) / len(v)
    return m, (math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1)) if len(v) > 1 else None)


def t95(df):
    """The two-sided 95% quantile of Student's t with df degrees of freedom: the table up to 30, beyond it the
    Cornish-Fisher expansion around the normal's 1.96 (Abramowitz and Stegun 26.7.5; within 1e-4 there)."""
    if df < len(T95):
        return T95[df]
    z = 1.959964
    return (z + (z ** 3 + z) / (4 * df) + (5 * z ** 5 + 16 * z ** 3 + 3 * z) / (96 * df ** 2) +
            (3 * z ** 7 + 19 * z ** 5 + 17 * z ** 3 - 15 * z) / (384 * df ** 3))


def paired_interval(diffs):
    """(mean, half-width of its 95% t-interval, verdict) of paired differences method - scratch (same seed).
    Verdict: 'better' (the interval is below 0), 'worse' (above 0), 'within noise' (it holds 0), or
    'one seed' (no interval from one pair)."""
    m, sd = mean_sd(diffs)
    if sd is None:
        return m, None, 'one seed'
    half = t95(len(diffs) - 1) * sd / math.sqrt(len(diffs))
    if half == 0 and m == 0:
        return m, half, 'within noise'
    return m, half, 'better' if m + half < 0 else 'worse' if m - half > 0 else 'within noise'


def summarize(method, rows):
    """The row of the table for one method, over its per-seed rows."""
    n = len(rows)
    final, final_sd = mean_sd([r['final_val_loss'] for r in rows])
    diff, half, verdict = paired_interval([r['diff_to_scratch'] for r in rows])
    reached = [r for r in rows if r['flops_saved'] is not None]
    out = dict(method=method, seeds=n, final_val_loss=final, final_val_loss_sd=final_sd, diff_to_scratch=diff,
               diff_ci95=half, verdict=verdict if method != BASELINE else '-', reached=len(reached))
    for key in ('flops_saved', 'time_saved', 'mean_depth', 'flops_total'):
        out[key], out[key + '_sd'] = mean_sd([r[key] for r in rows])
    # a saving is a mean only where every seed has one: a seed that never reached L* has none, and a mean of
    # the others would rise because a seed failed; the table then shows each seed's value instead
    for key in ('flops_saved', 'time_saved'):
        out[key + '_seeds'] = [r[key] for r in rows]
        if None in out[key + '_seeds']:
            out[key], out[key + '_sd'] = None, None
    for q in QUARTERS:
        values = [r[f'loss_at_{q}pct'] for r in rows]
        out[f'loss_at_{q}pct'] = mean_sd(values)[0] if None not in values else None
    if any('compute_multiplier' in r for r in rows):  # (--curve) a mean and its interval where all are exact
        out['compute_multiplier_seeds'] = [(r.get('multiplier_bound'), r.get('compute_multiplier'))
                                           for r in rows]
        exact = all(r.get('multiplier_bound') == '' for r in rows)
        mean, sd = mean_sd([r.get('compute_multiplier') for r in rows])
        out['compute_multiplier'] = mean if exact else None
        out['compute_multiplier_ci95'] = t95(n - 1) * sd / math.sqrt(n) if exact and sd is not None else None
    return out


def report(out_dir, methods=None):
    """(summary rows, per-seed rows, runs) of the comparison in out_dir; `scratch` defines each seed's L*."""
    runs, curves = read_runs(out_dir, methods), read_curves(out_dir)
    for s, scratch in runs[BASELINE].items():  # (a curve also holds the comparison's own scratch run)
        curves[s] = curves[s] + [(scratch['evals'][-1]['flops'], scratch['evals'][-1]['val_loss'])] \
            if s in curves else None
    per_seed = [against_scratch(m, s, run, runs[BASELINE][s], curves[s]) for m in runs
                for s, run in runs[m].items()]
    summary = [summarize(m, [r for r in per_seed if r['method'] == m]) for m in runs]
    return summary, per_seed, runs


# ----------------------------------------------------------------------------- output

def write(summary, per_seed, out_dir, jobs=None):
    """compare.json (summary and per-seed rows), compare.csv (both, `seed` = 'mean' on summary rows),
    compare.md (the summary as a Markdown table, for a README or a note), and the table as text (returned)."""
    with open(os.path.join(out_dir, 'compare.json'), 'w') as f:
        json.dump(dict(summary=summary, runs=per_seed, jobs=jobs), f, indent=1)
    with open(os.path.join(out_dir, 'compare.md'), 'w') as f:
        f.write(markdown(summary) + '\n')
    rows = [dict(r, seed='mean') for r in summary] + per_seed
    fields = list(dict.fromkeys(k for r in rows for k in r))
    with open(os.path.join(out_dir, 'compare.csv'), 'w', newline='') as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
    return table(summary, per_seed, jobs)


def table(summary, per_seed, jobs):
    """The report as printed: scratch's final losses (each seed's L*), the Markdown table, what it means."""
    targets = [r['target_loss'] for r in per_seed if r['method'] == BASELINE]
    spread = f" (sd {mean_sd(targets)[1]:.4f})" if len(targets) > 1 else ""
    multiplier = ("\nCompute multiplier: the FLOPs scratch needs for the method's final loss (its budgets of "
                  "--curve, interpolated in log FLOPs) over the method's FLOPs; mean +- 95% half-width, '>' / "
                  "'<' a bound." if 'compute_multiplier_seeds' in summary[0] else "")
    return ("target L* = scratch's final validation loss of the same seed: " +
            ', '.join(f"{t:.4f}" for t in targets) + spread + '\n' + markdown(summary) +
            "\nFLOPs and time saved: mean +- sd where every seed reached L*, else each seed's ('-': never). Time "
            "columns compare only runs made with the same --jobs" + (f" (these: --jobs {jobs})." if jobs else ".")
            + multiplier)


def markdown(summary):
    """The summary as a Markdown table: means +- sd over the seeds, the paired difference with its 95%
    interval."""
    head = ['method', 'final val loss', 'vs scratch (95% CI)', 'verdict', 'reached L*', 'FLOPs saved',
            'time saved', 'mean depth', 'loss at 25 / 50 / 75% of scratch\'s FLOPs']
    with_curve = 'compute_multiplier_seeds' in summary[0]
    head += ['compute multiplier (95% CI)'] * with_curve
    lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
    for r in summary:
        vs = '-' if r['method'] == BASELINE else pm(r['diff_to_scratch'], r['diff_ci95'], '+.4f')
        quarters = ' / '.join(pm(r[f'loss_at_{q}pct'], None, '.3f') for q in QUARTERS[:3])
        cells = [r['method'], pm(r['final_val_loss'], r['final_val_loss_sd'], '.4f'), vs, r['verdict'],
                 f"{r['reached']}/{r['seeds']}", saved(r, 'flops_saved'), saved(r, 'time_saved'),
                 pm(r['mean_depth'], None, '.2f'), quarters] + ([multiplier(r)] if with_curve else [])
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def saved(r, key):
    """A saving's cell: mean +- sd where every seed reached L*, else each seed's value ('-': not reached)."""
    if r[key] is not None or not any(v is not None for v in r[key + '_seeds']):
        return pm(r[key], r[key + '_sd'], '.1%')
    return ' / '.join(pm(v, None, '.1%') for v in r[key + '_seeds'])


def multiplier(r):
    """The compute multiplier's cell: mean +- 95% half-width where every seed's is exact, else each seed's,
    '>' a lower bound (below the longest scratch's loss), '<' an upper bound, '-' a seed without a curve."""
    if r['compute_multiplier'] is not None:
        return pm(r['compute_multiplier'], r['compute_multiplier_ci95'], '.2f') + 'x'
    return ' / '.join('-' if value is None else f"{bound}{value:.2f}x" for bound, value in
                      r['compute_multiplier_seeds'])


def pm(value, sd, spec):
    """'value +- sd' in the given format ('-' for no value, the value alone without an sd)."""
    if value is None:
        return '-'
    return format(value, spec) + ('' if sd is None else ' +- ' + format(sd, spec.lstrip('+')))


def plot(runs, out_dir):
    """The mean validation loss over the seeds against training FLOPs and against wall time, with the min..max
    band, growths of the first seed as dots; a PNG each. Returns the files written, or None with a hint when
    matplotlib is missing (it is optional)."""
    plt = runtime.pyplot()
    if plt is None:
        return None
    paths = []
    # the first evaluations (loss ~ ln V) would squash the part that matters: start at scratch's 10% mark
    scratch = list(runs[BASELINE].values())
    top = max(loss_at(*curve(r, 'flops'), 0.1 * r['evals'][-1]['flops']) for r in scratch)
    bottom = min(e['val_loss'] for seeds in runs.values() for r in seeds.values() for e in r['evals'])
    for key, label in (('flops', 'training FLOPs'), ('time', 'wall time (s)')):
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for m, seeds in runs.items():
            xs, mean, low, high = band([curve(r, key) for r in seeds.values()])
            line, = ax.plot(xs, mean, label=f"{m} ({len(seeds)} seed{'s' * (len(seeds) > 1)})", lw=1.6,
                            ls='--' if m == BASELINE else '-')
            if len(seeds) > 1:
                ax.fill_between(xs, low, high, color=line.get_color(), alpha=0.2, lw=0)
            first = next(iter(seeds.values()))
            for g in first['growths']:  # a growth sits between two evaluations: mark it on the mean curve
                gy = loss_at(xs, mean, g[key])
                if gy is not None:
                    ax.plot([g[key]], [gy], marker='o', ms=4, color=line.get_color())
        ax.set_ylim(bottom - 0.05 * (top - bottom), top)
        ax.set_xlabel(label)
        ax.set_ylabel('validation loss')
        ax.set_title(f'validation loss vs {label} (mean, min..max band; dots: growth)')
        ax.grid(alpha=0.3)
        ax.legend()
        path = os.path.join(out_dir, f'compare_{key}.png')
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths


def band(curves, points=200):
    """Curves (xs, losses) of the seeds on one grid, from the latest first x to the earliest last x: the
    grid, the mean and the min and max at each point."""
    lo, hi = max(xs[0] for xs, _ in curves), min(xs[-1] for xs, _ in curves)
    # the last point is hi itself: lo + (hi - lo) can round one ulp past hi, beyond the shortest curve
    grid = [lo + (hi - lo) * i / (points - 1) for i in range(points - 1)] + [hi] if hi > lo else [lo]
    at = [[loss_at(xs, ys, x) for xs, ys in curves] for x in grid]
    # a run still in progress can end before another seed's first evaluation (on the time axis): where the
    # curves do not overlap, the band is over the seeds that have a loss there
    at = [[y for y in v if y is not None] for v in at]
    return grid, [sum(v) / len(v) for v in at], [min(v) for v in at], [max(v) for v in at]


# ----------------------------------------------------------------------------- --plan

def show_plan(args):
    """--plan: each method's schedule in words (`schedule.plan`), the methods of --compare side by side, with
    matplotlib their mean executed depth and learning rate against the FLOPs clock in out_dir/plan.png.
    Trains nothing. Returns {method: (lines, series)}."""
    methods = args.compare.split(',') if args.compare else [args.method]
    if any(m not in METHODS for m in methods):
        raise InputError(f"--plan --compare {args.compare}: give methods among {', '.join(METHODS)}")
    meta = data.load(args.data)[0]
    plans = {}
    for m in methods:
        sub = method_args(args, m, args.seed) if args.compare else args
        cfg = model_config(sub, meta)
        plans[m] = schedule.plan(sub, cfg), plan_series(sub, cfg)
        print('\n'.join(plans[m][0]) + '\n')
    plot_plans({m: series for m, (_, series) in plans.items()}, os.path.join(args.out_dir, 'plan.png'))
    return plans


def plan_series(args, cfg):
    """(share of scratch's FLOPs, mean executed depth, learning rate) at each step of the schedule's clock."""
    stages = stages_for(args, cfg)[0]
    budget = schedule.make_budget(args, cfg, stages)
    means = [schedule.mean_depth(schedule.stage_depths(args, cfg, st)) for st in stages]
    series, flops, total = [], 0.0, args.max_steps * budget.scratch_step
    for position in range(budget.steps + 1):
        i = schedule.stage_of(position, stages)
        at = min(position, budget.steps - 1)
        # (--rewarmup counts optimizer steps; a unit of the FLOPs clock is scratch's step)
        since = (at - stages[i].start) * (budget.scratch_step / budget.step_flops[i] if budget.by_flops else 1)
        x = position / budget.steps if budget.by_flops else flops / total
        series.append((x, means[i], schedule.lr_at(at, args, budget, since if i else None)))
        flops += budget.step_flops[i]
    return series


def plot_plans(plans, path):
    """Mean executed depth (top) and learning rate (bottom) against the share of scratch's FLOPs spent, one
    line per method. Returns the path, or None where matplotlib is missing."""
    plt = runtime.pyplot()
    if plt is None:
        return None
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 5.5), sharex=True)
    for m, series in plans.items():
        xs, depths, lrs = zip(*series)
        line, = top.step(xs, depths, where='post', label=m, lw=1.6, ls='--' if m == BASELINE else '-')
        bottom.plot(xs, lrs, color=line.get_color(), lw=1.4, ls='--' if m == BASELINE else '-')
    top.set_ylabel('mean executed depth')
    bottom.set_ylabel('learning rate')
    bottom.set_xlabel("training FLOPs, as a share of scratch's")
    top.set_title('the schedules before training (--plan)')
    for ax in (top, bottom):
        ax.grid(alpha=0.3)
    top.legend()
    os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"wrote {path}")
    return path


# ----------------------------------------------------------------------------- a budget sweep

def tokens_per_param(out_dir):
    """Scratch's training tokens over the target's parameter count (read from its checkpoint's config): the
    budget of a comparison in the one unit that carries across model sizes (Chinchilla's ~20 is
    compute-optimal; the papers' growth runs train for hundreds or thousands)."""
    folder = os.path.join(out_dir, BASELINE)
    seeds = sorted(d for d in os.listdir(folder) if d.startswith('seed')) if os.path.isdir(folder) else []
    folder = os.path.join(folder, seeds[0]) if seeds else folder
    cfg = torch.load(os.path.join(folder, 'ckpt.pt'), map_location='cpu', weights_only=False)['config']
    with torch.device('meta'):  # the size without allocating it
        n = num_params(Transformer(Config(**cfg)))
    return runtime.read_log(folder)['evals'][-1]['tokens'] / n


def sweep_methods(sweep):
    """The growth methods of a sweep, in the order of their first appearance."""
    return list(dict.fromkeys(r['method'] for _, rows in sweep for r in rows if r['method'] != BASELINE))


def sweep_table(sweep):
    """FLOPs saved (mean +- sd where every seed reached L*, else each seed's; with k/N) per method and budget,
    as Markdown."""
    methods = sweep_methods(sweep)
    lines = ['| method | ' + ' | '.join(f"{tpp:.1f} tokens/param" for tpp, _ in sweep) + ' |',
             '|' + '---|' * (len(sweep) + 1)]
    for m in methods:
        cells = []
        for _, rows in sweep:
            r = next((r for r in rows if r['method'] == m), None)
            cells.append('-' if r is None else f"{saved(r, 'flops_saved')} ({r['reached']}/{r['seeds']}, "
                                               f"{r['verdict']})")
        lines.append(f'| {m} | ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def sweep_plot(sweep, path):
    """FLOPs saved against tokens per parameter (log scale), a line per method through the budgets where every
    seed reached L* (error bars: the sd), hollow dots for each seed that reached where not all did (labelled
    k/N), an x at 0 where none did; None (with a hint) without matplotlib."""
    plt = runtime.pyplot()
    if plt is None:
        return None
    fig, ax = plt.subplots(figsize=(7, 4.5))
    methods = sweep_methods(sweep)
    for i, m in enumerate(methods):
        shift = 1 + 0.03 * (i - (len(methods) - 1) / 2)  # side by side, so that the error bars do not hide
        rows = [(tpp * shift, r) for tpp, rows in sweep for r in rows if r['method'] == m]
        every = [(x, r) for x, r in rows if r['flops_saved'] is not None]
        bars = ax.errorbar([x for x, _ in every], [100 * r['flops_saved'] for _, r in every], marker='o',
                           yerr=[100 * (r['flops_saved_sd'] or 0) for _, r in every], capsize=3, label=m)
        color = bars[0].get_color()
        for x, r in rows:
            some = [100 * v for v in r['flops_saved_seeds'] if v is not None]
            if r['flops_saved'] is None:  # some seeds or none: each seed's saving, or an x at 0
                ax.plot([x] * len(some) or [x], some or [0], 'o' if some else 'x', ms=6 if some else 8,
                        mfc='none', color=color)
                ax.annotate(f"{r['reached']}/{r['seeds']}", (x, max(some or [0])), textcoords='offset points',
                            xytext=(4, 4), fontsize=8, color=color)
    ax.axhline(0, color='grey', lw=0.8)
    ax.set_xscale('log')
    ax.set_xticks([tpp for tpp, _ in sweep], [f"{tpp:.3g}" for tpp, _ in sweep])
    ax.minorticks_off()
    ax.set_xlabel("tokens per parameter (scratch's budget)")
    ax.set_ylabel("FLOPs saved to reach scratch's final loss (%)")
    ax.set_title('FLOPs saved vs budget (mean +- sd where every seed reached L*; hollow: k/N seeds; x: none)',
                 fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ----------------------------------------------------------------------------- training a comparison

def compare_methods(args, request=None):
    """--compare: every method with the same target, data, evaluation batches, budget and LR schedule shape,
    for --seeds seeds (seed, seed+1, ...), each run in out_dir/<method>/seed<S>, up to --jobs at once; then
    the table of compare.py and its plots. A run already in its folder with the same flags is resumed (a
    finished one is only evaluated again), so an interrupted comparison continues where it stopped."""
    if os.path.isdir(args.compare):  # a finished comparison: report again, train nothing
        out_dir, methods, jobs = args.compare, None, previous_jobs(args.compare)
    else:
        runs = comparison_runs(args)
        if args.jobs == 1:
            for sub in runs:
                print(f"=== {sub.method}, seed {sub.seed} -> {sub.out_dir}")
                grow.train(sub, request)
        else:
            run_in_parallel(runs, args, request or runtime.StopRequest())
        if args.curve:
            train_curve(args)
        out_dir, methods, jobs = args.out_dir, list(dict.fromkeys(sub.method for sub in runs)), args.jobs
    try:
        summary, per_seed, curves = report(out_dir, methods)
    except (OSError, ValueError, KeyError) as e:
        raise InputError(f"--compare {out_dir}: not a comparison folder ({e})")
    print(write(summary, per_seed, out_dir, jobs))
    plot(curves, out_dir)
    return summary


def train_curve(args):
    """--curve: scratch's final loss at other budgets, for the compute multiplier. For each seed, one --decay
    wsd scratch run of the longest budget, stopped in its stable phase where each shorter budget's decay
    starts, and a copy resumed into that decay (`flags.branches`: exactly the run of that budget). The warmup
    is the comparison's scratch's, in steps, for all. In out_dir/curve/seed<S>/steps<N>, one after another."""
    lengths = sorted({round(m * args.max_steps) for m in args.curve} - {args.max_steps})
    for seed in range(args.seed, args.seed + args.seeds):
        sub = method_args(args, BASELINE, seed)
        folder = lambda n: os.path.join(args.out_dir, 'curve', f'seed{seed}', f'steps{n}')  # noqa: E731
        warmup = schedule.lr_corners(sub, sub.max_steps)[0]  # (in steps: the same for every budget)
        longest = argparse.Namespace(**{**vars(sub), 'max_steps': lengths[-1], 'out_dir': folder(lengths[-1]),
                                        'warmup': warmup, 'sample_tokens': 0})
        for n in [n for n in lengths[:-1] if not finished(folder(n), n)] + [None]:
            if n is None or not os.path.exists(os.path.join(folder(n), 'ckpt.pt')):  # (else: in its decay)
                stop = None if n is None else int(schedule.lr_corners(longest, n)[1])  # (its last stable step)
                at = runtime.read_checkpoint(longest.out_dir, mapped=True)[0]['run']['step'] \
                    if os.path.exists(os.path.join(longest.out_dir, 'ckpt.pt')) else None
                if n and (stop < 1 or at is not None and at > stop):
                    where = "too early" if stop < 1 else f"and it is at {at}: delete it"
                    raise InputError(f"--curve: the {n}-step run branches from {longest.out_dir} at {stop}, "
                                     f"{where}")
                print(f"=== scratch, seed {seed}: {lengths[-1]} steps" + (f", to step {stop}" if n else ""))
                grow.main((to_argv(longest) if at is None else ['--resume', '--out_dir', longest.out_dir]) +
                          (['--stop_at', str(stop)] if n else []))
                if n:
                    shutil.copytree(longest.out_dir, folder(n), dirs_exist_ok=True)
            if n:
                print(f"=== scratch, seed {seed}: the decay of {n} steps")
                grow.main(['--resume', '--out_dir', folder(n), '--max_steps', str(n)])


def finished(folder, steps):
    """Whether the run in `folder` has logged its evaluation at `steps` (a finished run)."""
    return any(e['step'] == steps for e in runtime.read_log(folder)['evals'])


def method_args(args, m, seed):
    """The flags of method m's run of a comparison (seed `seed`, in out_dir/<m>/seed<S>): the comparison's,
    less what does not apply to m."""
    sub = argparse.Namespace(**{**vars(args), 'method': m, 'seed': seed, 'compare': None, 'seeds': 1, 'jobs': 1,
                                'curve': None, 'out_dir': os.path.join(args.out_dir, m, f'seed{seed}')})
    if args.wandb:  # one group per comparison, one run per method and seed (named by `runtime.start_wandb`)
        sub.wandb_run = None
        sub.wandb_group = args.wandb_group or os.path.basename(os.path.abspath(args.out_dir))
    for k, v in flags.recipe(args, m).items():  # (--recipe's flags of m's own, e.g. onelayer's growth at 0.9)
        setattr(sub, k, v if getattr(sub, k) is None else getattr(sub, k))
    if m == BASELINE:  # flags that shape growth do not apply to the baseline, and its run is the same under
        for k in GROWTH_FLAGS:  # both budgets (so one scratch run serves both protocols)
            setattr(sub, k, None)
        sub.budget, sub.stage_clock = 'steps', 'steps'
    for draws, names in DRAW_FLAGS.items():  # (what another method draws per step does not apply)
        for k in names if METHODS[m].draws != draws else ():
            setattr(sub, k, None)
    return sub


def comparison_runs(args):
    """The runs of a comparison, seed by seed (a partial comparison is already paired), every flag checked
    before anything trains. A folder that holds a run with other flags is refused; one with the same is
    resumed."""
    methods = args.compare.split(',')
    if any(m not in METHODS for m in methods) or BASELINE not in methods or len(set(methods)) < len(methods):
        raise InputError(f"--compare {args.compare}: give distinct methods among {', '.join(METHODS)}, "
                         f"scratch included (its final loss is the target), or an existing folder")
    if args.resume or args.stop_at:
        raise InputError("--compare runs whole runs (and resumes its own): --resume and --stop_at apply to "
                         "single runs")
    defaults, runs = get_parser(), []
    for seed in range(args.seed, args.seed + args.seeds):
        for m in [BASELINE] + [m for m in methods if m != BASELINE]:
            sub = method_args(args, m, seed)
            stages_for(sub, model_config(sub, data.load(sub.data)[0]))
            if os.path.exists(os.path.join(sub.out_dir, 'ckpt.pt')):
                theirs = runtime.read_checkpoint(sub.out_dir, mapped=True)[0]['args']
                differ = [k for k, v in vars(sub).items() if k not in RESUMABLE | {'compare', 'seeds', 'jobs'}
                          and theirs.get(k, defaults.get_default(k)) != v]
                if differ:
                    k = differ[0]
                    raise InputError(f"--out_dir {args.out_dir}: {sub.out_dir} holds a run with other flags "
                                     f"(--{k} {theirs.get(k)} there, {getattr(sub, k)} here); choose another "
                                     f"--out_dir, or print it with --compare {args.out_dir}")
                sub.resume = True
            runs.append(sub)
    return runs


def visible_gpus(n):
    """The n GPUs that parallel runs take, as CUDA_VISIBLE_DEVICES names them: of those this process sees (a
    mask already set is kept), else 0..n-1."""
    seen = os.environ.get('CUDA_VISIBLE_DEVICES')
    return (seen.split(',') if seen else [str(i) for i in range(n)])[:n]


def run_in_parallel(runs, args, request):
    """--jobs J > 1: J runs at once, each `python grow.py` in a process (and session) of its own, its output
    in its folder's train.log. On CPU each gets its share of the cores (threads), so that J runs do not
    oversubscribe them; on CUDA each gets one visible GPU (of those this process sees: a CUDA_VISIBLE_DEVICES
    already set is kept, its GPUs shared out). A stop request is passed on to every run."""
    cuda = runtime.pick_device(args) == 'cuda'
    jobs = min(args.jobs, torch.cuda.device_count()) if cuda else args.jobs
    gpus = visible_gpus(jobs)
    threads = max(1, len(os.sched_getaffinity(0)) // jobs) if hasattr(os, 'sched_getaffinity') else 1
    print(f"--jobs {jobs}: " + ("one GPU each" if cuda else f"{threads} thread{'s' * (threads > 1)} each"))
    pending, active, failed, passed_on = list(runs), {}, [], False
    while pending or active:
        while pending and len(active) < jobs and not request.signum and not failed:
            sub = pending.pop(0)
            slot = min(set(range(jobs)) - set(active))
            env = dict(os.environ, **({'CUDA_VISIBLE_DEVICES': gpus[slot]} if cuda else
                                      {'OMP_NUM_THREADS': str(threads)}))
            argv = ['--resume', '--out_dir', sub.out_dir] if sub.resume else to_argv(sub)
            os.makedirs(sub.out_dir, exist_ok=True)
            with open(os.path.join(sub.out_dir, 'train.log'), 'a') as out:
                command = [sys.executable, os.path.abspath(grow.__file__), *argv]
                active[slot] = sub, subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT,
                                                     start_new_session=True)
            print(f"=== {sub.method}, seed {sub.seed} -> {sub.out_dir} (output in train.log)")
        if request.signum and not passed_on:
            for _, child in active.values():
                child.send_signal(request.signum)
            passed_on = True
        for slot, (sub, child) in list(active.items()):
            if child.poll() is not None:
                del active[slot]
                ended = "done" if child.returncode == 0 else f"stopped with exit status {child.returncode}"
                print(f"=== {sub.method}, seed {sub.seed}: {ended}")
                failed += [(sub, child.returncode)] if child.returncode else []
        time.sleep(0.2)
    if request.signum:
        name = signal.Signals(request.signum).name
        raise runtime.Interrupted(request.signum, f"stopped by {name}; every run kept its checkpoint: the "
                                                  f"same --compare command continues where they stopped")
    if failed:
        sub, status = failed[0]
        raise runtime.RunStopped(status, f"the run in {sub.out_dir} stopped with exit status {status} (see "
                                         f"its train.log); the same --compare command continues the "
                                         f"comparison")


def previous_jobs(out_dir):
    try:
        with open(os.path.join(out_dir, 'compare.json')) as f:
            return json.load(f).get('jobs')
    except (OSError, ValueError, AttributeError):
        return None


def main(argv=None):
    """grow.py's flags with --compare or --plan (`python grow.py --compare ...` runs this): a comparison, or
    the schedules; or comparison folders of one setting at several budgets: a budget sweep."""
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    if any(a.split('=')[0] in ('--compare', '--plan') for a in argv):
        return runtime.command('compare.py', lambda: comparison(flags.parse_args(argv)))
    return budget_sweep(argv)


def comparison(args):
    """--plan: the schedules (`show_plan`); --compare: train the comparison or print it again."""
    if args.plan:
        return show_plan(args)
    with runtime.StopRequest() as request:
        return compare_methods(args, request)


def budget_sweep(argv):
    """`python compare.py OUT_A OUT_B ... --plot PNG`: each method's FLOPs saved against tokens per
    parameter."""
    p = argparse.ArgumentParser(description="A budget sweep: the FLOPs each method saves against tokens per "
                                "parameter, from comparisons (python grow.py --compare ...) of one setting "
                                "at several --max_steps.")
    p.add_argument('out_dirs', nargs='+', help='comparison folders, one per budget')
    p.add_argument('--plot', default='budget_sweep.png', help='where the plot goes (default: %(default)s)')
    args = p.parse_args(argv)
    sweep = []  # (tokens per parameter, summary rows), by budget
    for d in args.out_dirs:
        try:
            sweep.append((tokens_per_param(d), report(d)[0]))
        except (OSError, ValueError, KeyError, IndexError) as e:
            print(f"compare.py: {d} is not a finished comparison folder with scratch's checkpoint "
                  f"({type(e).__name__}: {str(e).splitlines()[0][:100]})", file=sys.stderr)
            sys.exit(2)
    sweep.sort(key=lambda s: s[0])
    print(sweep_table(sweep))
    written = sweep_plot(sweep, args.plot)
    if written:
        print(f"plot: {written}")
    return sweep


if __name__ == '__main__':
    main()
