"""The training loop: Muon + AdamW, warmdown, EMA, depth recurrence switched on mid-run, and a
wallclock cap that leaves GPTQ_RESERVE_SECONDS of the 600 s for the Hessians and quantization."""

import contextlib
import copy
import random
import time

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

from .data import TrainLoader
from .evaluate import autocast_for, eval_val, sync_device
from .logging_fmt import log, stop_line, train_progress_line, val_progress_line
from .model import GPT
from .muon import OptimizerSet


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def compile_wanted(h, device) -> bool:
    return h.compile_enabled == "1" or (h.compile_enabled == "auto" and torch.device(device).type == "cuda")


def lr_scale(h, frac: float, step: int) -> float:
    """Linear warm-up over LR_WARMUP_STEPS, flat, then linear warmdown over the last
    WARMDOWN_FRAC of training (by wallclock when capped, else by steps) down to MIN_LR."""
    warm = min(1.0, (step + 1) / h.lr_warmup_steps) if h.lr_warmup_steps > 0 else 1.0
    if h.warmdown_frac > 0 and frac >= 1.0 - h.warmdown_frac:
        return warm * max((1.0 - frac) / h.warmdown_frac, h.min_lr)
    return warm


def train_model(h, device, val_data) -> tuple[GPT, dict]:
    """Train from scratch; return the model with EMA weights loaded, and timing facts."""
    model = GPT(h).to(device)
    log(f"model_params:{sum(p.numel() for p in model.parameters())}")
    forward = torch.compile(model) if compile_wanted(h, device) else model
    runner = DDP(forward, device_ids=[h.local_rank] if device.type == "cuda" else None,
                 broadcast_buffers=False) if h.distributed else forward
    optimizers = OptimizerSet(h, model)
    loader = TrainLoader(h.train_files, h.train_seq_len, h.rank, h.world_size, seed=h.seed)
    local_seqs = h.train_batch_tokens // (h.world_size * h.grad_accum_steps * h.train_seq_len)
    tokens_per_step = local_seqs * h.train_seq_len * h.grad_accum_steps * h.world_size

    max_ms = None
    if h.max_wallclock_seconds > 0:
        max_ms = 1000.0 * (h.max_wallclock_seconds - h.gptq_reserve_seconds)
        log(f"gptq:reserving {h.gptq_reserve_seconds:.0f}s, effective={max_ms:.0f}ms")

    def train_step(step: int, scale: float) -> torch.Tensor:
        optimizers.zero_grad()
        total = torch.zeros((), device=device)
        for micro in range(h.grad_accum_steps):
            x, y = loader.next_batch(local_seqs, device)
            defer_sync = h.distributed and micro < h.grad_accum_steps - 1
            with runner.no_sync() if defer_sync else contextlib.nullcontext():
                with autocast_for(device):
                    loss = runner(x, y)
                (loss / h.grad_accum_steps).backward()
            total += loss.detach()
        ramp = min(step / h.muon_momentum_warmup_steps, 1.0) if h.muon_momentum_warmup_steps > 0 else 1.0
        optimizers.set_muon_momentum((1 - ramp) * h.muon_momentum_warmup_start + ramp * h.muon_momentum)
        optimizers.set_lr_scale(scale)
        if h.grad_clip_norm > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), h.grad_clip_norm)
        optimizers.step()
        return total / h.grad_accum_steps

    if h.warmup_steps > 0:  # compile/allocator warm-up on training data, then restore everything
        initial_model = copy.deepcopy(model.state_dict())
        initial_opts = copy.deepcopy(optimizers.state_dicts())
        phases = [("warmup_step", False)] + ([("loop_warmup_step", True)] if h.num_loops > 0 else [])
        for name, looping in phases:
            model.looping_active = looping
            if looping:
                log(f"loop_warmup:enabled encoder:{model.looped_schedule[0]} decoder:{model.looped_schedule[1]}")
            for i in range(h.warmup_steps):
                train_step(i, 1.0)
                if i <= 5 or (i + 1) % 10 == 0 or i + 1 == h.warmup_steps:
                    log(f"{name}: {i + 1}/{h.warmup_steps}")
        model.looping_active = False
        model.load_state_dict(initial_model)
        optimizers.load_state_dicts(initial_opts)
        loader = TrainLoader(h.train_files, h.train_seq_len, h.rank, h.world_size, seed=h.seed)

    ema_names = list(model.state_dict().keys())
    ema = [t.detach().float().clone() for t in model.state_dict().values()]
    train_ms, step, stop_after, elapsed_ms = 0.0, 0, None, 0.0
    logged_losses = []
    sync_device(device)
    t_start = t0 = time.perf_counter()
    while True:
        last_step = step == h.iterations or (stop_after is not None and step >= stop_after)
        if last_step or (h.val_loss_every > 0 and step % h.val_loss_every == 0):
            sync_device(device)
            train_ms += 1000.0 * (time.perf_counter() - t0)
            val_loss, val_bpb = eval_val(h, device, val_data, model)
            log(val_progress_line(step, h.iterations, val_loss, val_bpb))
            sync_device(device)
            t0 = time.perf_counter()
        if last_step:
            if stop_after is not None and step < h.iterations:
                log(stop_line(train_ms, step, h.iterations))
            break

        # Schedule position: by wallclock when capped (the same value on every rank), else by steps.
        frac = elapsed_ms / max(max_ms, 1e-9) if max_ms is not None else step / max(h.iterations, 1)
        if h.num_loops > 0 and not model.looping_active and frac >= h.enable_looping_at:
            model.looping_active = True
            log(f"layer_loop:enabled step:{step} frac:{frac:.3f} "
                f"encoder:{model.looped_schedule[0]} decoder:{model.looped_schedule[1]}")
        train_loss = train_step(step, lr_scale(h, frac, step))
        with torch.no_grad():
            torch._foreach_lerp_(ema, [t.detach().float() for t in model.state_dict().values()], 1.0 - h.ema_decay)
        step += 1

        elapsed_ms = train_ms + 1000.0 * (time.perf_counter() - t0)
        if h.distributed and max_ms is not None:  # ranks must agree on the schedule and the stop step
            shared = torch.tensor(elapsed_ms, device=device, dtype=torch.float64)
            dist.all_reduce(shared, op=dist.ReduceOp.MAX)
            elapsed_ms = float(shared)
        reached_cap = max_ms is not None and elapsed_ms >= max_ms
        if h.train_log_every > 0 and (step <= 5 or step % h.train_log_every == 0 or reached_cap):
            logged_losses.append((step, round(train_loss.item(), 4)))
            log(train_progress_line(step, h.iterations, train_loss.item(), elapsed_ms, step * tokens_per_step))
        if stop_after is None and reached_cap:
            stop_after = step

    if device.type == "cuda":
        log(f"peak memory allocated: {torch.cuda.max_memory_allocated() // 2**20} MiB "
            f"reserved: {torch.cuda.max_memory_reserved() // 2**20} MiB")
    log("ema:applying EMA weights")
    current = model.state_dict()
    model.load_state_dict({name: t.to(current[name].dtype) for name, t in zip(ema_names, ema)})
    return model, {"train_time_ms": train_ms, "steps": step, "t_start": t_start, "train_losses": logged_losses}
