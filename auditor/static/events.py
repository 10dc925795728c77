"""Events the dataflow layer records while it walks the program, for the detectors to judge.

An event is a place where something compliance-relevant happens: a score is committed (per-token
loss accumulated into what becomes val_loss/val_bpb), a gradient step is taken, a table/cache is
written with validation-derived keys, data is serialized into the artifact, the network is used.
Each event carries the *frames* through which it was reached from the entry point: one frame per
function on the call chain, with the statement that led further (``anchor``), the loops and the
``if`` guards around it. Frames are what lets a detector ask "was this token scored before the
optimizer step, inside the same chunk loop?" across helper functions and methods.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from auditor.static.values import Chain

if TYPE_CHECKING:
    from auditor.static.program import FileInfo, FuncInfo


@dataclass(frozen=True, eq=False)
class Guard:
    """An ``if`` condition around code: the code runs when ``test`` is truthy == ``polarity``."""

    test: ast.expr
    polarity: bool
    func: FuncInfo
    line: int
    node: ast.AST | None = None  # the ``if`` statement (for log-confirmed reachability)


@dataclass(frozen=True, eq=False)
class Frame:
    func: FuncInfo
    anchor: ast.AST  # the statement (or call) in this function on the way to the event
    loops: tuple[ast.AST, ...]  # enclosing loops (outermost first), in this function
    guards: tuple[Guard, ...]  # enclosing guards, in this function
    nograd: bool  # inside torch.no_grad()/inference_mode() (or a decorated function)

    def key(self) -> tuple:
        return (self.func.id, id(self.anchor))


@dataclass(eq=False)
class Event:
    kind: str  # score | backward | step | update | artifact | net | calib | best
    node: ast.AST
    file: FileInfo
    line: int
    labels: dict[str, Chain]  # labels of the relevant value (the accumulated loss, the key, ...)
    frames: tuple[Frame, ...]  # outermost first; the last frame holds ``node``
    order: int = 0  # encounter order in the abstract run (program order, roughly)
    info: dict = field(default_factory=dict)

    @property
    def func(self) -> FuncInfo:
        return self.frames[-1].func

    def key(self) -> tuple:
        return (self.kind, id(self.node)) + tuple(f.key() for f in self.frames)

    def rebased(self, outer: Frame, order: int) -> Event:
        return Event(
            self.kind, self.node, self.file, self.line, self.labels, (outer,) + self.frames, order, self.info
        )
