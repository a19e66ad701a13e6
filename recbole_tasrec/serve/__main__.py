"""``python -m recbole_tasrec.serve ...``: see :mod:`recbole_tasrec.serve.cli`."""

import sys

from recbole_tasrec.serve.cli import main

sys.exit(main())
