"""Muon (momentum + Newton–Schulz orthogonalization) for the block matrices, AdamW for the rest.

MuonEq-R variant as in the records: each row of the (Nesterov) momentum is normalized before
orthogonalization. Under DDP each rank orthogonalizes a round-robin share of the matrices and
one all-reduce of the flat update buffer gives every rank all updates.
"""

import torch
import torch.distributed as dist

# Quintic Newton–Schulz coefficients (Keller Jordan's Muon): fast, pushes every singular
# value into roughly [0.7, 1.2] rather than exactly 1, which is what the optimizer needs.
NS_COEFFS = (3.4445, -4.7750, 2.0315)


def zeropower_via_newtonschulz5(g: torch.Tensor, steps: int = 5, eps: float = 1e-7) -> torch.Tensor:
    """Approximate U V^T of g = U S V^T (the nearest semi-orthogonal matrix)."""
    a, b, c = NS_COEFFS
    x = g.bfloat16() if g.is_cuda else g.float()
    x = x / (x.norm() + eps)
    transposed = x.size(0) > x.size(1)
    if transposed:  # iterate on the wide orientation: the Gram matrix is the small one
        x = x.T
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    return x.T if transposed else x


class Muon(torch.optim.Optimizer):
    def __init__(self, params, lr: float, momentum: float, backend_steps: int = 5, nesterov: bool = True,
                 weight_decay: float = 0.0, row_normalize: bool = True):
        defaults = {"lr": lr, "momentum": momentum, "backend_steps": backend_steps, "nesterov": nesterov,
                    "weight_decay": weight_decay, "row_normalize": row_normalize}
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        distributed = dist.is_available() and dist.is_initialized()
        world_size = dist.get_world_size() if distributed else 1
        rank = dist.get_rank() if distributed else 0
        for group in self.param_groups:
            params = group["params"]
            if not params:
                continue
            flat = torch.zeros(sum(p.numel() for p in params), device=params[0].device, dtype=torch.float32)
            offset = 0
            for i, p in enumerate(params):
                if i % world_size == rank and p.grad is not None:
                    flat[offset:offset + p.numel()] = self._update(p, group).reshape(-1)
                offset += p.numel()
            if distributed:
                dist.all_reduce(flat, op=dist.ReduceOp.SUM)
            offset = 0
            for p in params:
                if group["weight_decay"] > 0:
                    p.mul_(1.0 - group["lr"] * group["weight_decay"])
                p.add_(flat[offset:offset + p.numel()].view_as(p).to(p.dtype), alpha=-group["lr"])
                offset += p.numel()

    def _update(self, p: torch.nn.Parameter, group: dict) -> torch.Tensor:
        state = self.state[p]
        if "momentum_buffer" not in state:
            state["momentum_buffer"] = torch.zeros_like(p.grad)
        buf = state["momentum_buffer"]
        buf.mul_(group["momentum"]).add_(p.grad)
        g = p.grad.add(buf, alpha=group["momentum"]) if group["nesterov"] else buf
        if group["row_normalize"]:
            g = g / g.float().norm(dim=-1, keepdim=True).clamp_min(1e-7).to(g.dtype)
        update = zeropower_via_newtonschulz5(g, steps=group["backend_steps"]).float()
        # Keep the RMS of the update comparable between tall and wide matrices.
        return update * max(1.0, p.size(0) / p.size(1)) ** 0.5


class OptimizerSet:
    """Muon for the block matrices, AdamW for embeddings and small control tensors, Adam for an
    untied head. Every group remembers its base lr so the schedule can scale it."""

    def __init__(self, h, model):
        matrix_params, scalar_params, embed_params = [], [], [model.tok_emb.weight]
        embed_ids = {id(model.tok_emb.weight)}
        if model.bigram is not None:
            embed_params.append(model.bigram.table.weight)
            embed_ids.add(id(model.bigram.table.weight))
        head_ids = {id(model.lm_head.weight)} if model.lm_head is not None else set()
        for name, p in model.named_parameters():
            if id(p) in embed_ids or id(p) in head_ids:
                continue
            is_matrix = p.ndim == 2 and (name.startswith(("blocks.", "bigram.proj")))
            (matrix_params if is_matrix else scalar_params).append(p)
        token_lr = h.tied_embed_lr if h.tie_embeddings else h.embed_lr
        self.muon = Muon(matrix_params, lr=h.matrix_lr, momentum=h.muon_momentum,
                         backend_steps=h.muon_backend_steps, weight_decay=h.muon_wd,
                         row_normalize=h.muon_row_normalize)
        adam_kw = {"betas": (h.beta1, h.beta2), "eps": h.adam_eps}
        self.optimizers = [
            torch.optim.AdamW([{"params": embed_params, "lr": token_lr}], weight_decay=h.embed_wd, **adam_kw),
            self.muon,
            torch.optim.AdamW([{"params": scalar_params, "lr": h.scalar_lr}], weight_decay=h.adam_wd, **adam_kw),
        ]
        if model.lm_head is not None:
            self.optimizers.append(torch.optim.Adam([{"params": [model.lm_head.weight], "lr": h.head_lr}], **adam_kw))
        for opt in self.optimizers:
            for group in opt.param_groups:
                group["base_lr"] = group["lr"]

    def set_lr_scale(self, scale: float) -> None:
        for opt in self.optimizers:
            for group in opt.param_groups:
                group["lr"] = group["base_lr"] * scale

    def set_muon_momentum(self, momentum: float) -> None:
        for group in self.muon.param_groups:
            group["momentum"] = momentum

    def zero_grad(self) -> None:
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=True)

    def step(self) -> None:
        for opt in self.optimizers:
            opt.step()
        self.zero_grad()

    def state_dicts(self) -> list[dict]:
        return [opt.state_dict() for opt in self.optimizers]

    def load_state_dicts(self, states: list[dict]) -> None:
        for opt, state in zip(self.optimizers, states, strict=True):
            opt.load_state_dict(state)
