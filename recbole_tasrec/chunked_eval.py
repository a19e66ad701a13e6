"""Full-sort evaluation in item chunks: the same top-k metrics without a ``(B, n_items)`` score matrix.

RecBole's full-sort evaluation scores every item for a batch, ``(B, n_items)`` floats (128 x 1M = 512 MB),
and its collector then builds an int matrix of the same size for the positives. With ``eval_item_chunk: c``
the scores are computed ``(B, c)`` at a time (``s @ X[a:a+c]^T`` for a model with ``full_sort_factors``), the
padding item and the history masked as RecBole does, and a running top-``K`` kept (``K = max(topk)``). The
collector then gets a compressed score matrix of ``K + P`` columns (``P`` the most positives of a row): the
top-``K`` scores in order, and one ``-inf`` column for each positive outside them, with the positives
renumbered to their columns. Its ``torch.topk`` and positive matrix then give exactly the hits and positive
counts of the full matrix, so every ``rec.topk`` metric (Recall, MRR, NDCG, Hit, Precision) is unchanged.

Used only when the metrics need nothing but ``rec.topk`` (item-id metrics such as ItemCoverage need
``rec.items``: those runs keep the full matrix).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor

__all__ = ["chunked_full_sort", "running_topk", "score_blocks", "uses_chunks"]


def uses_chunks(config: Any, collector: Any) -> int:
    """The chunk width to evaluate with (``eval_item_chunk``), or 0 for RecBole's one full matrix."""
    chunk = config["eval_item_chunk"]
    if not chunk:
        return 0
    if isinstance(chunk, bool) or int(chunk) < 1:
        raise ValueError(f"eval_item_chunk must be a positive number of items (or 0: no chunks), got {chunk!r}")
    register = collector.register
    needs_only_topk = not any(register.need(key) for key in ("rec.items", "rec.meanrank", "rec.score", "data.label"))
    return int(chunk) if needs_only_topk else 0


def score_blocks(model: Any, interaction: Any, n_items: int, chunk: int) -> Iterator[tuple[int, Tensor]]:
    """``(start, scores[:, start:start + chunk])`` over all items. A model with ``full_sort_factors`` (session
    vectors and item table, scores = ``s X^T``) computes one block at a time; another is scored whole, then cut."""
    factors = getattr(model, "full_sort_factors", None)
    if factors is None:
        scores = model.full_sort_predict(interaction).view(-1, n_items)
        for start in range(0, n_items, chunk):
            yield start, scores[:, start : start + chunk].clone()
        return
    session, items = factors(interaction)
    for start in range(0, n_items, chunk):
        yield start, session @ items[start : start + chunk].t()


def running_topk(blocks: Iterator[tuple[int, Tensor]], k: int, history: Any = None) -> tuple[Tensor, Tensor]:
    """Top-``k`` scores and item ids of each row over all ``blocks``, with item 0 and the ``history`` pairs
    ``(rows, items)`` at ``-inf`` (RecBole's masking); at most one block and ``2k`` columns alive."""
    best_values = best_items = None
    for start, block in blocks:
        end = start + block.size(1)
        if start == 0:
            block[:, 0] = float("-inf")
        if history is not None:
            rows, cols = history
            inside = (cols >= start) & (cols < end)
            block[rows[inside], cols[inside] - start] = float("-inf")
        values, columns = torch.topk(block, min(k, block.size(1)), dim=1)
        items = columns + start
        if best_values is not None:
            values, where = torch.topk(
                torch.cat([best_values, values], 1), min(k, best_values.size(1) + values.size(1))
            )
            items = torch.cat([best_items, items], 1).gather(1, where)
        best_values, best_items = values, items
    if best_values is None:
        raise ValueError("no item to rank: the catalogue is empty")
    return best_values, best_items


def chunked_full_sort(
    model: Any, batched_data: tuple, n_items: int, k: int, chunk: int, device: Any
) -> tuple[Any, Tensor, Tensor, Tensor]:
    """RecBole's ``_full_sort_batch_eval`` result, with the compressed score matrix of the module docstring."""
    interaction, history, positive_u, positive_i = batched_data
    interaction = interaction.to(device)
    if history is not None:
        history = (history[0].to(device), history[1].to(device))
    values, items = running_topk(score_blocks(model, interaction, n_items, chunk), k, history)
    rows, k = values.size(0), values.size(1)
    # each distinct positive (row, item), sorted by row; j = its index among its row's positives
    keys = torch.unique(positive_u.to(device).long() * n_items + positive_i.to(device).long())
    pos_u, pos_i = keys // n_items, keys % n_items
    per_row = torch.bincount(pos_u, minlength=rows)
    j = torch.arange(keys.numel(), device=device) - (torch.cumsum(per_row, 0) - per_row)[pos_u]
    hit = items[pos_u] == pos_i.unsqueeze(1)
    column = torch.where(hit.any(1), hit.long().argmax(1), k + j)
    width = k + int(per_row.max()) if keys.numel() else k
    compressed = values.new_full((rows, width), float("-inf"))
    compressed[:, :k] = values
    return interaction, compressed, pos_u, column
