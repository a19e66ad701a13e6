"""Seeded synthetic session logs whose interests drift from day to day.

TASRec's point is that yesterday's item-to-item transitions predict today's clicks better than
what a model learned weeks ago. Real logs cannot be shipped with the project, so this module
generates a small log with exactly that property, for the demo set, the tests and the benchmarks.

Drift mechanisms (all driven by one ``np.random.default_rng(seed)``):

* **Item lifetimes.** Every item has a birth day and a lifetime (``2 + Geometric`` days, mean
  ``mean_item_lifetime``, so at least 3); it can only be clicked while alive. Births are spread
  so that every item is alive for at least ``min(3, n_days)`` days of the period: some items
  exist from the start and fade, others appear later, a few live through the whole period.
* **Moving popularity.** ``log popularity = base + z_t``: ``base ~ N(0, popularity_skew)`` is
  fixed per item, ``z_t`` is a mean-reverting AR(1) walk with stationary standard deviation
  ``popularity_drift`` and day-to-day correlation ``_POPULARITY_MEMORY``.
* **Transitions that hold for a few days.** Every item has ``n_successors`` current successors,
  drawn uniformly among the items alive that day in the same category (one of ``n_categories``,
  the stable, learnable part of the structure; ``n_categories=1`` turns categories off). An
  item's successors are redrawn every ``transition_period`` days with a per-item phase (so a few
  items change every day) and on its birth day. A transition seen yesterday is most likely still
  valid today; one learned ``transition_period`` or more days ago is stale.

A session of day ``d``: the first item is drawn from day ``d``'s popularity over alive items;
each next click follows one of the current item's successors (uniformly) with probability
``p_follow`` when that successor is alive, else it is a fresh popularity draw. Lengths are
``1 + Geometric`` with mean ``mean_session_length`` (so at least 2), capped at
``max_session_length``. A session starts at a uniform second of its UTC day, chosen so that the
whole session ends inside that day; the gaps between clicks are log-normal (median 45 s, clipped
to 1..900 s), so timestamps within a session strictly increase.

Output: a RecBole atomic file ``DIR/NAME/NAME.inter`` (``session_id:token``, ``item_id:token``,
``timestamp:float`` as integer Unix seconds), rows sorted by session start then time, session ids
``1..N`` in that order, item ids ``1..n_items``.

The committed demo set ``atomic_data/sample/sample.inter`` is the CLI's defaults::

    uv run python -m recbole_tasrec.data.synthetic
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recbole_tasrec.data.atomic import INTER_HEADER as HEADER
from recbole_tasrec.data.atomic import SECONDS_PER_DAY, write_atomic

COLUMNS = ("session_id", "item_id", "timestamp")  # generate()'s columns, in the atomic file's order

__all__ = [
    "HEADER",
    "SECONDS_PER_DAY",
    "SyntheticConfig",
    "generate",
    "main",
    "summary",
    "to_inter_bytes",
    "write",
]


_POPULARITY_MEMORY = 0.85
"""Day-to-day correlation of the fluctuating part of log-popularity (AR(1) coefficient)."""
_GAP_MEDIAN_S = 45.0
_GAP_SIGMA = 1.0
_GAP_MIN_S = 1
_GAP_MAX_S = 900
_MIN_OVERLAP_DAYS = 3
_MIN_LIFETIME_DAYS = 3


def _knob(default: object, help_text: str) -> Any:
    """A dataclass field whose help text the CLI reuses, so flags and fields cannot drift apart."""
    return dataclasses.field(default=default, metadata={"help": help_text})


@dataclasses.dataclass(frozen=True)
class SyntheticConfig:
    """Every knob of the generator; the defaults are exactly the committed demo set.

    The defaults give about 52k clicks, 10.5k sessions and 1.5k items over 30 days (~1.05 MB):
    small enough to commit, large enough that a small GNN's epoch takes seconds and that almost
    every item keeps at least 5 clicks after filtering.
    """

    n_items: int = _knob(1500, "item catalogue size; ids are 1..n_items (never-clicked items do not appear)")
    n_days: int = _knob(30, "number of consecutive UTC calendar days")
    sessions_per_day: int = _knob(350, "exact number of sessions starting on each day")
    mean_session_length: float = _knob(5.0, "mean clicks per session before capping (>= 2)")
    max_session_length: int = _knob(20, "cap on clicks per session (RecBole's usual MAX_ITEM_LIST_LENGTH)")
    transition_period: int = _knob(5, "days a successor set holds before it is redrawn (staggered per item)")
    p_follow: float = _knob(0.75, "probability that a next click follows a current transition")
    n_successors: int = _knob(3, "size of each item's current successor set")
    n_categories: int = _knob(20, "successors are drawn within the item's category (1 = none; empty ones are fine)")
    mean_item_lifetime: float = _knob(20.0, "mean days an item stays alive (2 + Geometric, so >= 3 days)")
    popularity_skew: float = _knob(0.8, "std of the fixed per-item log-popularity (0 = equal on average)")
    popularity_drift: float = _knob(1.0, "stationary std of the moving part of log-popularity (0 = static)")
    seed: int = _knob(0, "seed of np.random.default_rng; same config and seed give the same bytes")
    start_date: dt.date = _knob(dt.date(2026, 1, 1), "first day (UTC), a date or an ISO YYYY-MM-DD string")

    def __post_init__(self) -> None:
        """Validate eagerly so that a bad knob fails with a clear message, not deep in numpy."""
        if isinstance(self.start_date, str):
            try:
                object.__setattr__(self, "start_date", dt.date.fromisoformat(self.start_date))
            except ValueError as exc:
                msg = f"start_date must be an ISO date YYYY-MM-DD, got {self.start_date!r}"
                raise ValueError(msg) from exc
        elif isinstance(self.start_date, dt.datetime) or not isinstance(self.start_date, dt.date):
            raise ValueError(f"start_date must be a datetime.date or ISO string, got {self.start_date!r}")
        ints = {
            "n_items": 2,
            "n_days": 1,
            "sessions_per_day": 1,
            "max_session_length": 2,
            "transition_period": 1,
            "n_successors": 1,
            "n_categories": 1,
        }
        for name, low in ints.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | np.integer):
                raise ValueError(f"{name} must be an integer, got {value!r}")
            if value < low:
                raise ValueError(f"{name} must be >= {low}, got {value}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int | np.integer) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {self.seed!r}")
        floats = {
            "mean_session_length": self.mean_session_length,
            "p_follow": self.p_follow,
            "mean_item_lifetime": self.mean_item_lifetime,
            "popularity_skew": self.popularity_skew,
            "popularity_drift": self.popularity_drift,
        }
        for name, value in floats.items():
            is_number = isinstance(value, int | float | np.number) and not isinstance(value, bool)
            if not is_number or not np.isfinite(value):
                raise ValueError(f"{name} must be a finite number, got {value!r}")
        if not 0.0 <= self.p_follow <= 1.0:
            raise ValueError(f"p_follow must be in [0, 1], got {self.p_follow}")
        if not 2.0 <= self.mean_session_length <= self.max_session_length:
            raise ValueError(
                f"mean_session_length must be in [2, max_session_length={self.max_session_length}], "
                f"got {self.mean_session_length}"
            )
        if self.mean_item_lifetime < _MIN_LIFETIME_DAYS:
            raise ValueError(f"mean_item_lifetime must be >= {_MIN_LIFETIME_DAYS} days, got {self.mean_item_lifetime}")
        if self.popularity_skew < 0 or self.popularity_drift < 0:
            raise ValueError(
                f"popularity_skew and popularity_drift must be >= 0, "
                f"got {self.popularity_skew} and {self.popularity_drift}"
            )

    @property
    def start_timestamp(self) -> int:
        """Unix seconds of midnight UTC of ``start_date``."""
        day = self.start_date
        return int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp())


def _item_lifetimes(rng: np.random.Generator, cfg: SyntheticConfig) -> tuple[np.ndarray, np.ndarray]:
    """Draw each item's alive interval ``[birth, death)`` in day indices (may extend outside the period)."""
    # Geometric lifetimes (memoryless fading): many items live a couple of weeks, a few much longer.
    extra = cfg.mean_item_lifetime - _MIN_LIFETIME_DAYS + 1.0
    life = (_MIN_LIFETIME_DAYS - 1) + rng.geometric(1.0 / extra, size=cfg.n_items)
    overlap = np.minimum(life, min(cfg.n_days, _MIN_OVERLAP_DAYS))
    # birth in [overlap - life, n_days - overlap]: alive for >= overlap days inside the period.
    birth = (overlap - life) + np.floor(rng.random(cfg.n_items) * (cfg.n_days - overlap + life - overlap + 1)).astype(
        np.int64
    )
    return birth, birth + life


def _alive_matrix(birth: np.ndarray, death: np.ndarray, base: np.ndarray, n_days: int) -> np.ndarray:
    """Boolean ``(n_days, n_items)`` alive mask; a day with < 2 alive items borrows the two most popular.

    The fallback only matters for tiny configs (it keeps a session's second click possible).
    """
    days = np.arange(n_days)[:, None]
    alive = (birth[None, :] <= days) & (days < death[None, :])
    short = alive.sum(axis=1) < 2
    if short.any():
        top2 = np.argsort(-base, kind="stable")[:2]
        alive[np.ix_(np.flatnonzero(short), top2)] = True
    return alive


def _draw_successors(
    rng: np.random.Generator,
    src: np.ndarray,
    alive_today: np.ndarray,
    category: np.ndarray,
    n_categories: int,
    k: int,
) -> np.ndarray:
    """Draw ``k`` successors for each item in ``src`` among ``alive_today``, same category, never itself.

    Falls back to any alive item when the category has no other alive item.
    """
    m, n_alive = src.size, alive_today.size
    cat_alive = category[alive_today]
    order = np.argsort(cat_alive, kind="stable")
    by_cat = alive_today[order]
    counts = np.bincount(cat_alive, minlength=n_categories)
    starts = np.cumsum(counts) - counts
    c = category[src]
    cnt = counts[c][:, None]
    start = starts[c][:, None]
    u = rng.random((m, k))
    # Within the category: position in [0, cnt); skip the item itself by stepping to the next one.
    pos = np.floor(u * np.maximum(cnt, 1)).astype(np.int64)
    pick = by_cat[np.minimum(start + pos, n_alive - 1)]
    pos = np.where(pick == src[:, None], (pos + 1) % np.maximum(cnt, 1), pos)
    in_cat = by_cat[np.minimum(start + pos, n_alive - 1)]
    # Anywhere among alive items (used when the category has no other alive item).
    gpos = np.floor(u * n_alive).astype(np.int64)
    gpick = alive_today[gpos]
    gpos = np.where(gpick == src[:, None], (gpos + 1) % n_alive, gpos)
    anywhere = alive_today[gpos]
    own_alive = np.isin(src, alive_today)[:, None]
    usable = cnt - own_alive.astype(np.int64) >= 1
    return np.where(usable, in_cat, anywhere)


def _sample_popular(rng: np.random.Generator, alive_today: np.ndarray, cdf: np.ndarray, n: int) -> np.ndarray:
    """Draw ``n`` items from today's popularity (inverse CDF; deterministic given the rng state)."""
    idx = np.searchsorted(cdf, rng.random(n) * cdf[-1], side="right")
    return alive_today[np.minimum(idx, alive_today.size - 1)]


def _walk_sessions(
    rng: np.random.Generator,
    lengths: np.ndarray,
    successors: np.ndarray,
    alive: np.ndarray,
    alive_today: np.ndarray,
    cdf: np.ndarray,
    p_follow: float,
) -> np.ndarray:
    """One day's clicks (sessions x positions, -1 past a session's end): a popular first item, then at each
    position a successor of the previous item (probability ``p_follow``, if alive) or a popular item."""
    n_sessions, width = lengths.size, int(lengths.max())
    clicks = np.full((n_sessions, width), -1, dtype=np.int64)
    clicks[:, 0] = _sample_popular(rng, alive_today, cdf, n_sessions)
    for pos in range(1, width):
        active = np.flatnonzero(lengths > pos)
        cur = clicks[active, pos - 1]
        follow = rng.random(active.size) < p_follow
        slot = rng.integers(0, successors.shape[1], size=active.size)
        cand = successors[cur, slot]
        popular = _sample_popular(rng, alive_today, cdf, active.size)
        clicks[active, pos] = np.where(follow & alive[cand], cand, popular)
    return clicks


def _session_times(rng: np.random.Generator, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Log-normal gaps between clicks, then a start that keeps the whole session inside the day.

    Returns each session's start (seconds into the day), each click's offset from it, and the mask of real clicks.
    """
    n_sessions, width = lengths.size, int(lengths.max())
    gaps = rng.lognormal(np.log(_GAP_MEDIAN_S), _GAP_SIGMA, size=(n_sessions, width))
    gaps = np.clip(np.floor(gaps), _GAP_MIN_S, _GAP_MAX_S).astype(np.int64)
    gaps[:, 0] = 0
    mask = np.arange(width)[None, :] < lengths[:, None]
    offsets = np.cumsum(np.where(mask, gaps, 0), axis=1)
    duration = offsets[np.arange(n_sessions), lengths - 1]
    start = np.floor(rng.random(n_sessions) * (SECONDS_PER_DAY - duration)).astype(np.int64)
    return start, offsets, mask


def generate(cfg: SyntheticConfig | None = None) -> pd.DataFrame:
    """Generate the click log: columns ``session_id``, ``item_id``, ``timestamp`` (int64 Unix seconds).

    Rows are sorted by session start, then time; session ids run ``1..N`` in that order; item ids
    are ``1..n_items``. Loops over days and click positions only; every step is vectorised over
    the day's sessions. Reproducible: one ``default_rng(seed)`` stream consumed in a fixed order,
    no hashing or set order; the only float-to-discrete steps (inverse-CDF draws, ``floor``) could
    flip only if a uniform fell within one ulp of a boundary on a machine whose ``exp`` differs.
    """
    cfg = SyntheticConfig() if cfg is None else cfg
    rng = np.random.default_rng(cfg.seed)
    n, k = cfg.n_items, cfg.n_successors

    # Static per-item draws, in a fixed order (the order of rng calls is part of the output).
    base = rng.normal(0.0, 1.0, size=n) * cfg.popularity_skew
    category = rng.integers(0, cfg.n_categories, size=n)
    phase = rng.integers(0, cfg.transition_period, size=n)
    birth, death = _item_lifetimes(rng, cfg)
    alive = _alive_matrix(birth, death, base, cfg.n_days)
    z = rng.normal(0.0, 1.0, size=n) * cfg.popularity_drift
    successors = np.zeros((n, k), dtype=np.int64)

    innovation = np.sqrt(1.0 - _POPULARITY_MEMORY**2) * cfg.popularity_drift
    p_geom = 1.0 / (cfg.mean_session_length - 1.0)
    t0 = cfg.start_timestamp
    spd = cfg.sessions_per_day

    day_items: list[np.ndarray] = []
    day_times: list[np.ndarray] = []
    day_sessions: list[np.ndarray] = []
    for d in range(cfg.n_days):
        if d > 0:
            z = _POPULARITY_MEMORY * z + innovation * rng.normal(0.0, 1.0, size=n)
        alive_today = np.flatnonzero(alive[d])
        weights = np.exp(base[alive_today] + z[alive_today])
        cdf = np.cumsum(weights)

        redraw = np.flatnonzero((d == 0) | ((d + phase) % cfg.transition_period == 0) | (birth == d))
        successors[redraw] = _draw_successors(rng, redraw, alive_today, category, cfg.n_categories, k)

        lengths = np.minimum(1 + rng.geometric(p_geom, size=spd), cfg.max_session_length)
        clicks = _walk_sessions(rng, lengths, successors, alive[d], alive_today, cdf, cfg.p_follow)
        start, offsets, mask = _session_times(rng, lengths)
        times = t0 + d * SECONDS_PER_DAY + start[:, None] + offsets

        order = np.argsort(start, kind="stable")  # ties keep generation order
        mask_o = mask[order]
        day_items.append(clicks[order][mask_o])
        day_times.append(times[order][mask_o])
        day_sessions.append(np.repeat(np.arange(spd, dtype=np.int64), lengths[order]) + d * spd)

    return pd.DataFrame(
        {
            "session_id": np.concatenate(day_sessions) + 1,
            "item_id": np.concatenate(day_items) + 1,
            "timestamp": np.concatenate(day_times),
        }
    )


def to_atomic_frame(df: pd.DataFrame) -> pd.DataFrame:
    """The log with the atomic file's column names (``HEADER``), all integers: what :func:`write` writes."""
    return pd.DataFrame(
        {name: df[col].to_numpy(dtype=np.int64) for name, col in zip(HEADER.split("\t"), COLUMNS, strict=True)}
    )


def to_inter_bytes(df: pd.DataFrame) -> bytes:
    """The atomic file's bytes for a log (fixed formatting, ``\\n`` line ends), as :func:`write` writes them."""
    return to_atomic_frame(df).to_csv(sep="\t", index=False, lineterminator="\n").encode("ascii")


def write(
    cfg: SyntheticConfig | None = None,
    output_dir: str | os.PathLike[str] = "atomic_data",
    name: str = "sample",
) -> Path:
    """Generate and write ``output_dir/name/name.inter`` through the converters' atomic writer (a reader, or a
    concurrent RecBole run, never sees a half-written file). Returns the file's path."""
    if not name or os.sep in name or (os.altsep and os.altsep in name) or name in {".", ".."}:
        raise ValueError(f"name must be a plain file stem, got {name!r}")
    path = Path(output_dir) / name / f"{name}.inter"
    write_atomic(to_atomic_frame(generate(cfg)), path)
    return path


def summary(df: pd.DataFrame, path: Path | None = None) -> str:
    """One line: clicks, sessions, items, days, first and last date, and the file's size."""
    days = pd.to_datetime(df["timestamp"], unit="s", utc=True).dt.date
    text = (
        f"{len(df):,} clicks, {df['session_id'].nunique():,} sessions, {df['item_id'].nunique():,} items, "
        f"{days.nunique()} days ({days.min()} .. {days.max()})"
    )
    if path is not None:
        text = f"{path}: {text}, {path.stat().st_size:,} bytes"
    return text


def _parser() -> argparse.ArgumentParser:
    defaults = SyntheticConfig()
    parser = argparse.ArgumentParser(
        prog="python -m recbole_tasrec.data.synthetic",
        description="Write a seeded synthetic session log with day-to-day drift as a RecBole .inter file.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--output-dir", default="atomic_data", help="RecBole data_path")
    parser.add_argument("--name", default="sample", help="dataset name (folder and file stem)")
    for field in dataclasses.fields(SyntheticConfig):
        default = getattr(defaults, field.name)
        kind = dt.date.fromisoformat if field.name == "start_date" else type(default)
        parser.add_argument(
            f"--{field.name.replace('_', '-')}", type=kind, default=default, help=field.metadata["help"]
        )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point: parse flags, write the file, print a one-line summary."""
    parser = _parser()
    args = parser.parse_args(argv)
    knobs = {f.name: getattr(args, f.name) for f in dataclasses.fields(SyntheticConfig)}
    try:
        cfg = SyntheticConfig(**knobs)
    except ValueError as exc:
        parser.error(str(exc))
    path = write(cfg, args.output_dir, args.name)
    df = pd.read_csv(path, sep="\t", header=0, names=list(COLUMNS))
    print(summary(df, path))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
