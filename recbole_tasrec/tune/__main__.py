"""``python -m recbole_tasrec.tune``: see :mod:`recbole_tasrec.tune.cli`."""

import sys

from recbole_tasrec.tune.cli import main

if __name__ == "__main__":
    sys.exit(main())
