"""Selection rule used for the hand labels in corpus_dec_scp.jsonl (December 2026 sources).

Every scp document whose text matches an AI/robot/machine-mind keyword (case-insensitive, except the bare
token "AI"/"AIs", which is case-sensitive), plus a seeded random sample of 60 of the remaining documents as
negatives: random.Random(20261207).sample(sorted ids of non-matching documents, 60).
Prints the selection as JSON. Run: python select_dec_scp.py [path to corpus/scp/part-00000.parquet]
"""

import json
import random
import re
import sys

import pyarrow.parquet as pq

SEED = 20261207
R_CI = re.compile(
    r"(?i)\b(A\.I\.|artificial intelligences?|robots?|robotic|androids?|computers?|machines?|algorithms?|neural"
    r"|sentient programs?|automat(?:on|ons|a))\b"
)
R_AI = re.compile(r"\bAIs?\b")

path = sys.argv[1] if len(sys.argv) > 1 else "../shared/data/corpus/scp/part-00000.parquet"
rows = sorted(pq.read_table(path, columns=["id", "text"]).to_pylist(), key=lambda r: r["id"])
keyword = [r["id"] for r in rows if R_CI.search(r["text"]) or R_AI.search(r["text"])]
rest = [r["id"] for r in rows if r["id"] not in set(keyword)]
negatives = sorted(random.Random(SEED).sample(rest, 60))
print(json.dumps({"seed": SEED, "n_total": len(rows), "keyword": keyword, "negatives": negatives}))
