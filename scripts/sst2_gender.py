"""SST-2 as JSON Lines with a gender column, for the fairness studies (run_scripts/study_fairness.sh,
run_scripts/study_distill.sh): a seeded sample of the training sentences and all 872 dev sentences (the test
split), each tagged "male" or "female" when its words name exactly one gender (the built-in pair list),
"other" otherwise (no gender word, or both). Equal-opportunity gaps compare the male and female groups only.

    python scripts/sst2_gender.py SST2_DIR OUT_DIR [--train 10000] [--seed 0]

Writes OUT_DIR/train.jsonl and OUT_DIR/dev.jsonl, each atomically.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np

from fednlp.fairness.pairs import GENDER_PAIRS


def gender_of(sentence: str) -> str:
    male, female = {m for m, _ in GENDER_PAIRS}, {f for _, f in GENDER_PAIRS}
    words = set(sentence.lower().split())
    return {(True, False): "male", (False, True): "female"}.get((bool(words & male), bool(words & female)), "other")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path, help="SST-2's GLUE folder (train.tsv, dev.tsv)")
    parser.add_argument("out", type=Path)
    parser.add_argument("--train", type=int, default=10000, help="training sentences kept (a seeded sample)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for split, keep in (("train", args.train), ("dev", None)):
        with open(args.source / f"{split}.tsv", encoding="utf-8") as f:
            rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
        if keep is not None:
            rows = [rows[i] for i in sorted(np.random.default_rng(args.seed).choice(len(rows), keep, replace=False))]
        tmp = args.out / f"{split}.jsonl.tmp"
        with open(tmp, "w", encoding="utf-8") as g:
            for row in rows:
                g.write(json.dumps({"text": row["sentence"], "label": row["label"],
                                    "gender": gender_of(row["sentence"])}) + "\n")
        tmp.rename(args.out / f"{split}.jsonl")


if __name__ == "__main__":
    main()
