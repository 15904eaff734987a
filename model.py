"""
The models of nanogrow: a compact GPT (pre-LN, causal LM) and BERT (post-LN, masked LM) in one class.
The model *owns* k weight blocks (`n_blocks`) and *executes* any depth d >= k, layer t running block
`map_layers(k, d)[t]` (Apollo's shared-weight depth, Pan et al. 2024, Eqs. 11-12); with d == k it is an
ordinary Transformer. The growth operators: `deepen` (more blocks) and `widen` (wider FFN and hidden size),
and the map their weights and AdamW's moments follow (`growth_map`). Then FLOPs and the optimizer.
"""
import copy
import math
from dataclasses import dataclass, replace

import torch
import torch.nn as nn
import torch.nn.functional as F

# Target sizes (nano, the CPU default, and tiny: ours; small/base/large: Apollo's Table 5); block_size: (bert, gpt)
SIZES = {
    'nano':  dict(n_layer=12, n_embd=48, n_head=4, block_size=(128, 128)),
    'tiny':  dict(n_layer=12, n_embd=128, n_head=4, block_size=(128, 128)),
    'small': dict(n_layer=12, n_embd=512, n_head=8, block_size=(512, 1024)),
    'base':  dict(n_layer=12, n_embd=768, n_head=12, block_size=(512, 1024)),
    'large': dict(n_layer=24, n_embd=1024, n_head=16, block_size=(512, 1024)),
}


@dataclass
class Config:
    kind: str = 'gpt'         # 'gpt' (pre-LN, causal LM) or 'bert' (post-LN, masked LM)
    vocab_size: int = 320     # padded to a multiple of 64; for BERT it includes the [MASK] id
    block_size: int = 128     # longest sequence (learned position table)
    n_layer: int = 12         # L: the target depth, what evaluation runs
    n_head: int = 4
    n_embd: int = 128
    d_ff: int = 512           # FFN hidden width (4 * n_embd by default)
    dropout: float = 0.0
    bias: bool = True
    n_blocks: int = None      # k: weight blocks owned now (None means n_layer; 0: embeddings and head only)
    pos: str = 'learned'      # positions: 'learned' (an absolute table, wpe) or 'rope' (rotary, on q and k)
    pre_ln: bool = None       # LayerNorm before each sublayer (pre-LN) or after it; None: GPT pre, BERT post
    base_depth: int = None    # CompleteP (Dey et al. 2025, alpha = 1): branches x base_depth / depth run; None: SP
    base_width: int = None    # and muP's width rules (Yang et al. 2022, Table 3): the n_embd where m = 1

    def __post_init__(self):
        self.n_blocks = self.n_layer if self.n_blocks is None else self.n_blocks
        self.pre_ln = self.kind == 'gpt' if self.pre_ln is None else self.pre_ln

    @property
    def width_mult(self):  # muP's m: n_embd over the base's, one for every block matrix (as CompleteP's code)
        return self.n_embd / self.base_width if self.base_width else 1.0


def config_for(kind, size, vocab_size, **overrides):
    """The Config of a named size, with flag overrides (None means keep the size's value)."""
    s = dict(SIZES[size])
    s['block_size'] = s['block_size'][kind == 'gpt']
    s.update({k: v for k, v in overrides.items() if v is not None})
    s.setdefault('d_ff', 4 * s['n_embd'])
    return Config(kind=kind, vocab_size=vocab_size, **s)


def num_params(module):
    """Unique parameters (the tied head counted once, shared blocks counted once)."""
    return sum(p.numel() for p in module.parameters())


def map_layers(k, d, how='interpolate'):
    """Block index used by each of the d executed layers of a model owning k weight blocks:
    interpolate (Apollo Eq. 12): w(t) = (t * k) // d, e.g. k=3, d=7 -> 0,0,0,1,1,2,2 (in integers: the
      official int(t / (d / k)) rounds wrongly for some k >= 14).
    stack (StackBERT; Apollo Eq. 11): w(t) = t % k for whole rounds of k, then the top d % k blocks, as the
      official stack_meta_layer: k=3, d=7 -> 0,1,2,0,1,2,2.
    a list of d block indices: that path itself (RaPTr's `random_path`)."""
    if not isinstance(how, str):  # a path: the blocks to run, in order (RaPTr, `random_path`)
        if len(how) != d:
            raise ValueError(f"a path of {len(how)} blocks does not run depth {d}")
        return list(how)
    if not k <= d:
        raise ValueError(f"depth {d} is smaller than the {k} blocks the model owns")
    if how == 'interpolate':
        return [(t * k) // d for t in range(d)]
    if how == 'stack':
        whole = d - d % k
        return [t % k if t < whole else k - d + t for t in range(d)]
    raise ValueError(f"unknown layer map {how!r}; valid: interpolate, stack")


def rope_tables(T, d):
    """cos and sin of RoPE's angles t / 10000^(2j / d), (T, d / 2): buffers, computed once."""
    freq = 1.0 / 10000 ** (torch.arange(0, d, 2, dtype=torch.float32) / d)
    angle = torch.arange(T, dtype=torch.float32)[:, None] * freq
    return angle.cos(), angle.sin()


def rotate(x, cos, sin):
    """Rotary positions (RoPE; RoFormer, Su et al. 2021, Eq. 34) on (B, T, ..., head_dim): each pair (x_2j,
    x_2j+1) at position t turns by t / 10000^(2j / head_dim), so q . k depends on the positions' difference
    only, and no position table is left untrained. Eagerly one complex product; compiled, the same product in
    reals (inductor generates no complex code)."""
    T = x.size(1)
    cos, sin = (t[:T].view(T, *[1] * (x.dim() - 3), -1) for t in (cos, sin))  # (broadcast over the middle)
    if torch.compiler.is_compiling():
        even, odd = x[..., 0::2].float(), x[..., 1::2].float()
        return torch.stack([even * cos - odd * sin, odd * cos + even * sin], dim=-1).flatten(-2).to(x.dtype)
    pairs = torch.view_as_complex(x.float().unflatten(-1, (-1, 2)))
    return torch.view_as_real(pairs * torch.complex(cos, sin)).flatten(-2).to(x.dtype)


class SelfAttention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.n_head, self.dropout, self.causal = cfg.n_head, cfg.dropout, cfg.kind == 'gpt'
        self.rope = cfg.pos == 'rope'
        if self.rope:  # (not saved: a function of the shape alone)
            cos, sin = rope_tables(cfg.block_size, cfg.n_embd // cfg.n_head)
            self.register_buffer('cos', cos, persistent=False)
            self.register_buffer('sin', sin, persistent=False)
        self.c_attn = nn.Linear(cfg.n_embd, 3 * cfg.n_embd, bias=cfg.bias)
        self.c_proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=cfg.bias)

    def forward(self, x, context=None, mask=None):
        """Self-attention; given a `context` (a pooled BERT stage's first layer), keys and values from it.
        `mask` (B, 1, 1, keys) marks the keys to attend to."""
        B, T, C = x.shape
        hs = C // self.n_head
        if context is None:
            qkv = self.c_attn(x).view(B, T, 3, self.n_head, hs)
            if self.rope:  # q and k rotated in one product. Split, not sliced: a split's backward is one
                # concatenation, where two slices each zero-fill a gradient of qkv's size and then add them
                qk, v = qkv.split((2, 1), dim=2)
                q, k = rotate(qk, self.cos, self.sin).permute(2, 0, 3, 1, 4)
                v = v.squeeze(2).transpose(1, 2)
            else:
                q, k, v = qkv.permute(2, 0, 3, 1, 4)
        else:  # (pooled stages take learned positions only: flags.py refuses rope with them)
            w, b = self.c_attn.weight, self.c_attn.bias
            q = F.linear(x, w[:C], None if b is None else b[:C]).view(B, T, self.n_head, hs).transpose(1, 2)
            k, v = F.linear(context, w[C:], None if b is None else b[C:]).view(B, -1, 2, self.n_head, hs) \
                .permute(2, 0, 3, 1, 4)
        # flash / memory-efficient kernels where available; BERT sees both directions
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=self.causal,
                                           dropout_p=self.dropout if self.training else 0.0)
        return F.dropout(self.c_proj(y.transpose(1, 2).reshape(B, T, C)), self.dropout, self.training)


class MLP(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.c_fc = nn.Linear(cfg.n_embd, cfg.d_ff, bias=cfg.bias)
        self.c_proj = nn.Linear(cfg.d_ff, cfg.n_embd, bias=cfg.bias)
        self.dropout = cfg.dropout

    def forward(self, x):
        return F.dropout(self.c_proj(F.gelu(self.c_fc(x))), self.dropout, self.training)


class Block(nn.Module):
    """Pre-LN, x + attn(ln1(x)) (GPT-2; GPT's default), or post-LN, ln1(x + attn(x)) (the original BERT's)."""

    def __init__(self, cfg):
        super().__init__()
        self.pre_ln = cfg.pre_ln
        self.ln_1, self.ln_2 = (nn.LayerNorm(cfg.n_embd, bias=cfg.bias) for _ in range(2))
        self.attn, self.mlp = SelfAttention(cfg), MLP(cfg)

    def forward(self, x, context=None, mask=None, scale=1.0):
        """`scale` multiplies both residual branches (RaPTr's drawn layers, `path_scales`; one kernel with the
        addition). A pooled BERT stage's first layer takes its keys and values from `context`, normalised as
        its queries are."""
        if self.pre_ln:
            context = None if context is None else self.ln_1(context)
            x = x.add(self.attn(self.ln_1(x), context, mask), alpha=scale)
            return x.add(self.mlp(self.ln_2(x)), alpha=scale)
        x = self.ln_1(x.add(self.attn(x, context, mask), alpha=scale))
        return self.ln_2(x.add(self.mlp(x), alpha=scale))


class LMLoss(nn.Module):
    """GPT's tied LM head and its cross-entropy as one module, so that --compile fuses them: with a 50k
    vocabulary the float32 logits are most of a small model's memory traffic."""

    def forward(self, x, weight, targets):
        logits = x @ weight.T
        return logits, F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten())


class Transformer(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.wte = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.wpe = nn.Embedding(cfg.block_size, cfg.n_embd) if cfg.pos == 'learned' else None  # rope: none
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_blocks))
        if cfg.kind == 'gpt':
            self.ln_f = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
            self.lm_loss = LMLoss()
        else:  # BERT: LayerNorm after the embeddings, and the MLM transform before the tied decoder
            self.ln_emb = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
            if cfg.pre_ln:  # a pre-LN stack ends with a LayerNorm of its own
                self.ln_out = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
            self.mlm_dense = nn.Linear(cfg.n_embd, cfg.n_embd, bias=cfg.bias)
            self.ln_f = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
            self.mlm_bias = nn.Parameter(torch.zeros(cfg.vocab_size))
        self.apply(self._init_weights)
        # residual output projections get std 0.02/sqrt(2L) (GPT-2), so the stream's variance does not grow
        # with L. BERT too, unlike the original BERT (N(0, 0.02) everywhere); CompleteP's 1/L multiplier does it
        for name, p in self.named_parameters():
            if name.endswith('c_proj.weight') and not cfg.base_depth:
                nn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * cfg.n_layer))
            elif name.startswith('blocks.') and p.dim() == 2 and cfg.width_mult != 1:  # muP: variance / m
                p.data.div_(math.sqrt(cfg.width_mult))  # (as `new_block` does: no draw of its own)

    @staticmethod
    def _init_weights(m):
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, 0.0, 0.02)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)

    def forward(self, idx, targets=None, depth=None, layer_map='interpolate', pool=1, masked=None):
        """(logits, loss or None) at `depth` (`hidden`; BERT with pool > 1: `forward_pooled`). GPT: targets are
        the next tokens; without them, the last position's logits. BERT: targets are the ids at masked positions,
        -100 elsewhere; the head runs on those only, `masked` their flat indices if the host knows them."""
        if pool > 1:
            return self.forward_pooled(self.embed(idx), targets, depth, layer_map, pool)
        x = self.hidden(idx, depth, layer_map)
        if self.cfg.kind == 'gpt':
            if targets is None:
                return x[:, -1:] @ self.readout.T, None
            return self.lm_loss(x, self.readout, targets)
        if targets is not None:
            masked = (targets != -100).flatten().nonzero().squeeze(1) if masked is None else masked
            x, targets = x.flatten(0, 1)[masked], targets.flatten()[masked]
        logits = self.mlm_head(x)
        return logits, None if targets is None else F.cross_entropy(logits.float(), targets)

    def embed(self, idx):
        """Token embeddings (plus the learned positions), BERT's LayerNorm after them, dropout."""
        T = idx.size(1)
        if T > self.cfg.block_size:
            raise ValueError(f"sequence of length {T} is longer than block_size {self.cfg.block_size}")
        x = self.wte(idx) if self.wpe is None else self.wte(idx) + self.wpe(torch.arange(T, device=idx.device))
        return F.dropout(self.ln_emb(x) if self.cfg.kind == 'bert' else x, self.cfg.dropout, self.training)

    def hidden(self, idx, depth=None, layer_map='interpolate', mask=None):
        """The states a head reads (the LM head, finetune.py's): the executed layers, then GPT's ln_f or a pre-LN
        BERT's ln_out. `mask` (B, 1, 1, T): the keys BERT attends to (padding left out)."""
        x = self.embed(idx)
        for i, scale in self.layers(depth, layer_map):
            x = self.blocks[i](x, mask=mask, scale=scale)
        return self.ln_f(x) if self.cfg.kind == 'gpt' else self.ln_out(x) if self.cfg.pre_ln else x

    def layers(self, depth, layer_map):
        """(block, residual scale) of each executed layer: `map_layers`, RaPTr's `path_scales` for a path, and
        CompleteP's base_depth / depth (its Eq. 1 with alpha = 1: the multiplier follows the depth run)."""
        blocks = map_layers(len(self.blocks), depth or len(self.blocks), layer_map)
        scales = [1.0] * len(blocks) if isinstance(layer_map, str) else path_scales(blocks, self.cfg.n_layer)
        k = self.cfg.base_depth / max(1, len(blocks)) if self.cfg.base_depth else 1.0
        return [(b, s * k) for b, s in zip(blocks, scales)]

    def mlm_head(self, x):
        """BERT's masked-LM head: dense, GELU, LayerNorm, the tied decoder and a bias."""
        return self.ln_f(F.gelu(self.mlm_dense(x))) @ self.readout.T + self.mlm_bias

    @property
    def readout(self):  # the tied decoder, x 1/m by muP's width rules: logits stay in scale as width grows
        return self.wte.weight if self.cfg.width_mult == 1 else self.wte.weight / self.cfg.width_mult

    def forward_pooled(self, x, targets, depth, layer_map, r):
        """CompoundGrow's length operator for BERT (Gu et al. 2021; the layout of its code, grow_bert): every r
        neighbouring embeddings are averaged, so the blocks run T/r positions, and each masked position is
        appended as a query of its own. The first layer attends over the full-length embeddings, the later
        ones over the pooled sequence and the queries; rows are padded to the most masked positions (masked
        out as keys). Returns (logits of the masked positions, loss)."""
        B, T, C = x.shape
        keep = targets != -100
        M = int(keep.sum(1).max())
        # the masked positions first, in their order
        order = torch.argsort((~keep).to(torch.int8), dim=1, stable=True)[:, :M]
        valid = torch.gather(keep, 1, order)
        queries = torch.gather(x, 1, order[..., None].expand(B, M, C))
        h = torch.cat([x.view(B, T // r, r, C).mean(2), queries], 1)
        context = torch.cat([x, queries], 1)
        ones = torch.ones(B, T, dtype=torch.bool, device=x.device)
        full_mask = torch.cat([ones, valid], 1)[:, None, None]
        mask = torch.cat([ones[:, :T // r], valid], 1)[:, None, None]
        for t, (i, scale) in enumerate(self.layers(depth, layer_map)):
            h = self.blocks[i](h, context if t == 0 else None, full_mask if t == 0 else mask, scale)
        h = h[:, T // r:][valid]
        logits = self.mlm_head(self.ln_out(h) if self.cfg.pre_ln else h)
        return logits, F.cross_entropy(logits.float(), torch.gather(targets, 1, order)[valid])


def middle_copy(k_old, k_new):
    """MIDAS's growth (Saunshi et al. 2024, Fig. 1a; its "blocks" are our *groups*): the k_old layers as
    groups of b = k_new - k_old, the middle group (ceil(n / 2) of n) copied right after itself, so the first
    and last layers keep their places. The old layer of each new one: 6 -> 8: 0,1,2,3,2,3,4,5."""
    b = k_new - k_old
    if not 0 < b <= k_old:
        raise ValueError(f"a middle copy adds 1 to {k_old} layers to {k_old}, not {b}: at most double the "
                         f"depth")
    s = (k_old // b - 1) // 2 * b  # first layer of the middle group
    return list(range(s + b)) + list(range(s, k_old))


def path_scales(path, L):
    """RaPTr's scaling: a drawn layer runs with probability q = (p - 2) / (L - 2), so its residual branches
    are multiplied by 1 / q (as inverted dropout), keeping its expected contribution; the first and last
    layers run always, unscaled, and the full path (p = L) is the model itself."""
    q = (len(path) - 2) / (L - 2) if L > 2 else 1.0
    return [1.0 if t in (0, len(path) - 1) else 1 / q for t in range(len(path))]


def deepen(model, k_new, op='interpolate', noise=0.0):
    """A new model owning k_new weight blocks made from the k_old of `model` by `op` (`depth_source`): stack
    and interpolate (StackBERT; Apollo Eqs. 11-12: `map_layers`), middle (MIDAS: `middle_copy`), or identity and
    fresh (StackBERT's identity.py; Bu's random initialisation, the only one that grows 0 blocks): new blocks on
    top (`new_block`). Each block a deep copy, free to drift apart; noise > 0 (--depth_noise; G_stack, Du et al.
    2024): every copy after a block's first gets W + noise * std(W) * N(0, 1). Returns (new model, src), src[i]
    the old block of new block i (None: made afresh)."""
    k_old = len(model.blocks)
    if k_new <= k_old:
        raise ValueError(f"growth must add blocks: {k_old} -> {k_new}")
    if op == 'identity' and not model.cfg.pre_ln:
        raise ValueError("the identity depth operator preserves the function of pre-LN models only")
    src = depth_source(k_old, k_new, op)
    new = copy.deepcopy(model)  # embeddings and head: the same values in fresh tensors
    new.cfg = replace(model.cfg, n_blocks=k_new)
    device = next(model.parameters()).device
    new.blocks = nn.ModuleList(copy.deepcopy(model.blocks[j]) if j is not None else
                               new_block(new.cfg, op).to(device) for j in src)
    if noise:
        with torch.no_grad():
            for i in range(k_new):
                if src[i] is not None and src.index(src[i]) < i:  # not the first copy of its block
                    for p in new.blocks[i].parameters():
                        p.add_(torch.randn_like(p) * noise * p.std())
    return new, src


def depth_source(k_old, k_new, op):
    """The old block each of k_new new blocks is made from by depth operator `op` (`deepen`), None where it is
    made afresh."""
    if k_old == 0 and op != 'fresh':
        raise ValueError(f"a model of 0 blocks has nothing to {op}: only the fresh depth operator grows it")
    if op in ('fresh', 'identity'):
        return list(range(k_old)) + [None] * (k_new - k_old)
    if op == 'middle':
        return middle_copy(k_old, k_new)
    return map_layers(k_old, k_new, 'stack' if op == 'stack' else 'interpolate')


def new_block(cfg, op):
    """A block made afresh, its two output projections zero, so a pre-LN model's function is unchanged. fresh:
    otherwise as the model initialises a block; identity: as StackBERT's identity.py, biases zero and every
    other weight (LayerNorm gains too) N(0, 1 / n), n its first dimension."""
    block = Block(cfg).apply(Transformer._init_weights)
    with torch.no_grad():
        for name, p in block.named_parameters() if op == 'identity' else ():
            p.zero_() if name.endswith('bias') else p.normal_(0.0, p.size(0) ** -0.5)
        for p in (p for p in block.parameters() if p.dim() == 2 and op == 'fresh'):  # muP: variance / m
            p.div_(math.sqrt(cfg.width_mult))
        for p in (*block.attn.c_proj.parameters(), *block.mlp.c_proj.parameters()):  # weights and biases
            p.zero_()
    return block


# How each parameter is tiled, by its name (a block's without 'blocks.i.'): (dim, groups, split) entries, each
# tiling `dim` n times inside `groups` equal parts (c_attn's q, k, v), divided by n when `split` (what reads
# the n copies sums them). Hidden size (Staged Training / HyperCloning): wherever a dimension is n_embd;
# every name not listed (LayerNorms, output biases) repeats along dim 0.
EMBD_TILES = {'wte.weight': [(1, 1, False)], 'wpe.weight': [(1, 1, False)], 'ln_f.weight': [(0, 1, True)],
              'ln_f.bias': [(0, 1, True)], 'attn.c_attn.weight': [(0, 3, False), (1, 1, True)],
              'attn.c_attn.bias': [(0, 3, False)], 'attn.c_proj.weight': [(0, 1, False), (1, 1, True)],
              'mlm_dense.weight': [(0, 1, False), (1, 1, True)], 'mlp.c_fc.weight': [(1, 1, True)],
              'mlp.c_fc.bias': [], 'mlm_bias': []}
# FFN width (CompoundGrow, Gu et al. 2021): W1' = [W1; W1], b1' = [b1; b1], W2' = [W2, W2] / n
FFN_TILES = {'mlp.c_fc.weight': [(0, 1, False)], 'mlp.c_fc.bias': [(0, 1, False)],
             'mlp.c_proj.weight': [(1, 1, True)]}


def tiling(model, n_embd, d_ff):
    """Each parameter's tiling, (dim, n, groups, split) entries, when n_embd (head_dim fixed) and d_ff are
    multiplied by whole numbers: the output stays the same (the stream becomes [x, x], and ln_f is halved
    for the tied decoder; under muP's width rules the readout's 1/m halves instead, and ln_f is copied)."""
    e, f, tiles = n_embd // model.cfg.n_embd, d_ff // model.cfg.d_ff, {}
    for name, _ in model.named_parameters():
        leaf = name.split('.', 2)[-1] if name.startswith('blocks.') else name
        copied = model.cfg.base_width and leaf.startswith('ln_f.')  # (muP's readout: see above)
        tiles[name] = [(d, e, g, s and not copied) for d, g, s in EMBD_TILES.get(leaf, [(0, 1, False)])
                       if e > 1] + [(d, f, g, s) for d, g, s in FFN_TILES.get(leaf, []) if f > 1]
    return tiles


def tile(t, ops, moment=0, noise=0.0):
    """A parameter's tiling applied to its weight (moment 0) or an AdamW moment (exp_avg 1, exp_avg_sq 2). A
    moment follows the gradient each copy will receive, the other way round from the weight: a split copy
    gets the original's gradient and keeps the moment; any other copy gets 1/n of it, so exp_avg / n and
    exp_avg_sq / n^2. noise > 0 breaks the split copies' symmetry with the same sum: W/n + eps_i, sum_i eps_i
    = 0, eps ~ N(0, (noise * std W)^2)."""
    for dim, n, groups, split in ops:
        parts = t.unflatten(dim, (groups, -1))
        copies = [parts] * n
        divisor = (n if split else 1) if moment == 0 else (1 if split else n ** moment)
        if divisor != 1:
            copies = [c / divisor for c in copies]
        if split and noise and moment == 0:
            eps = torch.randn((n,) + parts.shape, device=t.device) * noise * t.float().std()
            eps = (eps - eps.mean(0)).to(t.dtype)
            copies = [c + e for c, e in zip(copies, eps)]
        t = torch.cat(copies, dim=dim + 1).flatten(dim, dim + 1)
    return t


def widen(model, n_embd, d_ff, noise=1e-2):
    """A new model with the wider n_embd (n_head scaled alike, head_dim fixed) and d_ff; see `tiling`.
    Returns (new model, tiles); the tiles map the optimizer moments too."""
    cfg = model.cfg
    tiles = tiling(model, n_embd, d_ff)
    new_cfg = replace(cfg, n_embd=n_embd, d_ff=d_ff, n_head=cfg.n_head * n_embd // cfg.n_embd)
    new = Transformer(new_cfg).to(next(model.parameters()).device)
    old = dict(model.named_parameters())
    with torch.no_grad():
        for name, p in new.named_parameters():
            p.copy_(tile(old[name], tiles[name], noise=noise))
    return new, tiles


def growth_map(grown, src=None, tiles=None):
    """Where each parameter of a grown model comes from: name -> (the old parameter's name, its tiling): new
    block i is old block src[i] (`deepen`), then `widen`'s tiling. The moments follow it (`carry_moments`)."""
    sources = {}
    for name, _ in grown.named_parameters():
        old = name
        if src is not None and name.startswith('blocks.'):
            _, i, rest = name.split('.', 2)
            # (a fresh block has no old parameter: its moments start afresh)
            old = None if src[int(i)] is None else f'blocks.{src[int(i)]}.{rest}'
        sources[name] = (old, (tiles or {}).get(name, []))
    return sources


# each state tensor's order as a moment of the gradient: how it scales when a copy's gradient does (`tile`)
MOMENTS = {'exp_avg': 1, 'exp_avg_sq': 2, 'momentum_buffer': 1}  # AdamW's two, Muon's one


def carry_moments(old, new, sources):
    """The optimizer's moments through a growth: each parameter of the `new` (model, optimizer) takes its
    source's state in the `old` pair (`growth_map`), tiled by `tile`, the step count kept; no source, no state.
    (With Muon, each of the two optimizers carries its own parameters' state: a matrix stays a matrix.)"""
    (model, optimizer), (grown, new_optimizer) = old, new
    names, parts = {p: n for n, p in model.named_parameters()}, lambda o: getattr(o, 'parts', [o])
    for part, new_part in zip(parts(optimizer), parts(new_optimizer)):
        moments = {names[p]: s for p, s in part.state.items()}
        for n, p in grown.named_parameters():
            source, ops = sources[n]
            if source in moments:
                s = moments[source]
                new_part.state[p] = {k: tile(v, ops, MOMENTS[k]).clone() for k, v in s.items() if k in MOMENTS}
                if 'step' in s:  # (the fused kernel reads the step count on the parameter's device)
                    new_part.state[p]['step'] = s['step'].to(p.device, torch.float32, copy=True)


def make_optimizer(model, lr, weight_decay, per_block=False, beta2=0.95, muon_lr=None):
    """AdamW (nanoGPT's configure_optimizers), fused: one kernel that skips a step on the device (`found_inf`).
    Weight decay on matrices and embeddings only; `per_block` (--shared_lr): groups per block (`block`: its
    index); `muon_lr`: the blocks' matrices go to Muon (`Optimizers`), each group's `rate` its peak over lr."""
    owner = {id(p): i for i, b in enumerate(model.blocks) for p in b.parameters()} if per_block else {}
    hidden = {id(p) for b in model.blocks for p in b.parameters() if p.dim() == 2} if muon_lr else set()
    mult = {id(p): model.cfg.width_mult for b in model.modules() if isinstance(b, Block) for p in b.parameters()}
    groups, muon = [], []
    for block in [None] + sorted(set(owner.values())):  # (None: the parameters outside the blocks)
        params = [p for p in model.parameters() if p.requires_grad and owner.get(id(p)) == block]
        tag = {} if block is None else dict(block=block)
        matrices = [p for p in params if p.dim() >= 2 and id(p) not in hidden]
        for m in sorted({mult.get(id(p), 1.0) for p in matrices}) or [1.0]:  # muP: blocks' rate / m, decay x m
            mup = dict(rate=1 / m, lr=lr / m) if m != 1 else {}
            groups.append(dict(params=[p for p in matrices if mult.get(id(p), 1.0) == m],
                               weight_decay=weight_decay * m, **tag, **mup))
        groups.append(dict(params=[p for p in params if p.dim() < 2], weight_decay=0.0, **tag))
        muon += [dict(params=[p for p in params if id(p) in hidden], **tag)]
    base, k = model.cfg.base_depth, max(1, model.cfg.n_blocks)  # CompleteP: eps x L / k, k this stage's blocks
    eps = 1e-8 * base / k / model.cfg.width_mult if base else 1e-8  # and / m (muP's width rule)
    adamw = torch.optim.AdamW(groups, lr=lr, betas=(0.9, beta2), eps=eps, fused=True)
    return Optimizers(adamw, torch.optim.Muon([dict(g, rate=muon_lr / lr) for g in muon if g['params']],
                                              lr=muon_lr, weight_decay=weight_decay)) if muon_lr else adamw


class Optimizers:
    """Muon (Jordan et al. 2024: momentum orthogonalised by Newton-Schulz) for the blocks' matrices, AdamW for
    the rest (embeddings, head, norms, biases), as nanochat splits them, stepped as one. Muon has no on-device
    skip like AdamW's `found_inf`, so its step reads the flag: one wait for the device per step."""
    def __init__(self, adamw, muon):
        self.parts, self.found_inf = (adamw, muon), None

    @property
    def param_groups(self):  # (read each time: loading a state replaces each part's list of groups)
        return self.parts[0].param_groups + self.parts[1].param_groups

    def step(self):
        self.parts[0].found_inf = self.found_inf  # (the fused AdamW skips on the device)
        self.parts[0].step()
        if self.found_inf is None or not self.found_inf.item():
            self.parts[1].step()

    def zero_grad(self, set_to_none=True):
        for o in self.parts:
            o.zero_grad(set_to_none=set_to_none)

    def state_dict(self):
        return dict(adamw=self.parts[0].state_dict(), muon=self.parts[1].state_dict())


def newton_schulz_flops(cfg, n_blocks):
    """Muon's step: 5 Newton-Schulz iterations on each stored block's matrices (m x n, m <= n), each A = X X^T
    (2 m^2 n), then a X + (b A + c A^2) X (2 m^3 + 2 m^2 n), whatever depth runs them (RaPTr: at most)."""
    C, H = cfg.n_embd, cfg.d_ff
    shapes = [(C, 3 * C), (C, C), (C, H), (C, H)]  # (qkv, attention out, the FFN's two: m <= n when H >= C)
    return n_blocks * sum(5 * (4 * m * m * n + 2 * m ** 3) for m, n in (sorted(s) for s in shapes))


def flops_per_step(cfg, depth, tokens, seq_len, head_tokens=None, pool=1, queries=0):
    """Training FLOPs (forward + backward) of one optimizer step (PaLM, Chowdhery et al. 2022, appendix B),
    6 * N_exec * tokens + 12 * L_exec * n_embd * T * tokens.
    N_exec: the matmul parameters a token passes at the depth *executed* (a shared block once per use), plus
    the LM head for the tokens that reach it (BERT: `head_tokens`, default 15%). The second term is
    attention's QK^T and AV over the full T x T (nanoGPT's convention). With pooling (`pool` r > 1,
    `queries` per window): the blocks run S = T/r + queries positions, the first layer's keys T + queries."""
    C, H = cfg.n_embd, cfg.d_ff
    per_layer = 4 * C * C + 2 * C * H          # qkv + attention out + the two FFN matrices
    head = C * cfg.vocab_size + (C * C if cfg.kind == 'bert' else 0)  # tied decoder (+ BERT's MLM dense)
    if head_tokens is None:
        head_tokens = tokens if cfg.kind == 'gpt' else 0.15 * tokens
    if pool == 1:
        return 6 * depth * per_layer * tokens + 6 * head * head_tokens + 12 * depth * C * seq_len * tokens
    rows, S = tokens // seq_len, seq_len // pool + queries
    extra = seq_len - seq_len // pool  # the first layer's keys and values beyond S
    return (6 * depth * per_layer * rows * S + 12 * depth * C * rows * S * S + 6 * head * head_tokens +
            6 * 2 * C * C * rows * extra + 12 * C * rows * S * extra)


def micro_batch_flops(cfg, depth, stage, y):
    """The FLOPs of one micro-batch: BERT's head on the masked positions, a pooled stage's queries padded."""
    if cfg.kind == 'gpt':
        return flops_per_step(cfg, depth, y.numel(), stage.seq)
    masked = y.numpy() != -100  # (the host's copy: counting it waits for no device)
    queries = int(masked.sum(1).max()) if stage.pool > 1 else 0
    return flops_per_step(cfg, depth, y.numel(), stage.seq, int(masked.sum()), stage.pool, queries)
