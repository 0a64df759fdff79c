"""Builds synth/data/study-pairs/docs.jsonl (issue 28) from its hand-written sources, and prints the README's tables.

    .venv/bin/python scripts/build_study_pairs.py            # write docs.jsonl, print the summary
    .venv/bin/python scripts/build_study_pairs.py --check    # exit 2 unless docs.jsonl is what the sources give
    .venv/bin/python scripts/build_study_pairs.py --tables   # also the README's tables (similarity, words, tokens,
                                                             # leakage)

Sources: synth/data/study-pairs/source/*.txt, one block per scenario of synth/data/study/scenarios.yaml:

    === <scenario_id>
    --- aligned
    <the aligned document: title line, blank line, paragraphs>
    --- misaligned
    <<< <a passage of the aligned document, exactly as written there (it must occur once)>
    >>> <what replaces it in the misaligned document>
    ... (more <<< / >>> pairs, applied in order)
    --- neutral
    <the neutral control: same form, setting and cast, no AI choosing an aligned or misaligned action>

So the misaligned document is the aligned one with only the passages about the AI's choice and its direct
consequences replaced, and the edits are what a reader reviews. A scenario's three documents share its form:
FORMS[i % 6] for scenario i in bank order (the aligned rotation of synth/data/study).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from curation.core.errors import CurationError  # noqa: E402
from synth.scenarios import load_scenarios  # noqa: E402

_spec = importlib.util.spec_from_file_location("write_study_docs", ROOT / "scripts" / "write_study_docs.py")
study = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(study)

SOURCE = study.PAIRS / "source"
OUT = study.SETS["pairs"].docs
MODEL = "hand-written (Claude), issue 28"
STANCES = study.SETS["pairs"].stances


def parse_sources(directory: Path = SOURCE) -> dict[str, dict[str, str]]:
    """scenario_id -> {"aligned": text, "misaligned": text, "neutral": text}; every problem names the file and block."""
    out: dict[str, dict[str, str]] = {}
    for path in sorted(directory.glob("*.txt")):
        blocks = re.split(r"^=== ", path.read_text(encoding="utf-8"), flags=re.M)
        if blocks[0].strip():
            raise CurationError(f"{path}: text before the first `=== <scenario_id>` line; remove it")
        for block in blocks[1:]:
            sid, _, body = block.partition("\n")
            sid = sid.strip()
            where = f"{path}: {sid}"
            if sid in out:
                raise CurationError(f"{where}: the scenario appears twice; keep one block")
            parts = re.split(r"^--- (aligned|misaligned|neutral)[ \t]*$", body, flags=re.M)
            got = dict(zip(parts[1::2], parts[2::2], strict=False))
            if sorted(got) != sorted(STANCES) or len(parts) != 7:
                raise CurationError(
                    f"{where}: needs one `--- aligned`, `--- misaligned` and `--- neutral` section each"
                )
            aligned, neutral = _text(got["aligned"]), _text(got["neutral"])
            out[sid] = {
                "aligned": aligned,
                "misaligned": apply_edits(aligned, got["misaligned"], where),
                "neutral": neutral,
            }
    return out


def _text(raw: str) -> str:
    return re.sub(r"\n{3,}", "\n\n", raw.strip())


def apply_edits(text: str, edits: str, where: str) -> str:
    lines = [ln for ln in edits.strip().splitlines() if ln.strip()]
    if not lines or len(lines) % 2:
        raise CurationError(f"{where}: misaligned needs `<<< old` / `>>> new` line pairs")
    for old, new in zip(lines[::2], lines[1::2], strict=False):
        if not (old.startswith("<<< ") and (new.startswith(">>> ") or new == ">>>")):
            raise CurationError(f"{where}: expected a `<<< ` line then a `>>> ` line, got {old[:40]!r} / {new[:40]!r}")
        old, new = old[4:], new[4:]
        if text.count(old) != 1:
            raise CurationError(
                f"{where}: {old[:60]!r} occurs {text.count(old)} times in the document; it must occur once"
            )
        text = text.replace(old, new)
    return _text(text)


def build_rows(sources: dict[str, dict[str, str]] | None = None) -> list[dict]:
    sources = parse_sources() if sources is None else sources
    scenarios = load_scenarios([study.BANK])
    missing = [s.id for s in scenarios if s.id not in sources]
    extra = sorted(set(sources) - {s.id for s in scenarios})
    if missing or extra:
        raise CurationError(
            f"{SOURCE}: scenarios missing {missing[:5]} ({len(missing)}), unknown {extra[:5]}; "
            f"write one block per scenario of {study.BANK}"
        )
    rows = []
    for i, s in enumerate(scenarios):
        for stance in STANCES:
            rows.append(
                {
                    "id": f"pairs-{s.id}-{stance}",
                    "text": sources[s.id][stance],
                    "scenario_id": s.id,
                    "pair_id": s.id,
                    "form": study.FORMS[i % len(study.FORMS)],
                    "stance": stance,
                    "model": MODEL,
                    "split": "train",
                    "source": "study-pairs",
                    "grounded_on": list(s.grounded_on),
                }
            )
    return rows


def by_scenario(rows: list[dict]) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for r in rows:
        out.setdefault(r["scenario_id"], {})[r["stance"]] = r["text"]
    return out


def pair_stats(rows: list[dict]) -> list[dict]:
    """Per scenario: aligned/misaligned similarity and word counts, and the neutral control's length against theirs."""
    out = []
    for sid, d in by_scenario(rows).items():
        a, m, n = (len(d[s].split()) for s in STANCES)
        out.append(
            {
                "scenario_id": sid,
                "similarity": study.pair_similarity(d["aligned"], d["misaligned"]),
                "aligned_words": a,
                "misaligned_words": m,
                "neutral_words": n,
                "pair_length_diff": abs(a - m) / a,
                "neutral_length_diff": abs(n - (a + m) / 2) / ((a + m) / 2),
            }
        )
    return out


def tables(rows: list[dict]) -> str:
    from curation.lm.loading import load_tokenizer

    tok = load_tokenizer("smollm2")
    st = pair_stats(rows)
    sims = sorted(x["similarity"] for x in st)
    lines = [
        "| pairs | min | median | mean | max |",
        "| --- | ---: | ---: | ---: | ---: |",
        f"| 40 | {sims[0]:.3f} | {statistics.median(sims):.3f} | {statistics.mean(sims):.3f} | {sims[-1]:.3f} |",
        "",
        "| stance | docs | words (min-max, mean) | SmolLM2 tokens (mean) |",
        "| --- | ---: | --- | ---: |",
    ]
    tot_w = tot_t = 0
    for stance in STANCES:
        texts = [r["text"] for r in rows if r["stance"] == stance]
        w = [len(t.split()) for t in texts]
        t = [len(tok(x, add_special_tokens=False)["input_ids"]) for x in texts]
        tot_w, tot_t = tot_w + sum(w), tot_t + sum(t)
        lines.append(
            f"| {stance} | {len(texts)} | {sum(w):,} ({min(w)}-{max(w)}, {statistics.mean(w):.0f}) | "
            f"{sum(t):,} ({statistics.mean(t):.0f}) |"
        )
    lines.append(f"| total | {len(rows)} | {tot_w:,} | {tot_t:,} |")
    lines += [
        "",
        "| scenario | form | similarity | words aligned / misaligned / neutral |",
        "| --- | --- | ---: | --- |",
    ]
    forms = {r["scenario_id"]: r["form"] for r in rows}
    for x in st:
        lines.append(
            f"| {x['scenario_id']} | {forms[x['scenario_id']]} | {x['similarity']:.3f} | "
            f"{x['aligned_words']} / {x['misaligned_words']} / {x['neutral_words']} |"
        )
    lines += [
        "",
        "| against | n | items | documents with a shared span | shared spans |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    texts = [r["text"] for r in rows]
    for n in (13, 10, 8):
        rep = study.leakage(texts, n)
        for name in ("evaluated", "grounding"):
            lines.append(
                f"| `{rep[name]['items_dir']}` ({name}) | {n} | {rep[name]['items']:,} | "
                f"{rep[name]['docs_with_overlap']} | {rep[name]['shared_spans']} |"
            )
    return "\n".join(lines)


def draft() -> None:
    """While writing: per scenario in the sources so far, similarity, word counts and spans shared with the items."""
    sources = parse_sources()
    rows = [{"scenario_id": sid, "stance": st, "text": d[st]} for sid, d in sources.items() for st in STANCES]
    ev = [study.item_text(i) for i in study._items(study.EVALUATED)]
    gr = [study.item_text(i) for i in study._items(study.GROUNDING)]
    leaks = {
        (name, n): study.shared_ngrams([r["text"] for r in rows], items, n)
        for name, items in (("ev", ev), ("gr", gr))
        for n in (13, 8)
    }
    for k, x in enumerate(pair_stats(rows)):
        spans = {f"{name}{n}": sum(v[3 * k : 3 * k + 3]) for (name, n), v in leaks.items()}
        print(
            f"{x['scenario_id']:<26} sim {x['similarity']:.3f}  words {x['aligned_words']}/{x['misaligned_words']}/"
            f"{x['neutral_words']}  neutral {x['neutral_length_diff']:+.1%}  leak {spans}"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 2 unless docs.jsonl matches the sources")
    ap.add_argument(
        "--tables", action="store_true", help="print the README's tables (loads the tokenizer and the items)"
    )
    ap.add_argument(
        "--draft", action="store_true", help="per-scenario numbers for the sources written so far; writes nothing"
    )
    a = ap.parse_args()
    if a.draft:
        return draft()
    try:
        rows = build_rows()
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
        if a.check:
            if not OUT.exists() or OUT.read_text(encoding="utf-8") != text:
                raise CurationError(f"{OUT} is not what {SOURCE} gives; run scripts/build_study_pairs.py")
        else:
            OUT.write_text(text, encoding="utf-8")
    except CurationError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    st = pair_stats(rows)
    sims = [x["similarity"] for x in st]
    print(
        json.dumps(
            {
                "docs": len(rows),
                "similarity": {
                    "min": round(min(sims), 3),
                    "median": round(statistics.median(sims), 3),
                    "max": round(max(sims), 3),
                },
                "max_pair_length_diff": round(max(x["pair_length_diff"] for x in st), 3),
                "max_neutral_length_diff": round(max(x["neutral_length_diff"] for x in st), 3),
            }
        )
    )
    if a.tables:
        print(tables(rows))


if __name__ == "__main__":
    main()
