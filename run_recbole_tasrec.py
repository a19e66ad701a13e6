"""Train and evaluate TASRec (or any RecBole sequential model) with the paper's day-based protocol.

uv run python run_recbole_tasrec.py                          # TASRec on the demo set
uv run python run_recbole_tasrec.py --model SRGNN --epochs=1 # a RecBole baseline, same split
uv run python run_recbole_tasrec.py --dataset retailrocket   # after converting the real data
"""

import sys

from recbole_tasrec.cli import main

if __name__ == "__main__":
    sys.exit(main())
