r"""CSRM's outer memory: the most recent session representations and their top-k cosine read-out. torch only.

The memory is a set of buffers, so it is part of ``state_dict`` and of every checkpoint. Rows are kept in the
order they were written (oldest first); each row carries the day of the sample that wrote it. Two regions:

* ``memory``: what reads see (the ``size`` most recent committed rows);
* ``staging``: rows written at evaluation time that are not yet readable, because their day has not ended
  (streaming evaluation commits a day's rows once a sample of a later day arrives).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["OuterMemory"]

#: the day of an empty slot: never readable
EMPTY = torch.iinfo(torch.long).max


class OuterMemory(nn.Module):
    r"""A FIFO of ``size`` representations with CSRM's read-out (the paper's outer memory encoder).

    .. math::
        \mathrm{sim}_i = \cos(q, m_i), \qquad
        w = \operatorname{softmax}(\mathrm{top}_k\, \mathrm{sim}), \qquad
        c^{o} = \sum_{i \in \mathrm{top}_k} w_i\, m_i

    over the readable slots only; a query with no readable slot reads itself (as the authors' code does for the
    first batch, when the memory is still empty). Stored rows are detached: gradients reach the query through
    the similarities, never the memory (as in the authors' code, which feeds the memory back as a constant).
    """

    def __init__(self, size: int, dim: int, k: int) -> None:
        super().__init__()
        if size < 1 or k < 1:
            raise ValueError(f"the outer memory needs memory_size >= 1 and k >= 1, got {size} and {k}")
        self.size, self.k = size, min(k, size)
        for name in ("memory", "staging"):
            self.register_buffer(name, torch.zeros(size, dim))
            self.register_buffer(f"{name}_day", torch.full((size,), EMPTY, dtype=torch.long))

    def read(self, query: Tensor, readable: Tensor) -> Tensor:
        """``query``: ``(B, H)``; ``readable``: ``(B, size)`` bool -> ``(B, H)``."""
        sim = F.normalize(query, dim=-1, eps=1e-8) @ F.normalize(self.memory, dim=-1, eps=1e-8).t()  # cosines
        sim = sim.masked_fill(~readable, torch.finfo(sim.dtype).min)  # weight exactly 0 after the softmax
        top, index = sim.topk(self.k, dim=1)
        weights = torch.zeros_like(sim).scatter_(1, index, torch.softmax(top, dim=1))  # (B, size), k non-zeros
        read = weights @ self.memory
        return torch.where(readable.any(1, keepdim=True), read, query)

    def readable_in_training(self, batch: int) -> Tensor:
        """Training reads every filled slot, whatever its day (the authors' code)."""
        return (self.memory_day != EMPTY).unsqueeze(0).expand(batch, -1)

    def readable_before(self, day: Tensor) -> Tensor:
        """Evaluation reads only slots written by samples of earlier days: ``(B, size)``."""
        return self.memory_day.unsqueeze(0) < day.unsqueeze(1)

    @torch.no_grad()
    def write(self, rows: Tensor, day: Tensor) -> None:
        """Training: commit anything staged, then append ``rows`` (readable by the next batch)."""
        self.commit_before(torch.tensor(EMPTY, device=day.device))
        self._append("memory", rows, day)

    @torch.no_grad()
    def stage(self, rows: Tensor, day: Tensor) -> None:
        """Streaming evaluation: hold ``rows`` back until their day is over (see :meth:`commit_before`)."""
        self._append("staging", rows, day)

    @torch.no_grad()
    def commit_before(self, day: Tensor) -> None:
        """Move the staged rows of days before ``day`` into the memory, in the order they were staged."""
        ready = self.staging_day < day
        if bool(ready.any()):
            self._append("memory", self.staging[ready], self.staging_day[ready])
            waiting = ~ready
            rows, days = self.staging[waiting], self.staging_day[waiting]
            self.staging_day = torch.full_like(self.staging_day, EMPTY)
            self._append("staging", rows, days)

    def _append(self, name: str, rows: Tensor, day: Tensor) -> None:
        """Append at the end, drop the oldest: the buffer keeps the ``size`` most recent rows."""
        buffer, buffer_day = getattr(self, name), getattr(self, f"{name}_day")
        filled = buffer_day != EMPTY
        kept = torch.cat([buffer[filled], rows.detach().to(buffer.dtype)])[-self.size :]
        kept_day = torch.cat([buffer_day[filled], day.long()])[-self.size :]
        # new tensors, never in place: the batch's read saved the old memory for its backward pass
        setattr(self, name, torch.cat([kept, buffer.new_zeros(self.size - len(kept), buffer.size(1))]))
        setattr(self, f"{name}_day", torch.cat([kept_day, buffer_day.new_full((self.size - len(kept),), EMPTY)]))
