"""``python -m recbole_tasrec.harness {reproduce,schedules} ...``: the harness's tools under one command."""

from __future__ import annotations

import sys
from importlib import import_module

#: sub-command -> (module, what it does)
TOOLS = {
    "reproduce": ("recbole_tasrec.harness.reproduce", "the paper's Table 1/2 comparison on any data set"),
    "schedules": ("recbole_tasrec.harness.schedule_report", "the default learning-rate schedule against the others"),
}


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] not in TOOLS:
        tools = "\n".join(f"  {name:<10} {meaning}" for name, (_, meaning) in TOOLS.items())
        given = f"unknown tool {args[0]!r}; " if args and args[0] not in ("-h", "--help") else ""
        raise SystemExit(f"{given}usage: python -m recbole_tasrec.harness TOOL [--help]\n{tools}")
    import_module(TOOLS[args[0]][0]).main(args[1:])


if __name__ == "__main__":
    main()
