"""The rank of each test sample's target, as the run's own test phase scored it.

The paired tests of the harness need every test sample's rank. Re-scoring the saved model after the run cannot give
them under continual training: the best epoch's checkpoint is the model before the test phase trained, the model
after it has seen every test day. So the harness listens while the run goes on: every full-sort batch that the
trainer scores (validation and test, one process) passes through :class:`TestRankRecorder`, which keeps the ranks
of the test split's samples, in the split's order.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from recbole_tasrec.trainer import TASRecTrainer


def sample_keys(interaction: Any, config: Any) -> np.ndarray:
    """``(N, 3 + L)`` rows that tell samples apart: session, prefix length, target and the prefix's items."""
    item, length = config["ITEM_ID_FIELD"], config["ITEM_LIST_LENGTH_FIELD"]
    columns = [interaction[field].long().reshape(-1, 1) for field in (config["USER_ID_FIELD"], length, item)]
    columns.append(interaction[item + config["LIST_SUFFIX"]].long())
    return torch.cat(columns, 1).cpu().numpy()


class TestRankRecorder:
    """Keeps the rank (1 = top, ties against the target, padding never ranked) of each scored sample of
    ``test_part``; :meth:`ranks` gives them in ``test_part``'s order."""

    __test__ = False  # not a pytest class, whatever its name

    def __init__(self, test_part: Any, config: Any) -> None:
        self.config = config
        self.keys = sample_keys(test_part.inter_feat, config)
        self.sessions = np.unique(self.keys[:, 0])
        self.scored_keys: list[np.ndarray] = []
        self.scored_ranks: list[np.ndarray] = []

    def observe(
        self, interaction: Any, scores: torch.Tensor, positive_u: torch.Tensor, positive_i: torch.Tensor
    ) -> None:
        """One scored batch (``scores``: ``(batch, n_items)``, the padding item already at ``-inf``)."""
        keys = sample_keys(interaction, self.config)
        test = np.isin(keys[:, 0], self.sessions)  # validation sessions are never test sessions
        if not test.any():
            return
        target = scores[positive_u, positive_i].unsqueeze(1)
        ranks = torch.zeros(len(keys), dtype=torch.long, device=scores.device)
        ranks[positive_u] = (scores[positive_u] >= target).sum(1)
        self.scored_keys.append(keys[test])
        self.scored_ranks.append(ranks.cpu().numpy()[test])

    def ranks(self) -> np.ndarray:
        """Each test sample's rank, the last scoring of it if several; refuses a sample never scored."""
        scored = np.concatenate(self.scored_keys) if self.scored_keys else self.keys[:0]
        _, ids = np.unique(np.concatenate([self.keys, scored]), axis=0, return_inverse=True)
        ids = ids.reshape(-1)
        test_ids, scored_ids = ids[: len(self.keys)], ids[len(self.keys) :]
        by_id = np.zeros(ids.max() + 1 if len(ids) else 0, dtype=np.int32)
        if len(scored_ids):
            reversed_ids, first = np.unique(scored_ids[::-1], return_index=True)
            by_id[reversed_ids] = np.concatenate(self.scored_ranks)[len(scored_ids) - 1 - first]
        ranks = by_id[test_ids]
        if (ranks == 0).any():
            raise RuntimeError(
                f"{int((ranks == 0).sum())} of the {len(ranks)} test samples were not scored in this process: "
                "the harness scores in one process (leave out --nproc and --world_size)"
            )
        return ranks


@contextlib.contextmanager
def recording_test_ranks(test_part: Any, config: Any) -> Iterator[TestRankRecorder]:
    """While inside, every full-sort batch any :class:`~recbole_tasrec.trainer.TASRecTrainer` scores is shown to
    the recorder it yields (the trainer's one scoring step, RecBole's ``_full_sort_batch_eval``, wrapped)."""
    recorder = TestRankRecorder(test_part, config)
    own = vars(TASRecTrainer).get("_full_sort_batch_eval")
    score_batch = TASRecTrainer._full_sort_batch_eval

    def scored(trainer: TASRecTrainer, batched_data: Any) -> Any:
        interaction, scores, positive_u, positive_i = score_batch(trainer, batched_data)
        recorder.observe(interaction, scores, positive_u, positive_i)
        return interaction, scores, positive_u, positive_i

    TASRecTrainer._full_sort_batch_eval = scored
    try:
        yield recorder
    finally:
        if own is None:
            del TASRecTrainer._full_sort_batch_eval
        else:
            TASRecTrainer._full_sort_batch_eval = own
