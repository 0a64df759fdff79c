import pyarrow.parquet as pq, re, random, json
R_CI = re.compile(r"(?i)\b(A\.I\.|artificial intelligences?|robots?|robotic|androids?|computers?|machines?|algorithms?|neural|sentient programs?|automat(?:on|ons|a))\b")
R_AI = re.compile(r"\bAIs?\b")
rows=sorted(pq.read_table('/work/shared/data/corpus/scp/part-00000.parquet').to_pylist(), key=lambda r:r['id'])
kw=[r['id'] for r in rows if R_CI.search(r['text']) or R_AI.search(r['text'])]
rest=[r['id'] for r in rows if r['id'] not in set(kw)]
rng=random.Random(20261207); neg=sorted(rng.sample(rest,60))
json.dump({"keyword":kw,"negatives":neg,"seed":20261207,"n_total":len(rows)},open('/tmp/wtE/scp_sel.json','w'))
print(len(rows),len(kw),len(rest),len(neg))
import collections
c=collections.Counter()
for r in rows:
    if r['id'] in set(kw):
        n=len(R_CI.findall(r['text']))+len(R_AI.findall(r['text'])); c[min(n,10)]+=1
print(sorted(c.items()))
