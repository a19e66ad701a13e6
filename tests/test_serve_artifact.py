"""The serving artefact: plain tensors + JSON, written atomically, refused when its files disagree."""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
from pathlib import Path

import pytest
import torch

from recbole_tasrec import run_recbole_tasrec
from recbole_tasrec.checkpoint import CheckpointMismatchError, load_trusted, save_atomically
from recbole_tasrec.safe_write import WriteError
from recbole_tasrec.serve import SessionRecommender
from recbole_tasrec.serve.artifact import GRAPH, META, WEIGHTS, ArtifactError, meta_digest, read_artifact
from tests.conftest import small_settings


@pytest.fixture(scope="module")
def checkpoint(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    run_dir = tmp_path_factory.mktemp("artifact")
    return run_recbole_tasrec("TASRec", "tiny", config_dict=small_settings(data_dir, run_dir))["checkpoint"]


@pytest.fixture()
def recommender(checkpoint: str) -> SessionRecommender:
    return SessionRecommender.from_checkpoint(checkpoint)


def sessions_of(recommender: SessionRecommender) -> list[list[str]]:
    tokens = recommender.item_tokens
    return [[tokens[1], tokens[2]], [tokens[5]], [tokens[7], tokens[3], tokens[9]]]


def test_artifact_serves_exactly_what_the_checkpoint_serves(recommender, tmp_path: Path, caplog) -> None:
    recommender.save(tmp_path / "model")
    assert sorted(os.listdir(tmp_path)) == ["model"]  # no temporary folder left behind
    with caplog.at_level(logging.INFO, logger="recbole_tasrec.serve.artifact"):
        loaded = SessionRecommender.from_artifact(tmp_path / "model")
    assert loaded.day == recommender.day > 0
    assert list(loaded.item_tokens) == list(recommender.item_tokens)
    assert (loaded.graph.weights() != recommender.graph.weights()).nnz == 0
    sessions = sessions_of(recommender)
    assert torch.equal(loaded.scores(sessions), recommender.scores(sessions))


def test_checkpoint_loading_says_it_trusts_the_file(checkpoint: str, caplog) -> None:
    with caplog.at_level(logging.INFO, logger="recbole_tasrec.serve.recommender"):
        SessionRecommender.from_checkpoint(checkpoint)
    assert "trusting" in caplog.text


def test_a_checkpoint_whose_item_ids_are_not_the_trained_ones_is_refused(checkpoint: str, tmp_path: Path) -> None:
    state = load_trusted(checkpoint, ("config", "state_dict", "other_parameter"))
    tokens = state["other_parameter"]["item_tokens"]
    tokens[[1, 2]] = tokens[[2, 1]]  # two items swapped: same count, other mapping
    edited = tmp_path / "swapped.pth"
    save_atomically(state, edited)
    with pytest.raises(CheckpointMismatchError, match="item mapping: the same number of items"):
        SessionRecommender.from_checkpoint(edited)


def test_a_restart_continues_from_the_last_saved_day(recommender, tmp_path: Path) -> None:
    target = tmp_path / "model"
    recommender.save(target)
    day = sessions_of(recommender)
    recommender.advance_day(day)
    recommender.save(target)  # replaces the artefact of the previous day
    assert sorted(os.listdir(tmp_path)) == ["model"]
    restarted = SessionRecommender.from_artifact(target)
    assert restarted.day == recommender.day
    assert (restarted.graph.weights() != recommender.graph.weights()).nnz == 0
    later = day[::-1]  # another day: the same one again would be refused
    restarted.advance_day(later)
    recommender.advance_day(later)
    assert torch.equal(restarted.scores(day), recommender.scores(day))


def test_loading_never_unpickles_code(recommender, tmp_path: Path) -> None:
    target = recommender.save(tmp_path / "model")
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"item_embedding.weight": Payload()}, target / WEIGHTS)
    with pytest.raises(ArtifactError, match=r"holds Python objects \(posix.system\), not only tensors") as refused:
        read_artifact(target)
    assert not marker.exists()
    assert "weights_only" not in str(refused.value)  # never torch's advice to unpickle it after all
    (target / WEIGHTS).write_bytes(b"not a zip")
    with pytest.raises(ArtifactError, match="not a tensor file written by this package") as unreadable:
        read_artifact(target)
    assert "\n" not in str(unreadable.value)


def test_files_of_two_saves_are_refused_by_name(recommender, tmp_path: Path) -> None:
    early = recommender.save(tmp_path / "early")
    recommender.advance_day(sessions_of(recommender))
    late = recommender.save(tmp_path / "late")
    shutil.copy(late / GRAPH, early / GRAPH)
    with pytest.raises(ArtifactError, match=rf"{GRAPH} is the state after day \d+ but {META} says day"):
        read_artifact(early)
    for name in (META, WEIGHTS):  # now the days agree, but weights.pt is not the one listed
        shutil.copy(late / name, early / name)
    with open(early / WEIGHTS, "ab") as handle:
        handle.write(b"\0")
    with pytest.raises(ArtifactError, match=f"{WEIGHTS} does not match the checksum"):
        read_artifact(early)


def rewrite_meta(target: Path, **changes: object) -> dict:
    """meta.json with ``changes``, its own checksum made to match again (as a careful forger would)."""
    meta = {**json.loads((target / META).read_text()), **changes}
    meta["meta_sha256"] = meta_digest(meta)
    (target / META).write_text(json.dumps(meta))
    return meta


def test_item_count_mismatch_is_named(recommender, tmp_path: Path) -> None:
    target = recommender.save(tmp_path / "model")
    tokens = json.loads((target / META).read_text())["item_tokens"]
    meta = rewrite_meta(target, item_tokens=[*tokens, "extra"], n_items=len(tokens) + 1)
    with pytest.raises(ArtifactError, match=f"{WEIGHTS} is a file of {meta['n_items'] - 1} items"):
        SessionRecommender.from_artifact(target)


def test_unsafe_or_missing_folders_get_clear_errors(recommender, tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("mine")
    with pytest.raises(ArtifactError, match="is not a serving artefact"):
        recommender.save(tmp_path / "notes")
    assert (tmp_path / "notes" / "a.txt").read_text() == "mine"
    with pytest.raises(ArtifactError, match="no serving artefact"):
        read_artifact(tmp_path / "absent")

    target = recommender.save(tmp_path / "model")
    before = (target / META).read_bytes()
    full = OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(torch, "save", lambda *args, **kwargs: (_ for _ in ()).throw(full))
    with pytest.raises(WriteError, match=f"could not write {target}: No space left on device") as failed:
        recommender.save(target)
    assert "\n" not in str(failed.value)
    assert (target / META).read_bytes() == before  # the old artefact is untouched
    assert sorted(os.listdir(tmp_path)) == ["model", "notes"]  # and the temporary folder is gone
    aside = tmp_path / f".model.tmp-1-{'0' * 12}"  # a crash between the two renames of a replacement
    os.rename(target, aside)
    with pytest.raises(ArtifactError, match=f"interrupted save left a copy at {aside}: rename it to model"):
        read_artifact(target)
