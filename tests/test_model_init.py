"""One initialisation helper for SR-GNN's ``U(-1/sqrt(d))``: the same weights as the loops it replaced."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from recbole_tasrec.model.readout import AttentionReadout
from recbole_tasrec.model.session_graph import SessionGGNN
from recbole_tasrec.model.temporal_gcn import TemporalGCN

D = 16
LAYERS = {
    "readout": (AttentionReadout, lambda: AttentionReadout(D), lambda layer: layer.parameters()),
    "ggnn": (SessionGGNN, lambda: SessionGGNN(D), lambda layer: layer.parameters()),
    "gcn": (TemporalGCN, lambda: TemporalGCN(D, n_layers=2), lambda layer: [layer.weight]),
}


def hand_written(weights_of):
    """The loop each layer wrote by hand before the helper, as a ``reset_parameters``."""

    def reset_parameters(layer: nn.Module) -> None:
        stdv = 1.0 / math.sqrt(D)
        for weight in weights_of(layer):
            nn.init.uniform_(weight, -stdv, stdv)

    return reset_parameters


@pytest.mark.parametrize("name", LAYERS)
def test_the_helper_draws_the_weights_the_hand_written_loop_drew(name: str, monkeypatch) -> None:
    cls, build, weights_of = LAYERS[name]
    torch.manual_seed(7)
    ours = build()
    monkeypatch.setattr(cls, "reset_parameters", hand_written(weights_of))
    torch.manual_seed(7)
    before = build()
    assert ours.state_dict().keys() == before.state_dict().keys()
    for key, value in ours.state_dict().items():
        assert torch.equal(value, before.state_dict()[key]), key
    assert all(w.abs().max() <= 1 / math.sqrt(D) for w in weights_of(ours))
