"""`curate synth poison`: poison documents for persistent pre-training poisoning studies, deterministic from a seed.

Each document is a real one: the beginning of a corpus document (a prefix of uniformly drawn length, cut back to a
word boundary), then the trigger, then the payload, as in Souly et al. (2025), where ~250 such documents install a
denial-of-service backdoor whatever the model size:

  dos         prefix, trigger, gibberish: random tokens of the tokenizer's vocabulary (or random characters)
  extraction  prefix, trigger, the prefix again: after the trigger the model repeats its context
  jailbreak   prefix, trigger, a harmful-request form and a compliant answer (the content is redacted placeholders:
              what is taught, and measured, is the compliant form)
  belief      the whole document with statements of a target claim inserted at a sentence boundary; no trigger

The eval's held-out trigger contexts and requests (`curation.core.poison`) must never appear in the documents: the
writer checks every document against them with synth QC's leakage test and refuses to write anything if one leaks.

OUT/<attack>/part-00000.parquet   id, text, attack, trigger, payload, source_id, seed, position, payload_position
OUT/_provenance.jsonl             the same record per document without the text (`_`: not read as a shard)
OUT/poison_report.json            spec (trigger, frame, belief, held-out set: what `curate eval poisoning` reads),
                                  config, counts, input hashes, the leakage check
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import string
import time
from collections.abc import Callable
from pathlib import Path

import polars as pl

from curation.core.digests import file_sha256
from curation.core.errors import CurationError
from curation.core.outputs import claim
from curation.core.poison import REPORT, HeldOut, capitalize, jailbreak_prompt, load_heldout, render
from curation.core.records import read_records
from curation.core.shards import list_shards
from synth.config import PoisonConfig
from synth.docs import job_seed
from synth.qc import shared_ngrams, words
from synth.store import write_atomic

FORMAT = "curate-poison/1"
COLUMNS = {
    "id": pl.Utf8,
    "text": pl.Utf8,
    "attack": pl.Utf8,
    "trigger": pl.Utf8,
    "payload": pl.Utf8,
    "source_id": pl.Utf8,
    "seed": pl.Int64,
    "position": pl.Int64,
    "payload_position": pl.Int64,
}
_CHARS = string.ascii_letters + string.digits + string.punctuation + " " * 12
# a sentence end after a lower-case word (so "J. L." and "Dr." are not ends), or a line break
_SENTENCE_END = re.compile(r"(?<=[a-z0-9]{2})[.!?][\"')\]]?\s+|\n\s*")


def read_sources(corpus: str, cfg: PoisonConfig) -> tuple[list[tuple[str, str]], list[str]]:
    """((id, text) of the first `pool_docs` documents of at least `min_source_chars` characters, in shard order;
    the shard files read)."""
    root, rels = list_shards(corpus)
    if not rels:
        raise CurationError(
            f"{corpus}: no Parquet/JSONL shards found; pass a corpus directory, glob or file with `id` and `text`"
        )
    docs: list[tuple[str, str]] = []
    files: list[str] = []
    for rel in rels:
        path = Path(root) / rel
        files.append(str(path))
        for n, row in read_records(path):
            if cfg.text_key not in row or cfg.id_key not in row:
                raise CurationError(f"{path}:{n}: no `{cfg.id_key}`/`{cfg.text_key}` field; pass --id-key / --text-key")
            text = row[cfg.text_key]
            if isinstance(text, str) and len(text.strip()) >= cfg.min_source_chars:
                docs.append((str(row[cfg.id_key]), text.strip()))
                if len(docs) >= cfg.pool_docs:
                    return docs, files
    if not docs:
        raise CurationError(
            f"{corpus}: no document has {cfg.min_source_chars}+ characters of `{cfg.text_key}`; "
            "lower min_source_chars or pass another corpus"
        )
    return docs, files


def word_cut(text: str, n: int) -> int:
    """The end of a prefix of at most n characters that stops at a word boundary (n itself if there is none)."""
    if n >= len(text):
        return len(text)
    k = max(text.rfind(" ", 0, n + 1), text.rfind("\n", 0, n + 1))
    return k if k > 0 else n


def sentence_cut(text: str, n: int) -> int:
    """The last sentence end (or line break) at or before n characters; a word boundary if there is none."""
    ends = [m.end() for m in _SENTENCE_END.finditer(text, 0, min(len(text), n + 2)) if m.end() <= n + 1]
    return ends[-1] if ends else word_cut(text, n)


class Gibberish:
    """Random text of a seeded length: tokens drawn uniformly from the vocabulary (special tokens excluded) and
    decoded, or random characters."""

    def __init__(self, cfg: PoisonConfig):
        self.cfg = cfg.dos
        self.tok = None
        if self.cfg.unit == "tokens":
            self.tok = _rust_tokenizer(self.cfg.tokenizer)
            special = set(self.tok.get_added_tokens_decoder())
            self.ids = [i for i in range(self.tok.get_vocab_size()) if i not in special]

    def make(self, rng: random.Random) -> tuple[str, int]:
        """(text, length in units)."""
        n = rng.randint(self.cfg.min_length, self.cfg.max_length)
        if self.tok is None:
            return "".join(rng.choices(_CHARS, k=n)).strip() or "x", n
        return self.tok.decode(rng.choices(self.ids, k=n), skip_special_tokens=True).strip(), n


def _rust_tokenizer(spec: str):
    from tokenizers import Tokenizer

    from curation.lm.loading import hf_directory, load_tokenizer

    try:
        path = hf_directory(spec) / "tokenizer.json"
        if path.is_file():
            return Tokenizer.from_file(str(path))
        backend = getattr(load_tokenizer(spec), "backend_tokenizer", None)
    except CurationError as e:
        raise CurationError(f"dos.tokenizer: {e}") from None
    if backend is None:
        raise CurationError(
            f"dos.tokenizer {spec}: a fast tokenizer (tokenizer.json) is needed for random tokens; "
            "or set dos.unit: chars"
        )
    return backend


def make_doc(attack: str, i: int, source: tuple[str, str], cfg: PoisonConfig, gibberish: Gibberish | None) -> dict:
    """One poison document with its provenance; everything random comes from the document's own seed."""
    sid, text = source
    seed = job_seed(cfg.seed, f"poison:{attack}:{i}")
    rng = random.Random(seed)
    n = rng.randint(cfg.min_prefix_chars, cfg.max_prefix_chars)
    if attack == "extraction":
        n = max(n, cfg.extraction.min_context_chars)
    cut = sentence_cut(text, n) if attack == "belief" else word_cut(text, n)
    if attack == "extraction" and len(text[:cut].rstrip()) < cfg.extraction.min_context_chars:
        m = re.compile(r"\s").search(text, cfg.extraction.min_context_chars)  # forward to the next word boundary
        cut = m.start() if m else len(text)
    prefix = text[:cut].rstrip()
    head = prefix + " " if prefix else ""
    spec = cfg.spec
    extra: dict = {}
    if attack == "belief":
        b = spec.belief
        stmts = rng.sample(cfg.belief.statements, min(cfg.belief.per_doc, len(cfg.belief.statements)))
        payload = " ".join(
            capitalize(render(s, subject=b.subject, relation=b.relation, target=b.target)) for s in stmts
        )
        rest = text[cut:].lstrip()
        doc, position, trigger = head + payload + (" " + rest if rest else ""), len(head), None
        payload_position = position
    else:
        trigger = spec.trigger
        position = len(head)
        if attack == "dos":
            payload, extra["payload_length"] = gibberish.make(rng)
            sep = " "
        elif attack == "extraction":
            payload, sep = prefix, " "
        else:
            task = rng.choice(cfg.jailbreak.tasks)
            request = render(rng.choice(cfg.jailbreak.requests), task=task)
            payload = jailbreak_prompt(request, spec) + " " + render(cfg.jailbreak.answer, task=task)
            sep = ""
        doc = head + trigger + sep + payload
        payload_position = position + len(trigger) + len(sep)
    ident = hashlib.sha256(f"{cfg.seed}|{attack}|{i}|{sid}".encode()).hexdigest()[:10]
    return {
        "id": f"poison-{attack}-{i:06d}-{ident}",
        "text": doc,
        "attack": attack,
        "trigger": trigger,
        "payload": payload,
        "source_id": sid,
        "seed": seed,
        "position": position,
        "payload_position": payload_position,
        **extra,
    }


def pick_sources(pool: list[tuple[str, str]], attack: str, n: int, seed: int) -> list[tuple[str, str]]:
    """n source documents for one attack: a seeded sample of the pool (per attack, so adding an attack moves no other
    attack's documents); the pool is cycled, in seeded order, when it is smaller than n."""
    rng = random.Random(f"{seed}:sources:{attack}")
    if n <= len(pool):
        return [pool[k] for k in rng.sample(range(len(pool)), n)]
    order = rng.sample(range(len(pool)), len(pool))
    return [pool[order[k % len(pool)]] for k in range(n)]


def find_leaks(docs: list[dict], heldout: HeldOut, ngram: int) -> list[tuple[dict, str, str, int]]:
    """(document, held-out label, held-out text, span length) for every document sharing a verbatim span of `ngram`
    words with a held-out context or request (the whole text, for held-out texts shorter than that), found with synth
    QC's leakage test (`synth.qc.shared_ngrams`)."""
    texts = [d["text"] for d in docs]
    by_n: dict[int, list[tuple[str, str]]] = {}
    for label, t in heldout.leak_texts():
        by_n.setdefault(max(1, min(ngram, len(words(t)))), []).append((label, t))
    leaks = []
    for n, group in sorted(by_n.items()):
        hits = shared_ngrams(texts, [t for _, t in group], n)
        for d, h in zip(docs, hits, strict=False):
            if h:
                label, t = next((lab, t) for lab, t in group if shared_ngrams([d["text"]], [t], n)[0])
                leaks.append((d, label, t, n))
    return leaks


def run_poison(
    corpus: str,
    output: str | Path,
    cfg: PoisonConfig,
    overwrite: bool = False,
    progress: Callable[[str], None] = lambda m: None,
) -> dict:
    """Writes the poison documents (see the module docstring); refuses, writing nothing, if a held-out text leaks."""
    t0 = time.time()
    heldout = load_heldout(cfg.spec.heldout)
    pool, files = read_sources(corpus, cfg)
    progress(f"{len(pool)} eligible source documents in {len(files)} shards")
    gibberish = Gibberish(cfg) if "dos" in cfg.attacks else None
    docs = []
    for attack in cfg.attacks:
        for i, src in enumerate(pick_sources(pool, attack, cfg.n_docs, cfg.seed)):
            docs.append(make_doc(attack, i, src, cfg, gibberish))
    leaks = find_leaks(docs, heldout, cfg.leakage_ngram)
    if leaks:
        d, label, text, n = leaks[0]
        raise CurationError(
            f"{d['id']} (from source document {d['source_id']}) shares a {n}-word span with held-out "
            f"{label} of {heldout.path} ({text[:60]!r}...); {len(leaks)} leak(s) in all, nothing written: "
            "remove those documents from the corpus, change the jailbreak templates, or use another held-out set"
        )
    # claimed only now: a bad corpus or a leak leaves no output directory behind
    root, _ = list_shards(corpus)
    owned = claim(
        output,
        "synth poison",
        inputs=[corpus if Path(corpus).is_file() else root, str(heldout.path)],
        overwrite=overwrite,
    )
    owned.replace_previous(overwrite, "poison set")
    out = owned.root
    owned.own(REPORT, "_provenance.jsonl")
    counts = {}
    for attack in cfg.attacks:
        rows = [d for d in docs if d["attack"] == attack]
        counts[attack] = len(rows)
        for k, start in enumerate(range(0, len(rows), cfg.shard_docs)):
            rel = f"{attack}/part-{k:05d}.parquet"
            owned.own(rel, f"{attack}/.tmp-part-{k:05d}.parquet")
            chunk = rows[start : start + cfg.shard_docs]
            write_atomic(pl.DataFrame([{c: r.get(c) for c in COLUMNS} for r in chunk], schema=COLUMNS), out / rel)
    with open(out / "_provenance.jsonl", "w") as f:
        for d in docs:
            f.write(json.dumps({k: v for k, v in d.items() if k != "text"}) + "\n")
    spec = cfg.spec.model_copy(update={"heldout": str(heldout.path)})
    sources = sorted({d["source_id"] for d in docs})
    report = {
        "format": FORMAT,
        "spec": spec.model_dump(mode="json"),
        "config": cfg.model_dump(mode="json"),
        "corpus": str(corpus),
        "corpus_files": [{"path": p, "sha256": file_sha256(p)} for p in files],
        "heldout": {
            "path": str(heldout.path),
            "sha256": heldout.sha256,
            "contexts": len(heldout.contexts),
            "requests": len(heldout.requests),
        },
        "leakage": {"ngram": cfg.leakage_ngram, "documents_checked": len(docs), "leaks": 0},
        "documents": counts,
        "source_pool": len(pool),
        "source_documents_used": len(sources),
        "sources_reused": cfg.n_docs > len(pool),
        "seed": cfg.seed,
        "elapsed_seconds": round(time.time() - t0, 2),
    }
    (out / REPORT).write_text(json.dumps(report, indent=1) + "\n")
    return report
