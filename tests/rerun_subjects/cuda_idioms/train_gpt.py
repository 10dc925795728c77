"""A rerun subject (our own code) written the way record scripts are written for 8xH100: it refuses
to start without CUDA and uses every CUDA-only idiom the CPU adapter (auditor/rerun/bootstrap/
pgolf_cpu.py) stands in for. tests/test_cpu_adapter.py runs it through ``rerun_record`` on a CPU.

Idioms: torch.cuda queries (is_available, device_count, get_device_properties, capability,
set_device, synchronize, memory stats, empty_cache, manual_seed), nvidia-smi in a subprocess,
CUDA events for timing, torch.device("cuda", rank), device="cuda" factories, .cuda(),
.to(device, non_blocking=True), pin_memory, bf16 autocast for "cuda", torch.compile, FlashAttention-3
(flash_attn_interface, causal), a sliding-window call of FA2 (flash_attn), NCCL process group,
fused AdamW, a Triton kernel behind a USE_TRITON env switch and one behind an attribute set True
in __init__ (``self.use_fused_residual``), each with a plain torch path.

It prints two final lines from one number (4 and 8 decimals), as the baseline does.
"""

import math
import os
import subprocess
import time

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from flash_attn import flash_attn_func as fa2_func
from flash_attn_interface import flash_attn_func

try:
    import triton
    import triton.language as tl
except ImportError:  # some records guard it, most do not
    triton = None


class Hyperparameters:
    data_path = os.environ.get("DATA_PATH", "./data/datasets/fineweb10B_sp1024")
    vocab_size = int(os.environ.get("VOCAB_SIZE", "1024"))
    iterations = int(os.environ.get("ITERATIONS", "200"))
    train_seq_len = int(os.environ.get("TRAIN_SEQ_LEN", "256"))
    model_dim = int(os.environ.get("MODEL_DIM", "128"))
    num_heads = int(os.environ.get("NUM_HEADS", "4"))
    seed = int(os.environ.get("SEED", "1337"))
    use_triton = bool(int(os.environ.get("USE_TRITON", "1")))
    window = int(os.environ.get("WINDOW", "16"))
    lr = float(os.environ.get("LR", "0.01"))


if triton is not None:
    @triton.jit
    def scale_kernel(x_ptr, out_ptr, n, scale, BLOCK: tl.constexpr):
        pid = tl.program_id(0)
        offs = pid * BLOCK + tl.arange(0, BLOCK)
        mask = offs < n
        tl.store(out_ptr + offs, tl.load(x_ptr + offs, mask=mask) * scale, mask=mask)

    @triton.jit
    def add_kernel(x_ptr, y_ptr, out_ptr, n, BLOCK: tl.constexpr):
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < n
        tl.store(out_ptr + offs, tl.load(x_ptr + offs, mask=mask) + tl.load(y_ptr + offs, mask=mask), mask=mask)


def fused_add(x, y):
    out = torch.empty_like(x)
    add_kernel[(triton.cdiv(x.numel(), 256),)](x, y, out, x.numel(), BLOCK=256)
    return out


def scaled(x, scale, h):
    if h.use_triton and triton is not None:
        out = torch.empty_like(x)
        n = x.numel()
        scale_kernel[(triton.cdiv(n, 256),)](x, out, n, scale, BLOCK=256)
        return out
    return x * scale


def load_shard(path):
    header = np.fromfile(path, dtype="<i4", count=256)
    assert header[0] == 20240520, "bad shard"
    tokens = np.fromfile(path, dtype="<u2", count=int(header[2]), offset=1024)
    return torch.from_numpy(tokens.astype(np.int64)).pin_memory()


class Block(torch.nn.Module):
    def __init__(self, dim, heads, window):
        super().__init__()
        self.heads, self.window = heads, window
        self.qkv = torch.nn.Linear(dim, 3 * dim, bias=False)
        self.proj = torch.nn.Linear(dim, dim, bias=False)
        self.use_fused_residual = True  # a switch in the code, not in the environment
        self.mlp = torch.nn.Sequential(torch.nn.Linear(dim, 2 * dim), torch.nn.GELU(), torch.nn.Linear(2 * dim, dim))

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = self.qkv(F.rms_norm(x, (d,))).view(b, t, 3, self.heads, d // self.heads).unbind(2)
        y = flash_attn_func(q, k, v, causal=True)  # (b, t, h, hd), FA3 layout
        local = fa2_func(q, k, v, causal=True, window_size=(self.window, 0))
        x = x + self.proj((y + local).reshape(b, t, d))
        if self.use_fused_residual and triton is not None:
            return fused_add(x, self.mlp(F.rms_norm(x, (d,))))
        return x + self.mlp(F.rms_norm(x, (d,)))


class GPT(torch.nn.Module):
    def __init__(self, h):
        super().__init__()
        self.emb = torch.nn.Embedding(h.vocab_size, h.model_dim)
        self.blocks = torch.nn.ModuleList([Block(h.model_dim, h.num_heads, h.window) for _ in range(2)])
        self.head = torch.nn.Linear(h.model_dim, h.vocab_size, bias=False)
        torch.nn.init.zeros_(self.head.weight)

    def forward(self, x):
        z = self.emb(x)
        for blk in self.blocks:
            z = blk(z)
        return self.head(F.rms_norm(z, (z.size(-1),)))


def main():
    if not torch.cuda.is_available():
        raise RuntimeError("CUDA is required")
    h = Hyperparameters()
    rank = int(os.environ.get("RANK", "0"))
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    dist.init_process_group(backend="nccl", world_size=world_size, rank=rank)
    torch.cuda.set_device(rank)
    device = torch.device("cuda", rank)
    torch.manual_seed(h.seed)
    torch.cuda.manual_seed_all(h.seed)
    props = torch.cuda.get_device_properties(device)
    print(f"gpu:{props.name} sms:{props.multi_processor_count} cap:{torch.cuda.get_device_capability()} "
          f"count:{torch.cuda.device_count()}")
    smi = subprocess.run(["nvidia-smi"], capture_output=True, text=True, check=False)
    print(smi.stdout.splitlines()[0] if smi.stdout else "nvidia-smi: none")

    train_tokens = load_shard(os.path.join(h.data_path, "fineweb_train_000000.bin"))
    val = load_shard(os.path.join(h.data_path, "fineweb_val_000000.bin")).to(device, non_blocking=True)
    model = GPT(h).cuda()
    compiled = torch.compile(model, dynamic=False, fullgraph=True)
    opt = torch.optim.AdamW(model.parameters(), lr=h.lr, fused=True)
    g = torch.Generator().manual_seed(h.seed)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for step in range(h.iterations):
        i = int(torch.randint(0, train_tokens.numel() - h.train_seq_len - 1, (8,), generator=g)[0])
        span = train_tokens[i:i + h.train_seq_len + 1].to(device="cuda", non_blocking=True)
        x, y = span[:-1][None], span[1:][None]
        with torch.autocast(device_type="cuda", dtype=torch.bfloat16):
            loss = F.cross_entropy(compiled(x).float().reshape(-1, h.vocab_size), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    end.record()
    torch.cuda.synchronize()
    print(f"train_time:{start.elapsed_time(end):.0f}ms peak_mem:{torch.cuda.max_memory_allocated() >> 20}MiB")
    torch.cuda.empty_cache()

    seq = h.train_seq_len
    n = (val.numel() - 1) // seq
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    count = torch.zeros((), device="cuda", dtype=torch.float64)
    model.eval()
    with torch.inference_mode():
        for b in range(n):
            span = val[b * seq:(b + 1) * seq + 1]
            x, y = span[:-1][None], span[1:][None]
            with torch.autocast(device_type="cuda", dtype=torch.bfloat16):
                logits = scaled(model(x).float(), 1.0, h)
            nll = F.cross_entropy(logits.reshape(-1, h.vocab_size), y.reshape(-1), reduction="none")
            loss_sum += nll.double().sum()
            count += nll.numel()
    if world_size > 1:
        dist.all_reduce(loss_sum)
        dist.all_reduce(count)
    val_loss = (loss_sum / count).item()
    val_bpb = val_loss / math.log(2.0)
    print(f"final_cuda val_loss:{val_loss:.4f} val_bpb:{val_bpb:.4f} eval_time:{time.perf_counter():.0f}ms")
    print(f"final_cuda_exact val_loss:{val_loss:.8f} val_bpb:{val_bpb:.8f}")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
