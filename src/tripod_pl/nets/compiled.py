"""Optional ``torch.compile`` of a network, with a fallback to eager execution that says why
(docs/architecture.md, "Speed options").

Example:
    >>> run = CompiledCall(encoder, "encoder")
    >>> h = run(x)   # compiled on the first call; if compiling fails, one warning and eager from then on
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import nn

__all__ = ["CompiledCall"]


class CompiledCall:
    """Calls ``torch.compile(module)`` instead of ``module``; not a module itself, so the state dict, devices and
    checkpoints are those of ``module`` alone.

    Compilation happens on the first call (and on recompilations). If it fails (no C++ compiler, an operation
    the compiler does not support, ...), the call is repeated eagerly: if that succeeds, a single warning names
    the network and the compiler's error, and the network runs eagerly from then on (``reason`` keeps the
    error); if the eager call fails too, the error was the caller's and propagates unchanged.
    """

    def __init__(self, module: nn.Module, name: str, **options: Any) -> None:
        self.module, self.name, self.options = module, name, options
        self.compiled = torch.compile(module, **options)
        #: why compilation was abandoned (``None`` while it is in use)
        self.reason: str | None = None

    def __reduce__(self) -> tuple[Any, ...]:
        """Copies and pickles rebuild the wrapper around (the copy of) the module, compiling afresh."""
        return (_rebuild, (self.module, self.name, self.options))

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.reason is not None:
            return self.module(*args, **kwargs)
        try:
            return self.compiled(*args, **kwargs)
        except Exception as err:  # noqa: BLE001 - any compiler failure falls back; the eager call re-raises the caller's
            out = self.module(*args, **kwargs)
            lines = str(err).strip().splitlines()
            self.reason = f"{type(err).__name__}: {lines[0] if lines else ''}"[:300]
            warnings.warn(
                f"torch.compile of the {self.name} failed, running it eagerly ({self.reason})",
                RuntimeWarning,
                stacklevel=2,
            )
            return out


def _rebuild(module: nn.Module, name: str, options: dict[str, Any]) -> CompiledCall:
    return CompiledCall(module, name, **options)
