"""Measuring tools that ship in the wheel: the paper's Table 1/2 comparison, the learning-rate schedule report,
and an untrained recommender of any size for load tests.

    python -m recbole_tasrec.harness reproduce --dataset sample --models TASRec,TASRec-base,SRGNN --seeds 3
    python -m recbole_tasrec.harness schedules --datasets drift5k,sample

Importing this package loads nothing heavy; each tool imports what it needs.
"""
