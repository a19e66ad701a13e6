"""The NumPy session encoder that serving ranks with equals ``TASRec.forward`` for every setting it reads."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recbole_tasrec.harness.random_model import random_recommender
from recbole_tasrec.serve.day_training import TrainOptions
from recbole_tasrec.serve.session_encoder import SessionEncoder

N_ITEMS = 30


def padded_sessions(rng: np.random.Generator, n: int, length: int) -> tuple[np.ndarray, np.ndarray]:
    """Right-padded sessions of 1..length clicks over few items, so that items repeat and loop."""
    lengths = rng.integers(1, length + 1, n)
    lengths[0], lengths[-1] = 1, length  # a single click (no edge) and a full session
    seq = rng.integers(1, 8, (n, length)) * (np.arange(length) < lengths[:, None])
    return seq.astype(np.int64), lengths.astype(np.int64)


@pytest.mark.parametrize(
    "settings",
    [
        {},
        {"step": 2, "session_edge_weight": "binary"},
        {"use_temporal_graph": False},  # TASRec-base
        {"use_session_graph": False},  # TASRec-temp
    ],
    ids=["default", "step2-binary", "base", "temp"],
)
def test_the_encoder_equals_the_model(settings: dict) -> None:
    recommender = random_recommender(N_ITEMS, days=2, sessions_per_day=50, embedding_size=16, **settings)
    rng = np.random.default_rng(0)
    for n in (1, 5, 40):
        seq, lengths = padded_sessions(rng, n, recommender.max_seq_length)
        vectors, table = recommender.factors(seq, lengths, recommender.state)
        assert table is recommender.model.item_embedding.weight
        torch.testing.assert_close(vectors, recommender.model_vectors(seq, lengths), rtol=1e-5, atol=1e-6)


def test_the_encoder_follows_the_weights_an_advance_trained() -> None:
    recommender = random_recommender(N_ITEMS, days=1, sessions_per_day=50, embedding_size=16)
    seq, lengths = padded_sessions(np.random.default_rng(1), 6, recommender.max_seq_length)
    before = recommender.factors(seq, lengths, recommender.state)[0]
    day = [[f"item{i}" for i in row[:n]] for row, n in zip(seq.tolist(), lengths.tolist(), strict=True)]
    recommender.advance_day(day * 5, train=TrainOptions(epochs=2, learning_rate=0.05))
    after = recommender.factors(seq, lengths, recommender.state)[0]
    assert not torch.allclose(before, after)
    torch.testing.assert_close(after, recommender.model_vectors(seq, lengths), rtol=1e-5, atol=1e-6)


def test_the_encoder_needs_the_weights_on_the_cpu() -> None:
    model = random_recommender(N_ITEMS).model.to("meta")
    with pytest.raises(ValueError, match="on the CPU"):
        SessionEncoder(model)


def test_the_encoder_follows_an_edit_of_the_weights_in_place() -> None:
    recommender = random_recommender(N_ITEMS, days=1, sessions_per_day=50, embedding_size=16)
    seq, lengths = padded_sessions(np.random.default_rng(2), 6, recommender.max_seq_length)
    before = recommender.factors(seq, lengths, recommender.state)[0]
    with torch.no_grad():
        recommender.model.session_gnn.w_hh.mul_(3.0)  # a copied matrix of the encoder
    after = recommender.factors(seq, lengths, recommender.state)[0]
    assert not torch.allclose(before, after)
    torch.testing.assert_close(after, recommender.model_vectors(seq, lengths), rtol=1e-5, atol=1e-6)
