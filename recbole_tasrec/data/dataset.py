"""The day-indexed session data set: the paper's protocol (3.1) as a RecBole ``SequentialDataset``.

One processed data set serves TASRec and every RecBole sequential model, so all see the same samples:

1. filters in SR-GNN's order, one pass: short sessions, rare items, short sessions again;
2. each session's day: the ``day_span``-calendar-day block of its first click, day 0 starting at the
   midnight before the first click of the raw file (before the filters, so that filter settings never
   shift a day boundary); derived from the float64 timestamps, before RecBole makes them float32 tensors.
   Midnight is ``day_start`` hours after midnight UTC, or local midnight in the time zone ``day_start``;
3. split by day: the last ``max(1, floor(D * test_day_ratio + 1/2))`` days test (halves round up), the last
   ``valid_session_ratio`` of the training sessions (by start time) validate; a session is never cut;
4. prefix samples ``([i_1..i_{k-1}], i_k)`` (RecBole's augmentation, vectorised), each carrying its day;
5. valid/test samples whose target never occurs in training are dropped (``drop_unseen_targets``).

The clicks of every day stay attached to the data set (the data itself, O(clicks)); the temporal graph of
any day is computed from them with a run's own graph settings (:class:`~recbole_tasrec.data.DailyGraphs`),
so one processed data set serves a whole sweep over those settings.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import torch
from recbole.data.dataset import SequentialDataset
from recbole.data.interaction import Interaction
from recbole.utils import FeatureSource, FeatureType, set_color
from recbole.utils.argument_list import dataset_arguments

from recbole_tasrec.data.atomic import (
    MAX_SECONDS,
    MIN_SECONDS,
    SECONDS_PER_DAY,
    AtomicFileError,
    check_inter_header,
    describe_read_error,
    ends_mid_line,
)
from recbole_tasrec.data.clicks import DayClicks
from recbole_tasrec.data.daily_graphs import DailyGraphs
from recbole_tasrec.settings import DATASET_KEYS

TRAIN, VALID, TEST = 0, 1, 2


class DataSplitError(ValueError):
    """The data cannot be split as configured (too few days, an empty split, ...)."""


def n_test_days(n_days: int, ratio: float) -> int:
    """How many of the last days test: ``max(1, floor(D * ratio + 1/2))``, halves round up (``D = 15``,
    ratio 1/6: 3; Python's ``round`` rounds halves to even and would give 2). A product within 1e-9 of a half
    counts as the half, since a float ratio is rarely exact (``45 * 0.7`` is ``31.499999999999996``)."""
    if isinstance(ratio, bool) or not isinstance(ratio, int | float) or not 0.0 < ratio < 1.0:
        raise ValueError(f"test_day_ratio must be a number in (0, 1), got {ratio!r}")
    return max(1, math.floor(n_days * ratio + 0.5 + 1e-9))


#: A split with fewer samples than this, or under this share of all samples, is warned about: its metrics are chance.
SMALL_SPLIT_SAMPLES, SMALL_SPLIT_SHARE = 100, 0.05


def wall_clock(seconds: np.ndarray, day_start: float | str) -> np.ndarray:
    """Unix seconds as read on the clock whose midnight begins a day (``day_start``): shifted back ``day_start``
    hours, or the local time of the time zone ``day_start`` (its UTC offset at each instant, from :mod:`zoneinfo`,
    so a daylight-saving day lasts 23 or 25 hours). Days are whole multiples of 86,400 on it. Vectorised."""
    if isinstance(day_start, str):
        utc = pd.to_datetime(np.floor(seconds).astype(np.int64), unit="s", utc=True)
        local = utc.tz_convert(ZoneInfo(day_start)).tz_localize(None)
        return seconds + (local.as_unit("s").asi8 - utc.as_unit("s").asi8)  # offsets change on whole seconds
    return seconds - 3600.0 * day_start


def midnight_before(seconds: float, day_start: float | str) -> float:
    """Unix seconds of the midnight (of :func:`wall_clock`) at or before ``seconds``. A local midnight that
    daylight saving skips becomes the first instant after it; one it repeats, the first of the two."""
    midnight = np.floor(wall_clock(np.array([seconds]), day_start) / SECONDS_PER_DAY) * SECONDS_PER_DAY
    if isinstance(day_start, str):
        naive = pd.to_datetime(midnight.astype(np.int64), unit="s")
        local = naive.tz_localize(ZoneInfo(day_start), ambiguous=np.array([True]), nonexistent="shift_forward")
        return float(local.as_unit("s").asi8[0])
    return float(midnight[0] + 3600.0 * day_start)


def warn_small_splits(logger: logging.Logger, sizes: dict[str, int]) -> None:
    """One warning per split with fewer than ``SMALL_SPLIT_SAMPLES`` samples or under ``SMALL_SPLIT_SHARE`` of
    all: a test split of 4 samples scores Recall@20 1.0 or 0.0 by chance, and no metric says so."""
    total = max(sum(sizes.values()), 1)
    for name, size in sizes.items():
        if size < SMALL_SPLIT_SAMPLES or size < SMALL_SPLIT_SHARE * total:
            logger.warning(
                f"the {name} split has only {size:,} sample{'s' * (size != 1)} ({100 * size / total:.1f} % of "
                f"{total:,}): its metrics are mostly chance; change test_day_ratio, valid_session_ratio, day_span or "
                "day_start to enlarge it"
            )


class _SequenceColumn(pd.Series):
    """A column of a frame with sequence fields, whose ``agg(len)`` is one length per row again.

    pandas 3 applies a function given to ``Series.agg`` to the whole Series first, so ``agg(len)`` returns the
    Series' length; RecBole relies on the old meaning in ``_normalize``, ``_discretization`` and ``_remap``
    (recbole/data/dataset/dataset.py:712, 792, 809, 1217). Only this data set's frames use it.
    """

    @property
    def _constructor(self) -> type:
        return _SequenceColumn

    @property
    def _constructor_expanddim(self) -> type:
        return _SequenceFrame

    def agg(self, func: Any = None, axis: Any = 0, *args: Any, **kwargs: Any) -> Any:
        if func is len:
            return self.map(len)
        return super().agg(func, axis, *args, **kwargs)


class _SequenceFrame(pd.DataFrame):
    """A DataFrame whose columns are :class:`_SequenceColumn`: what ``_load_feat`` returns for sequence fields."""

    @property
    def _constructor(self) -> type:
        return _SequenceFrame

    @property
    def _constructor_sliced(self) -> type:
        return _SequenceColumn


class _Column:
    __slots__ = ("values",)

    def __init__(self, values: np.ndarray) -> None:
        self.values = values


class DaySplitDataset(SequentialDataset):
    """Day-indexed ``SequentialDataset`` for every sequential model; see the module docstring for the protocol.

    It also carries RecBole 1.2.1's data fixes for pandas 3 as overrides (``docs/recbole-fixes.md``).

    Attributes set after loading (shared by the split copies that ``build`` returns):
        day_field: the samples' day field (``DAY_FIELD``).
        day_origin: Unix seconds of the midnight (``day_start``) before the first raw click (the start of day 0).
        n_days: days in the data; n_train_days: the first test day (days ``< n_train_days`` train).
        session_day, session_split: per remapped session id, its day and split (0 train, 1 valid, 2 test).
        day_clicks: :class:`DayClicks`, the clicks of every day for the temporal graph.
    """

    #: Settings of this package that shape the processed data set: RecBole's saved-dataset cache and sweeps
    #: treat them like RecBole's own ``dataset_arguments`` (:data:`DATA_SET_KEYS`).
    CONFIG_KEYS = DATASET_KEYS

    def __init__(self, config) -> None:
        self.day_field = config["DAY_FIELD"]
        super().__init__(config)

    # --- 0. reading the atomic file ------------------------------------------------------------------
    def _load_feat(self, filepath: str, source: FeatureSource | str) -> pd.DataFrame | None:
        """RecBole's reader (its frames with sequence fields as :class:`_SequenceFrame`), behind a check of the
        ``.inter`` header, its errors turned into one that names the file and line (RecBole's are ``too many
        values to unpack`` or pandas' ``Unable to convert column``)."""
        frame = self._read_feat(filepath, source)
        if frame is not None and any(self.field2type[field].value.endswith("seq") for field in frame):
            return _SequenceFrame(frame)
        return frame

    def _read_feat(self, filepath: str, source: FeatureSource | str) -> pd.DataFrame | None:
        if source != FeatureSource.INTERACTION:
            return super()._load_feat(filepath, source)
        path, sep, encoding = Path(filepath), self.config["field_separator"], self.config["encoding"] or "utf-8"
        required = {self.uid_field: "token", self.iid_field: "token", self.time_field: "float"}
        check_inter_header(path, {k: v for k, v in required.items() if k}, sep, encoding)
        if ends_mid_line(path):
            self.logger.warning(f"{path} does not end with a newline: if it was cut short, its last click is wrong")
        try:
            return super()._load_feat(filepath, source)
        except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as exc:
            floats = [f"{f}:float" for f in (self.time_field,) if f]
            where = describe_read_error(path, floats, sep, encoding) or str(exc)
            raise AtomicFileError(f"{path}, {where}; fix the file (the converters write valid ones)") from None

    def _fill_nan(self) -> None:
        """RecBole's filling rules (recbole/data/dataset/dataset.py:648-655), assigned back: upstream's
        ``feat[field].fillna(..., inplace=True)`` fills a copy under pandas 3 copy-on-write, so the NaN stayed
        and later became a garbage id."""
        for feat_name in self.feat_name_list:
            feat = getattr(self, feat_name)
            for field in feat:
                ftype = self.field2type[field]
                if ftype == FeatureType.TOKEN:
                    feat[field] = feat[field].fillna(value=0)
                elif ftype == FeatureType.FLOAT:
                    feat[field] = feat[field].fillna(value=feat[field].mean())
                else:
                    dtype = np.int64 if ftype == FeatureType.TOKEN_SEQ else np.float64
                    feat[field] = feat[field].apply(lambda x, d=dtype: np.array([], d) if isinstance(x, float) else x)

    def _dataframe_to_interaction(self, data: Any) -> Interaction:
        """RecBole's conversion (recbole/data/dataset/dataset.py:2202) from private, writable copies of the
        columns: under pandas 3 copy-on-write ``Series.values`` is read-only, and ``torch.LongTensor(values)``
        shared memory that must not be written (with a warning)."""
        if isinstance(data, pd.DataFrame):
            data = {name: _Column(np.array(data[name].to_numpy(), copy=True)) for name in data.columns}
        return super()._dataframe_to_interaction(data)

    # --- 1. filters ---------------------------------------------------------------------------------
    def _data_filtering(self) -> None:
        self.day_origin = self._midnight_before_first_click()
        super()._data_filtering()
        self._filter_like_srgnn()

    def _midnight_before_first_click(self) -> float:
        """The midnight (``day_start``) before the first click in the file, before any filter: the day grid's
        origin, so that filter settings (``min_item_clicks``, ...) never move a day boundary."""
        time = self.time_field
        if time is None or time not in self.inter_feat:
            raise ValueError(
                f"{self.dataset_name} has no time field {time!r} (TIME_FIELD; Unix seconds): DaySplitDataset needs it "
                "to assign days; check TIME_FIELD and load_col"
            )
        times = self.inter_feat[time].to_numpy(np.float64)
        path = Path(self.dataset_path) / f"{self.dataset_name}.inter"
        if not len(times):
            raise AtomicFileError(f"{path} has a header but no clicks")
        bad = ~(np.isfinite(times) & (times >= MIN_SECONDS) & (times <= MAX_SECONDS))  # NaN: an empty time field
        if bad.any():
            row = int(self.inter_feat.index[bad.argmax()])  # RecBole's row number, before any filter
            value = "empty" if np.isnan(times[bad][0]) else repr(float(times[bad][0]))
            more = f" ({int(bad.sum()) - 1} more clicks like it)" if bad.sum() > 1 else ""
            raise AtomicFileError(
                f"{path}, line {row + 2}: {time} is {value}{more}; a click time is in Unix seconds, between "
                "1970-01-01 and 2262-04-11 UTC: fix or drop those clicks"
            )
        return midnight_before(float(times.min()), self.config["day_start"])

    def _filter_like_srgnn(self) -> None:
        """Short sessions, then rare items, then short sessions again: one pass, as SR-GNN (not k-core)."""
        df = self.inter_feat
        min_len, min_clicks = int(self.config["min_session_length"]), int(self.config["min_item_clicks"])
        before = _counts(df, self.uid_field, self.iid_field)
        keep = df.groupby(self.uid_field, sort=False)[self.iid_field].transform("size") >= min_len
        df = df[keep]
        df = df[df.groupby(self.iid_field, sort=False)[self.uid_field].transform("size") >= min_clicks]
        df = df[df.groupby(self.uid_field, sort=False)[self.iid_field].transform("size") >= min_len]
        if df.empty:
            raise DataSplitError(
                f"no session of {self.dataset_name} survives the filters (sessions shorter than {min_len} "
                f"clicks, items with fewer than {min_clicks} clicks): lower min_item_clicks or check the data"
            )
        self.inter_feat = df
        after = _counts(df, self.uid_field, self.iid_field)
        self.logger.info(
            set_color("filters", "pink") + f": clicks {before[0]:,} -> {after[0]:,}, sessions {before[1]:,} -> "
            f"{after[1]:,}, items {before[2]:,} -> {after[2]:,} (sessions >= {min_len}, items >= {min_clicks} clicks)"
        )

    # --- 2. days and the split, on the float64 timestamps -------------------------------------------------
    def _data_processing(self) -> None:
        self._refuse_time_rescaling()
        super()._data_processing()
        if self.benchmark_filename_list is not None:
            raise ValueError("DaySplitDataset splits by day itself; benchmark_filename is not supported")
        self._assign_days_and_split()

    def _refuse_time_rescaling(self) -> None:
        """RecBole's ``normalize_all`` / ``normalize_field`` / ``discretization`` run before the days are
        derived and would turn the Unix timestamps into nonsense days, silently: refuse them on the time field."""
        time = self.time_field
        touched = [key for key in ("normalize_field", "discretization") if time in (self.config[key] or ())]
        if self.config["normalize_all"]:
            touched.insert(0, "normalize_all")
        if touched:
            raise ValueError(
                f"{' and '.join(touched)} would rescale the time field {time!r}, from which DaySplitDataset derives "
                f"each session's day (Unix seconds): set normalize_all: False and leave {time!r} out of "
                "normalize_field and discretization (list the other fields to rescale in normalize_field)"
            )

    def _assign_days_and_split(self) -> None:
        df = self.inter_feat
        uid, time = self.uid_field, self.time_field
        span = int(self.config["day_span"])
        if span < 1:
            raise ValueError(f"day_span must be a positive number of calendar days, got {span}")
        start = df.groupby(uid, sort=False)[time].transform("min").to_numpy(np.float64)
        day_start = self.config["day_start"]
        origin = np.floor(wall_clock(np.array([self.day_origin]), day_start) / SECONDS_PER_DAY) * SECONDS_PER_DAY
        day = ((wall_clock(start, day_start) - origin) // (SECONDS_PER_DAY * span)).astype(np.int64)
        # canonical row order: by session start, session, then time (float64, so no float32 ties)
        order = np.lexsort((df[time].to_numpy(np.float64), df[uid].to_numpy(), start))
        df = df.iloc[order].reset_index(drop=True)
        df[self.day_field] = day[order].astype(np.float64)
        self.set_field_property(self.day_field, FeatureType.FLOAT, FeatureSource.INTERACTION, 1)
        self.inter_feat = df

        n_sessions = int(df[uid].max()) + 1
        sessions = df.drop_duplicates(uid)  # first click of each session, in start order
        sid = sessions[uid].to_numpy()
        self.session_day = np.full(n_sessions, -1, dtype=np.int64)
        self.session_day[sid] = sessions[self.day_field].to_numpy(np.int64)
        self.n_days = int(self.session_day.max()) + 1
        # each session's last click (float64 Unix seconds): the session kNN models' recency and STAN's decay
        last_click = df.groupby(uid, sort=False)[time].max()
        self.session_last_time = np.full(n_sessions, np.nan)
        self.session_last_time[last_click.index.to_numpy()] = last_click.to_numpy(np.float64)
        n_test = n_test_days(self.n_days, self.config["test_day_ratio"])
        self.n_train_days = self.n_days - n_test
        if self.n_train_days < 1:
            raise DataSplitError(
                f"{self.dataset_name} spans {self.n_days} day(s) of {span} calendar day(s); the test split takes "
                f"{n_test}, leaving none to train on: lower day_span (now {span}) or use more data"
            )
        self.session_split = np.full(n_sessions, -1, dtype=np.int8)
        day_of = self.session_day[sid]
        train_sids = sid[day_of < self.n_train_days]  # already in start order
        n_valid = int(round(len(train_sids) * float(self.config["valid_session_ratio"])))
        self.session_split[train_sids] = TRAIN
        self.session_split[train_sids[len(train_sids) - n_valid :]] = VALID
        self.session_split[sid[day_of >= self.n_train_days]] = TEST

        item = df[self.iid_field].to_numpy(np.int64)
        row_day = df[self.day_field].to_numpy(np.int64)
        self.day_clicks = DayClicks(
            session=df[uid].to_numpy(np.int64),
            item=item,
            offsets=np.searchsorted(row_day, np.arange(self.n_days + 1)),
        )
        train_rows = self.session_split[self.day_clicks.session] == TRAIN
        self.train_items = np.unique(item[train_rows])
        empty = np.flatnonzero(np.diff(self.day_clicks.offsets) == 0)
        if len(empty):
            self.logger.warning(
                f"{len(empty)} day(s) have no session (days {empty[:10].tolist()}...): they only decay the graph"
            )

    def graph_source(self, config) -> DailyGraphs:
        """TASRec's graph source (Eq. 1-2): ``E_t`` of every day from this data set's clicks, with the run's
        ``temporal_window``, ``decay``, ``edge_weight``, ``prune_below`` and ``neighbor_threshold`` (the data
        set itself does not depend on them, so one processed data set serves a sweep over them)."""
        return DailyGraphs(
            self.day_clicks.transitions(int(config["temporal_window"])),
            self.item_num,
            decay=float(config["decay"]),
            edge_weight=config["edge_weight"],
            prune_below=float(config["prune_below"]),
            threshold=float(config["neighbor_threshold"]),
        )

    # --- 4. prefix samples -------------------------------------------------------------------------------
    def data_augmentation(self) -> None:
        """RecBole's prefix augmentation, vectorised (RecBole's loops in Python over every click).

        Same output as ``SequentialDataset.data_augmentation``: a sample per click after a session's first,
        its target row's fields, and ``<field>_list`` with the previous ``MAX_ITEM_LIST_LENGTH`` values of
        every other field, left-aligned and zero-padded. Rows are already in session order (see above).
        """
        self._aug_presets()
        feat = self.inter_feat
        sessions = feat[self.uid_field]
        n = len(sessions)
        row = torch.arange(n)
        is_first = torch.ones(n, dtype=torch.bool)
        is_first[1:] = sessions[1:] != sessions[:-1]
        first_row = torch.cummax(torch.where(is_first, row, torch.zeros_like(row)), dim=0).values
        target = row[~is_first]
        length = torch.clamp(target - first_row[target], max=self.max_item_list_len)
        offsets = torch.arange(self.max_item_list_len)
        index = (target - length).unsqueeze(1) + offsets
        valid = offsets < length.unsqueeze(1)
        index = torch.where(valid, index, torch.zeros_like(index))

        new_dict = {self.item_list_length_field: length}
        for field in feat:
            if field == self.uid_field:
                continue
            values = feat[field][index]
            mask = valid.view(valid.shape + (1,) * (values.dim() - 2))
            new_dict[getattr(self, f"{field}_list_field")] = torch.where(mask, values, torch.zeros_like(values))
        new_data = feat[target]
        new_data.update(Interaction(new_dict))
        self.inter_feat = new_data

    # --- 3 + 5. the split --------------------------------------------------------------------------------
    def build(self) -> list[SequentialDataset]:
        """Split the prefix samples by the sessions' splits; returns ``[train, valid, test]``."""
        self._change_feat_format()
        sessions = self.inter_feat[self.uid_field].numpy()
        split = self.session_split[sessions]
        targets = self.inter_feat[self.iid_field].numpy()
        seen = np.isin(targets, self.train_items)
        parts, dropped = [], []
        for which in (TRAIN, VALID, TEST):
            keep = split == which
            if which != TRAIN and self.config["drop_unseen_targets"]:
                dropped.append(int((keep & ~seen).sum()))
                keep &= seen
            parts.append(torch.from_numpy(np.flatnonzero(keep)))
        for name, index in zip(("train", "valid", "test"), parts, strict=True):
            if len(index) == 0:
                raise DataSplitError(
                    f"the {name} split of {self.dataset_name} is empty ({self.n_days} days, {self.n_train_days} "
                    "for training): use more data, or change day_span / test_day_ratio / valid_session_ratio"
                )
        self.logger.info(
            set_color("day split", "pink") + f": {self.n_days} days of {self.config['day_span']} calendar day(s), "
            f"test days {self.n_train_days}..{self.n_days - 1}; samples train {len(parts[0]):,}, valid "
            f"{len(parts[1]):,}, test {len(parts[2]):,}"
            + (f" (dropped unseen targets: valid {dropped[0]:,}, test {dropped[1]:,})" if dropped else "")
        )
        warn_small_splits(self.logger, dict(zip(("train", "valid", "test"), map(len, parts), strict=True)))
        return [self.copy(self.inter_feat[index]) for index in parts]


#: The name this data set had when only TASRec used it.
TASRecDataset = DaySplitDataset
#: Every setting that shapes a processed data set: RecBole's ``dataset_arguments`` and this package's.
DATA_SET_KEYS = (*dataset_arguments, *(key for key in DaySplitDataset.CONFIG_KEYS if key not in dataset_arguments))


def check_topk(dataset: SequentialDataset) -> None:
    """Refuse a run whose largest ``topk`` is not below the item count: RecBole's full ranking would fail deep in
    ``torch.topk`` after the first epoch."""
    largest_k = max(dataset.config["topk"] or [0])
    if largest_k >= dataset.item_num:
        raise DataSplitError(
            f"{dataset.dataset_name} has {dataset.item_num - 1} items after the filters, fewer than topk's largest "
            f"{largest_k}: lower topk (e.g. --topk=[5,10]) or use more data"
        )


def _counts(df: pd.DataFrame, uid: str, iid: str) -> tuple[int, int, int]:
    return len(df), df[uid].nunique(), df[iid].nunique()
