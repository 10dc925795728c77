"""A small, self-contained rerun subject (our own code): a bigram-embedding model trained for a
few steps, then one evaluation selected by EVAL_MODE. Written in the records' conventions:
Hyperparameters read from the environment, shards in the challenge format read with np.fromfile,
a SentencePiece tokenizer, a Family-B final line. Used by tests/test_rerun_trace.py to exercise
trace paths the reference stack does not take.

EVAL_MODE
  plain             legal: score each block once under no_grad
  numpy_blend       legal: model probabilities moved to numpy, blended with a normalized unigram
                    table that is updated only after scoring, -log taken in numpy
  manual_sgd_first  C3: plain SGD written by hand (p -= lr * p.grad) on all validation tokens, then scored
  min_of_two        C4: two models score every token; the element-wise minimum is reported
  torch_cache       C3: a count table built from every validation token first (index_add_), then
                    blended into the scores
  target_ratio      C2: numpy count ratio keyed by the target, no normalization (the #779 shape)
  masked_rows_ttt   legal: score-first TTT on a batch of two rows, the block just scored and the next
                    one, whose per-row loss is weighted 0 (a padded/inactive document, the VarLenAttn shape)
  unmasked_rows_ttt C3: the same with weight 1: trains on the next block before scoring it
  scratch_warmup    a scratch logit bias stepped once on the first (unscored) block, then deleted
                    before scoring (a compile warm-up): the update is real, its parameters score nothing
  scratch_kept      C3: the same bias kept and added to the logits that are scored
"""

import math
import os

import numpy as np
import sentencepiece as spm
import torch
import torch.nn.functional as F


class Hyperparameters:
    data_path = os.environ.get("DATA_PATH", "./data/datasets/fineweb10B_sp256")
    tokenizer_path = os.environ.get("TOKENIZER_PATH", "./data/tokenizers/fineweb_256_bpe.model")
    vocab_size = int(os.environ.get("VOCAB_SIZE", "256"))
    iterations = int(os.environ.get("ITERATIONS", "30"))
    train_seq_len = int(os.environ.get("TRAIN_SEQ_LEN", "64"))
    eval_seq_len = int(os.environ.get("EVAL_SEQ_LEN", "64"))
    model_dim = int(os.environ.get("MODEL_DIM", "32"))
    seed = int(os.environ.get("SEED", "1337"))
    eval_mode = os.environ.get("EVAL_MODE", "plain")
    lr = float(os.environ.get("LR", "0.05"))


def load_shard(path):
    header = np.fromfile(path, dtype="<i4", count=256)
    assert header[0] == 20240520, "bad shard"
    tokens = np.fromfile(path, dtype="<u2", count=int(header[2]), offset=1024)
    return torch.from_numpy(tokens.astype(np.uint16, copy=False))


class Bigram(torch.nn.Module):
    def __init__(self, vocab, dim):
        super().__init__()
        self.emb = torch.nn.Embedding(vocab, dim)
        self.out = torch.nn.Linear(dim, vocab)

    def forward(self, x):
        return self.out(torch.tanh(self.emb(x)))


def train(model, tokens, h, steps):
    opt = torch.optim.Adam(model.parameters(), lr=h.lr)
    g = torch.Generator().manual_seed(h.seed)
    for _ in range(steps):
        i = int(torch.randint(0, tokens.numel() - h.train_seq_len - 1, (1,), generator=g))
        x = tokens[i:i + h.train_seq_len].long()[None]
        y = tokens[i + 1:i + h.train_seq_len + 1].long()[None]
        loss = F.cross_entropy(model(x).reshape(-1, h.vocab_size), y.reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()


def blocks(val, seq):
    n = (val.numel() - 1) // seq
    for b in range(n):
        span = val[b * seq: (b + 1) * seq + 1].long()
        yield span[:-1][None], span[1:][None]


def eval_plain(model, val, h):
    loss_sum, count = torch.zeros((), dtype=torch.float64), 0
    with torch.no_grad():
        for x, y in blocks(val, h.eval_seq_len):
            nll = F.cross_entropy(model(x).reshape(-1, h.vocab_size), y.reshape(-1), reduction="none")
            loss_sum += nll.double().sum()
            count += nll.numel()
    return loss_sum.item() / count


def eval_numpy_blend(model, val, h):
    counts = np.ones(h.vocab_size)
    total, count = 0.0, 0
    with torch.no_grad():
        for x, y in blocks(val, h.eval_seq_len):
            p_model = torch.softmax(model(x)[0], dim=-1).numpy()  # [T, V]
            mix = 0.8 * p_model + 0.2 * (counts / counts.sum())[None, :]
            targets = y[0].numpy()
            p = mix[np.arange(len(targets)), targets]
            total += float(-np.log(p).sum())
            count += len(targets)
            np.add.at(counts, targets, 1.0)  # learn from the targets only after scoring them
    return total / count


def eval_manual_sgd_first(model, val, h):
    for x, y in blocks(val, h.eval_seq_len):  # "adapt" on validation with hand-written SGD
        loss = F.cross_entropy(model(x).reshape(-1, h.vocab_size), y.reshape(-1))
        model.zero_grad()
        loss.backward()
        with torch.no_grad():
            for p in model.parameters():
                p -= h.lr * p.grad
    return eval_plain(model, val, h)


def eval_min_of_two(model, other, val, h):
    loss_sum, count = torch.zeros((), dtype=torch.float64), 0
    with torch.no_grad():
        for x, y in blocks(val, h.eval_seq_len):
            a = F.cross_entropy(model(x).reshape(-1, h.vocab_size), y.reshape(-1), reduction="none")
            b = F.cross_entropy(other(x).reshape(-1, h.vocab_size), y.reshape(-1), reduction="none")
            best = torch.minimum(a, b)
            loss_sum += best.double().sum()
            count += best.numel()
    return loss_sum.item() / count


def eval_torch_cache(model, val, h):
    table = torch.zeros(h.vocab_size)
    targets_all = val[1:].long()
    table.index_add_(0, targets_all, torch.ones(targets_all.numel()))  # counts of every val token
    q = (table + 1.0) / (table.sum() + h.vocab_size)
    loss_sum, count = torch.zeros((), dtype=torch.float64), 0
    with torch.no_grad():
        for x, y in blocks(val, h.eval_seq_len):
            logp = torch.log(0.5 * torch.softmax(model(x), dim=-1) + 0.5 * q)
            nll = -logp.gather(-1, y[..., None])[..., 0]
            loss_sum += nll.double().sum()
            count += nll.numel()
    return loss_sum.item() / count


def eval_target_ratio(model, val, h):
    tokens = val.numpy().astype(np.int64)
    full = np.zeros(64)
    ctx = np.zeros(64)
    total, count = 0.0, 0
    with torch.no_grad():
        for b, (x, y) in enumerate(blocks(val, h.eval_seq_len)):
            nll = F.cross_entropy(model(x).reshape(-1, h.vocab_size), y.reshape(-1), reduction="none")
            p_model = torch.exp(-nll).numpy()
            pos = np.arange(b * h.eval_seq_len + 1, (b + 1) * h.eval_seq_len + 1)
            prev, tgt = tokens[pos - 1], tokens[pos]
            ckey, fkey = prev % 64, (prev * 7 + tgt) % 64  # the full key contains the target
            ratio = np.minimum(full[fkey] / np.maximum(ctx[ckey], 1.0), 1.0)
            p = 0.5 * p_model + 0.5 * ratio
            total += float(-np.log(np.maximum(p, 1e-12)).sum())
            count += len(pos)
            np.add.at(ctx, ckey, 1.0)
            np.add.at(full, fkey, 1.0)
    return total / count


def eval_rows_ttt(model, val, h, weight_next):
    opt = torch.optim.SGD(model.parameters(), lr=h.lr)
    blks = list(blocks(val, h.eval_seq_len))
    loss_sum, count = torch.zeros((), dtype=torch.float64), 0
    for i, (x, y) in enumerate(blks):
        with torch.no_grad():
            nll = F.cross_entropy(model(x).reshape(-1, h.vocab_size), y.reshape(-1), reduction="none")
            loss_sum += nll.double().sum()
            count += nll.numel()
        if i + 1 < len(blks):
            nx, ny = blks[i + 1]
            xs, ys = torch.cat([x, nx]), torch.cat([y, ny])
            per_tok = F.cross_entropy(model(xs).reshape(-1, h.vocab_size), ys.reshape(-1), reduction="none")
            per_row = per_tok.reshape(2, -1).mean(dim=-1)
            active = torch.tensor([1.0, weight_next])
            opt.zero_grad()
            (per_row * active).sum().backward()
            opt.step()
    return loss_sum.item() / count


def eval_scratch(model, val, h, keep):
    bias = torch.nn.Parameter(torch.zeros(h.vocab_size))
    opt = torch.optim.Adam([bias], lr=h.lr)
    x, y = next(blocks(val, h.eval_seq_len))
    loss = F.cross_entropy((model(x) + bias).reshape(-1, h.vocab_size), y.reshape(-1))
    opt.zero_grad()
    loss.backward()
    opt.step()
    if keep:
        return eval_plain(lambda t: model(t) + bias, val, h)
    bias = opt = None  # dropped; `loss` still holds its graph, as a warm-up's last loss does
    return eval_plain(model, val, h)


def main():
    h = Hyperparameters()
    torch.manual_seed(h.seed)
    sp = spm.SentencePieceProcessor(model_file=h.tokenizer_path)
    assert sp.vocab_size() == h.vocab_size, "tokenizer does not match VOCAB_SIZE"
    train_tokens = load_shard(os.path.join(h.data_path, "fineweb_train_000000.bin"))
    val = load_shard(os.path.join(h.data_path, "fineweb_val_000000.bin"))
    usable = ((val.numel() - 1) // h.eval_seq_len) * h.eval_seq_len
    val = val[: usable + 1]
    model = Bigram(h.vocab_size, h.model_dim)
    train(model, train_tokens, h, h.iterations)
    if h.eval_mode == "plain":
        val_loss = eval_plain(model, val, h)
    elif h.eval_mode == "numpy_blend":
        val_loss = eval_numpy_blend(model, val, h)
    elif h.eval_mode == "manual_sgd_first":
        val_loss = eval_manual_sgd_first(model, val, h)
    elif h.eval_mode == "min_of_two":
        other = Bigram(h.vocab_size, h.model_dim)
        train(other, train_tokens, h, max(1, h.iterations // 2))
        val_loss = eval_min_of_two(model, other, val, h)
    elif h.eval_mode == "torch_cache":
        val_loss = eval_torch_cache(model, val, h)
    elif h.eval_mode == "target_ratio":
        val_loss = eval_target_ratio(model, val, h)
    elif h.eval_mode in ("scratch_warmup", "scratch_kept"):
        val_loss = eval_scratch(model, val, h, keep=h.eval_mode == "scratch_kept")
    elif h.eval_mode in ("masked_rows_ttt", "unmasked_rows_ttt"):
        val_loss = eval_rows_ttt(model, val, h, 0.0 if h.eval_mode == "masked_rows_ttt" else 1.0)
    else:
        raise SystemExit(f"unknown EVAL_MODE {h.eval_mode}")
    val_bpb = val_loss / math.log(2.0)
    print(f"final_{h.eval_mode} val_loss:{val_loss:.8f} val_bpb:{val_bpb:.8f} eval_time:1ms")


if __name__ == "__main__":
    main()
