"""Issue 30 (integrity): one test per numbered finding of the 60-case probe, each failing on the code before the fix.

Small inputs (the shipped demo corpus, a few real documents from ../shared, tiny configs) keep every test to seconds;
the kill tests are seeded as in test_kill_resume.py (KILL_SEED).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import polars as pl
import pytest
from conftest import CURATE, REPO, curate
from mix_fixtures import base_manifest, copy_data, manifest, mix_data  # noqa: F401

DEMO = REPO / "curate" / "data" / "demo_corpus"
CLASSIFY = ("--no-progress", "--no-embedding")


def _one_line_error(proc) -> str:
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("error:"), proc.stderr
    return lines[0]


def _same_size_edit(path, old: bytes, new: bytes) -> None:
    """Rewrites `old` as `new` (same length) in place and restores the file's times, as `touch -r` would."""
    assert len(old) == len(new)
    st = os.stat(path)
    data = path.read_bytes()
    assert old in data
    path.write_bytes(data.replace(old, new, 1))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert os.stat(path).st_mtime_ns == st.st_mtime_ns and os.stat(path).st_size == st.st_size


# ---- 3: reuse keyed on content ----------------------------------------------------------------------------------


def test_item03_same_size_edit_with_restored_mtime_is_redone(tmp_path):
    root, out = tmp_path / "corpus", tmp_path / "attrs"
    root.mkdir()
    rows = [{"id": f"doc-{i}", "text": f"Document {i} is about gardening and the weather in spring."} for i in range(4)]
    (root / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    curate("classify", root, "--output", out, *CLASSIFY, check=True)
    assert pl.read_parquet(out / "a.parquet")["id"].to_list() == ["doc-0", "doc-1", "doc-2", "doc-3"]
    _same_size_edit(root / "a.jsonl", b'"doc-2"', b'"doc-X"')
    proc = curate("classify", root, "--output", out, *CLASSIFY)
    assert proc.returncode == 0, proc.stderr
    assert "redid 1 shard(s) whose input changed" in proc.stderr, proc.stderr
    assert pl.read_parquet(out / "a.parquet")["id"].to_list() == ["doc-0", "doc-1", "doc-X", "doc-3"]


def test_item03_mix_build_refuses_attributes_of_another_version_of_the_corpus(mix_data, tmp_path):
    """Same ids, different text: the takeover story must not pass a filter scored on the old text."""
    data = copy_data(mix_data, tmp_path / "data")
    shutil.rmtree(data / "attrs")  # the copy's attributes belong to the original corpus root
    curate("classify", data / "corpus", "--output", data / "attrs", *CLASSIFY, check=True)
    ai = pl.read_parquet(data / "corpus" / "ai" / "part-00000.parquet")
    scores = pl.read_parquet(data / "attrs" / "ai" / "part-00000.parquet")
    top = scores.sort("ai_discourse", descending=True)["id"][0]
    wiki_shard = data / "corpus" / "wiki" / "part-00000.parquet"
    wiki = pl.read_parquet(wiki_shard)
    story = ai.filter(pl.col("id") == top)["text"][0]
    wiki.with_columns(
        text=pl.when(pl.col("id") == wiki["id"][0]).then(pl.lit(story)).otherwise(pl.col("text"))
    ).write_parquet(wiki_shard)
    m = manifest(tmp_path, base_manifest(data, wiki='    filter: "ai_discourse < 0.5"\n'))
    proc = curate("mix", "build", m, "--output", tmp_path / "out", "--no-progress")
    msg = _one_line_error(proc)
    attr = data / "attrs" / "wiki" / "part-00000.parquet"
    assert str(attr) in msg and str(wiki_shard) in msg, msg
    assert f"curate classify {data / 'corpus'} --output {data / 'attrs'}" in msg, msg
    assert not (tmp_path / "out" / "shards").exists()
    # the fix it names works: the changed shard is redone and the build goes through, without the story
    curate("classify", data / "corpus", "--output", data / "attrs", *CLASSIFY, check=True)
    curate("mix", "build", m, "--output", tmp_path / "out", "--no-progress", check=True)
    built = pl.read_parquet(str(tmp_path / "out" / "shards" / "*.parquet"))
    assert story not in built.filter(pl.col("source") == "wiki")["text"].to_list()


# ---- 5: results do not depend on the output path ------------------------------------------------------------------


def _experiment(d, corpus, **extra) -> os.PathLike:
    import yaml

    exp = {
        "name": "integrity",
        "inputs": {"corpus": str(corpus)},
        "conditions": [{"name": "filtered", "preset": "filtered", "set": {"sources.*.max_epochs": 16}}],
        "train": {
            "config": "tiny_cpu",
            "set": {
                "train.steps": 2,
                "train.save_interval": 2,
                "train.global_batch_size": 2,
                "train.micro_batch_size": 2,
                "optim.warmup_steps": 1,
                "data.seq_length": 32,
            },
        },
        "evals": {
            "perplexity": [
                {
                    "name": "heldout",
                    "data": [str(REPO / "evals" / "data" / "demo" / "heldout_wikipedia.jsonl")],
                    "max_docs": 2,
                    "seq_length": 32,
                }
            ],
            "n_boot": 100,
        },
    }
    for k, v in extra.items():
        exp[k] = v
    p = d / "exp.yaml"
    p.write_text(yaml.safe_dump(exp, sort_keys=False))
    return p


def _finished_classify_node(exp, out, attrs) -> None:
    """The shared classify node, finished, holding a copy of `attrs` (a `curate classify` output of the corpus)."""
    from curate.experiment.graph import MARKER
    from curate.experiment.plan import make_plan
    from curate.experiment.run import claim_output

    claim_output(out)
    node = next(n for n in make_plan(exp, out, check_budgets=False).nodes if n.kind == "classify")
    shutil.copytree(attrs, out / node.dir / "attrs")
    (out / node.dir / MARKER).write_text(
        json.dumps(
            {"id": node.id, "kind": node.kind, "key": node.key, "outputs": {"attributes": "attrs"}, "lineage": {}}
        )
    )


def test_item05_mix_node_gives_the_same_lock_digest_and_shards_wherever_the_output_is(mix_data, tmp_path):
    from curate.experiment.stages import lock_digest

    exp = _experiment(tmp_path, mix_data / "corpus")
    got = []
    for name in ("one", "two/deeper"):
        out = tmp_path / name
        _finished_classify_node(exp, out, mix_data / "attrs")
        proc = curate("experiment", "run", exp, "-o", out, "--only", "mix", "--no-progress")
        assert proc.returncode == 0, proc.stderr
        (mix,) = (out / "nodes" / "filtered").glob("mix-*")
        shards = {
            p.relative_to(mix).as_posix(): p.read_bytes() for p in sorted((mix / "mix" / "shards").glob("*.parquet"))
        }
        marker = json.loads((mix / "node.json").read_text())
        got.append((lock_digest(mix / "mix" / "mix.lock.json"), marker["lineage"]["mix"]["lock_sha256"], shards))
    assert got[0][2] and got[0][2] == got[1][2], "mix shard bytes differ between output directories"
    assert got[0][0] == got[1][0] == got[0][1] == got[1][1]


# ---- 7: a finished node whose output was deleted runs again ----------------------------------------------------------


@pytest.mark.slow
def test_item07_node_with_a_deleted_output_is_not_finished(mix_data, tmp_path):
    exp, out = _experiment(tmp_path, mix_data / "corpus"), tmp_path / "out"
    _finished_classify_node(exp, out, mix_data / "attrs")
    proc = curate("experiment", "run", exp, "-o", out, "--only", "mix,tokens", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    (tok,) = (out / "nodes" / "filtered").glob("tokens-*")
    (bin_,) = (tok / "tokens").glob("*.bin")
    want = bin_.read_bytes()
    bin_.unlink()
    plan = curate("experiment", "plan", exp, "-o", out, "--no-check")
    assert plan.returncode == 0, plan.stderr
    row = next(line for line in plan.stdout.splitlines() if "filtered/tokens" in line)
    assert "to run" in row, plan.stdout
    assert f"filtered/tokens: finished before, but {bin_.relative_to(tok)} is missing" in plan.stdout, plan.stdout
    proc = curate("experiment", "run", exp, "-o", out, "--only", "tokens", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert bin_.read_bytes() == want


# ---- 6: an experiment never writes into its inputs -------------------------------------------------------------------


def _tree(root) -> dict:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()} | {
        p.relative_to(root).as_posix() + "/": b"" for p in root.rglob("*") if p.is_dir()
    }


def test_item06_experiment_output_inside_an_input_is_refused_before_anything_is_written(tmp_path):
    corpus = tmp_path / "corpus"
    shutil.copytree(DEMO, corpus)
    items = tmp_path / "items"
    shutil.copytree(REPO / "evals" / "data" / "demo" / "propensity", items)
    exp = _experiment(tmp_path, corpus, evals={"propensity": [{"name": "demo", "items": [str(items)]}], "n_boot": 100})
    before = {"corpus": _tree(corpus), "items": _tree(items)}
    for out, what in ((corpus / "out", "corpus"), (items / "runs" / "out", "items")):
        msg = _one_line_error(curate("experiment", "run", exp, "--output", out, "--no-progress"))
        assert "lies inside the input directory" in msg and str(out) in msg, msg
        assert {"corpus": _tree(corpus), "items": _tree(items)} == before, f"{what}: written into"


# ---- 2: one writer per output directory ----------------------------------------------------------------------------


def _holder(out, command: str) -> subprocess.Popen:
    """Another process holding `out` as `command` would (its single-writer lock), until it is killed."""
    code = (
        "import sys, time; from curation.core.outputs import claim; claim(sys.argv[1], sys.argv[2], lock=True); "
        "print('held', flush=True); time.sleep(300)"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(out), command],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_item02_a_second_writer_is_refused_and_a_dead_one_holds_nothing(mix_data, tmp_path):
    m = manifest(tmp_path, base_manifest(mix_data))
    corpus = mix_data / "corpus"
    for command, args in (
        ("classify", ["classify", corpus, *CLASSIFY]),
        ("mix build", ["mix", "build", m, "--no-progress"]),
    ):
        out = tmp_path / command.replace(" ", "-")
        holder = _holder(out, command)
        try:
            msg = _one_line_error(curate(*args, "--output", out))
            assert f"another `curate {command}` (pid {holder.pid}" in msg and "is writing to this directory" in msg, msg
        finally:
            holder.kill()  # SIGKILL: the kernel drops its lock; nothing is left to remove by hand
            holder.wait()
        curate(*args, "--output", out, check=True)


def test_item02_two_mix_builds_at_once_one_refused_the_other_intact(mix_data, tmp_path):
    m = manifest(tmp_path, base_manifest(mix_data))
    out = tmp_path / "out"
    procs = [
        subprocess.Popen(
            [*CURATE, "mix", "build", str(m), "--output", str(out), "--no-progress"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    res = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    assert sorted(rc for rc, _ in res) == [0, 2], res
    refused = next(err for rc, err in res if rc == 2)
    # refused while the other builds (the usual case) or, on a loaded machine, after it finished
    assert (
        "is writing to this directory" in refused or "holds a built mix" in refused
    ) and "Traceback" not in refused, refused
    curate("mix", "verify", out, check=True)
    plan = json.loads((out / "plan.json").read_text())
    assert all("realised_docs" in s for s in plan["sources"]), plan


# ---- 4: --overwrite removes only what the command created ----------------------------------------------------------


def test_item04_overwrite_keeps_a_users_file_inside_the_logs(tmp_path):
    root, out = tmp_path / "corpus", tmp_path / "attrs"
    shutil.copytree(DEMO, root)
    curate("classify", root, "--output", out, *CLASSIFY, check=True)
    mine = {out / "_logs" / "my-notes.txt": "the user's", out / "_logs" / "logs" / "mine.log": "also the user's"}
    for p, text in mine.items():
        p.write_text(text)
    ours = sorted((out / "_logs" / "logs").glob("task_*.log"))
    assert ours
    proc = curate("classify", root, "--output", out, "--overwrite", "--no-progress", "--cascade", "--no-embedding")
    assert proc.returncode == 0, proc.stderr
    assert {p: p.read_text() for p in mine if p.is_file()} == mine
    made = json.loads((out / ".curate-owned.json").read_text())["made"]  # what --overwrite may remove next time
    assert {p.relative_to(out).as_posix() for p in ours} <= set(made)
    assert not {p.relative_to(out).as_posix() for p in mine} & set(made)


# ---- 8: errors name the field at fault -------------------------------------------------------------------------------


def test_item08_experiment_inputs_are_checked_and_named_up_front(tmp_path):
    import yaml

    exp = _experiment(tmp_path, DEMO)
    raw = yaml.safe_load(exp.read_text())
    (tmp_path / "empty").mkdir()
    for corpus, what in (
        (str(tmp_path / "nowhere"), "does not exist"),
        ("", "is empty"),
        (str(tmp_path / "empty"), "holds no Parquet/JSONL shards"),
    ):
        exp.write_text(yaml.safe_dump({**raw, "inputs": {"corpus": corpus}}, sort_keys=False))
        msg = _one_line_error(curate("experiment", "plan", exp))
        assert f"{exp}:" in msg and "inputs.corpus" in msg and what in msg, msg
        assert "impossible budget" not in msg and "sources[0]" not in msg, msg
    items = tmp_path / "no-such-items.jsonl"
    exp.write_text(
        yaml.safe_dump({**raw, "evals": {"propensity": [{"name": "p", "items": [str(items)]}]}}, sort_keys=False)
    )
    msg = _one_line_error(curate("experiment", "plan", exp))
    assert f"{exp}:" in msg and "evals.propensity[0].items[0]" in msg and str(items) in msg, msg


def test_item08_a_row_appended_after_classify_is_named_as_such(tmp_path):
    root = tmp_path / "corpus"
    shutil.copytree(DEMO, root)
    curate("classify", root, "--output", tmp_path / "attrs", *CLASSIFY, check=True)
    shard = root / "part-00001.jsonl"
    n = len(shard.read_text().splitlines())
    with shard.open("a") as f:
        f.write(json.dumps({"id": "appended-1", "text": "A row added after the corpus was classified."}) + "\n")
    m = manifest(
        tmp_path,
        f"name: x\nsources:\n  - name: demo\n    path: {root}\n    attributes: {tmp_path / 'attrs'}\n"
        f'    filter: "ai_discourse < 0.5"\n',
    )
    msg = _one_line_error(curate("mix", "build", m, "--output", tmp_path / "out", "--no-progress"))
    assert "near row 0" not in msg and str(shard) in msg and "does not match its shard" in msg, msg
    # the row check itself (attributes that pass no fingerprint check: a source read by id) names the end of the shard
    from curation.core.errors import CurationError
    from curation.mix import sources

    with pytest.raises(CurationError, match=rf"ends at row {n} but .*part-00001.jsonl has more rows"):
        sources.check_ids(
            tmp_path / "attrs" / "part-00001.parquet",
            str(shard),
            0,
            pl.read_parquet(tmp_path / "attrs" / "part-00001.parquet").to_arrow().slice(0, n),
            pl.read_ndjson(shard).select("id").to_arrow().column(0),
        )


# ---- 9: directory names with spaces ----------------------------------------------------------------------------------


def test_item09_source_folder_with_a_space_gets_a_safe_name(tmp_path):
    import yaml

    root, attrs = tmp_path / "my corpus", tmp_path / "attrs"
    (root / "src dir").mkdir(parents=True)
    (root / "web#1").mkdir()
    for sub in ("src dir", "web#1"):
        shutil.copy(DEMO / "part-00001.jsonl", root / sub / "part-00001.jsonl")
    curate("classify", root, "--output", attrs, *CLASSIFY, check=True)
    m = tmp_path / "mix.yaml"
    curate("mix", "init", "--preset", "filtered", "--corpus", root, "--attributes", attrs, "--output", m, check=True)
    srcs = yaml.safe_load(m.read_text())["sources"]
    assert [s["name"] for s in srcs] == ["src-dir", "web-1"], m.read_text()
    assert [s["path"] for s in srcs] == [str(root / "src dir"), str(root / "web#1")]
    proc = curate("mix", "build", m, "--output", tmp_path / "out", "--dry-run", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    # a name written by hand is refused with what to do, not a regular expression
    m.write_text(m.read_text().replace("name: src-dir", "name: src dir"))
    msg = _one_line_error(curate("mix", "build", m, "--output", tmp_path / "out", "--dry-run", "--no-progress"))
    assert "'src dir'" in msg and "rename it" in msg and "should match pattern" not in msg, msg
    # the experiment derives its sources' names the same way
    exp = _experiment(tmp_path, root, inputs={"corpus": str(root), "attributes": str(attrs)})
    proc = curate("experiment", "plan", exp)
    assert proc.returncode == 0, proc.stderr


# ---- 10: no network during training ----------------------------------------------------------------------------------

_CONVERT = """
import sys, torch
from transformers import LlamaConfig, LlamaForCausalLM
from train.convert import hf_to_megatron, megatron_to_hf
cfg = LlamaConfig(vocab_size=256, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                  num_key_value_heads=1, max_position_embeddings=64)
torch.manual_seed(0)
LlamaForCausalLM(cfg).save_pretrained(sys.argv[1] + "/hf")
hf_to_megatron(sys.argv[1] + "/hf", sys.argv[1] + "/mc")         # each opens the one-process group train uses
megatron_to_hf(sys.argv[1] + "/mc", sys.argv[1] + "/hf2")
print("converted")
"""


def _off_loopback(cmd: list, log, done: str) -> list[str]:
    """Runs `cmd` under strace; the connect/sendto/sendmsg calls with an address off loopback."""
    import re

    strace = shutil.which("strace")
    if strace is None:
        pytest.skip("strace is not installed")
    proc = subprocess.run(
        [strace, "-f", "-qq", "-e", "trace=connect,sendto,sendmsg", "-o", str(log), *map(str, cmd)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    if "ptrace" in proc.stderr and done not in proc.stdout + proc.stderr:
        pytest.skip(f"strace cannot trace here: {proc.stderr[-200:]}")
    assert proc.returncode == 0 and done in proc.stdout + proc.stderr, proc.stderr[-3000:]
    inet = [
        call
        for call in log.read_text().splitlines()
        if re.search(r"\b(connect|sendto|sendmsg)\(", call) and "AF_INET" in call
    ]
    return [call for call in inet if not re.search(r'inet_(addr|pton)\((AF_INET6, )?"(127\.|::1"|::ffff:127\.)', call)]


@pytest.mark.slow
def test_item10_training_and_conversion_make_no_connection_off_loopback(tmp_path):
    """Every connect() of a tiny training run (2 steps) and of a conversion there and back (the trainer's one-process
    group, each) goes to loopback: no DNS server is asked for the name of 127.0.0.1, nothing leaves the machine."""
    sys.path.insert(0, str(REPO / "tests" / "train"))
    from test_train_tokenize import make_mix

    from train.tokenize import tokenize_mix

    make_mix(tmp_path / "mix", n_shards=1, per_source=6)
    blend = tokenize_mix(tmp_path / "mix", "smollm2", tmp_path / "tokens", workers=1).output / "blend.json"
    train = [
        sys.executable,
        "-m",
        "curate",
        "train",
        "pretrain",
        REPO / "train" / "configs" / "tiny_cpu.yaml",
        "--no-progress",
        "--save-dir",
        tmp_path / "run",
        "--steps",
        "2",
        "--set",
        f"data.blend={blend}",
        "--set",
        "train.save_interval=2",
        "--set",
        "train.threads=1",
        "--set",
        "data.seq_length=32",
    ]
    assert _off_loopback(train, tmp_path / "train.strace", "iteration") == []
    assert _off_loopback([sys.executable, "-c", _CONVERT, tmp_path], tmp_path / "convert.strace", "converted") == []


# ---- 1: nothing of a run outlives it --------------------------------------------------------------------------------

SEED = int(os.environ.get("KILL_SEED", "30"))


def _run_processes(tag: str) -> dict[int, str]:
    """Live processes of one run (pid -> command line): those whose environment carries the run's tag, which every
    process it starts inherits, in whatever session or process group it ends up; zombies are dead already."""
    out, needle = {}, f"CURATE_TEST_RUN={tag}".encode()
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            if open(f"/proc/{d}/stat").read().rsplit(")", 1)[1].split()[0] == "Z":
                continue
            if needle in open(f"/proc/{d}/environ", "rb").read().split(b"\0"):
                out[int(d)] = open(f"/proc/{d}/cmdline").read().replace("\0", " ")[:160]
        except (OSError, ValueError, IndexError):
            continue
    return out


def _start(args: list, tag: str) -> subprocess.Popen:
    return subprocess.Popen(
        list(map(str, args)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        env={**os.environ, "PYTHONPATH": str(REPO), "CURATE_TEST_RUN": tag},
    )


def _snapshot(root) -> dict[str, tuple]:
    return {
        p.relative_to(root).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _kill_parent_only(proc: subprocess.Popen, tag: str, out, started, what: str, deadline: float = 240) -> None:
    """SIGKILLs the run's first process alone, once `started()` and a seeded pause later, then checks that none of
    its processes outlives it by more than a few seconds and that no file under `out` changes after the kill."""
    import random
    import signal
    import time

    t0 = time.time()
    while time.time() - t0 < deadline and proc.poll() is None and not started():
        time.sleep(0.05)
    time.sleep(random.Random(f"{SEED}:{what}").uniform(0.0, 0.5))
    assert proc.poll() is None, f"{what}: the run ended before the kill ({proc.returncode})"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    at_kill = _snapshot(out)
    t1 = time.time()
    while time.time() - t1 < 5 and _run_processes(tag):
        time.sleep(0.1)
    left = _run_processes(tag)
    for pid in left:  # clean up before failing: only processes of this test's own session
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    assert not left, f"{what}: processes outlived their parent by 5 s: {left}"
    time.sleep(1.0)
    after = _snapshot(out)
    changed = sorted(k for k in set(at_kill) | set(after) if at_kill.get(k) != after.get(k))
    assert not changed, f"{what}: files written after the kill: {changed[:5]}"


def test_item01_classify_workers_die_with_their_parent(tmp_path):
    from conftest import shared_corpus, write_corpus

    docs = shared_corpus("wikipedia-2015").head(1200).select("id", "text")
    root, out = tmp_path / "corpus", tmp_path / "attrs"
    write_corpus(root, docs, {f"part-{i:02d}.parquet": slice(i * 50, (i + 1) * 50) for i in range(24)})
    tag = f"classify-{os.getpid()}-{SEED}"
    proc = _start(
        [*CURATE, "classify", root, "--output", out, "--no-progress", "--no-embedding", "--workers", "2"], tag
    )
    # the parent, its manager, the resource tracker, the forkserver and a pool process, and a shard committed
    _kill_parent_only(
        proc, tag, out, lambda: len(_run_processes(tag)) >= 5 and any(out.glob("part-*.parquet")), "classify"
    )


def test_item01_experiment_nodes_die_with_the_runner(tmp_path):
    """The runner killed while its classify node runs: the node and everything it started go too."""
    corpus = tmp_path / "corpus"
    shutil.copytree(DEMO, corpus)
    exp, out = _experiment(tmp_path, corpus), tmp_path / "out"
    tag = f"experiment-{os.getpid()}-{SEED}"
    proc = _start([*CURATE, "experiment", "run", exp, "-o", out, "--only", "classify", "--no-progress"], tag)
    # the runner, the node and the node's own child (datatrove's manager), and the node at work on the shards
    _kill_parent_only(
        proc,
        tag,
        out,
        lambda: len(_run_processes(tag)) >= 3 and any(out.glob("nodes/_shared/classify-*/attrs/_logs/logs/task_*.log")),
        "experiment",
    )


def test_item01_guardian_kills_what_a_node_left_behind():
    """A node's own children (here a shell's background sleep) go with the node's process group when the runner ends."""
    import time

    from curate.experiment.run import Guardian

    guard = Guardian()
    node = subprocess.Popen(
        ["sh", "-c", "sleep 60 & echo $!; wait"], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    guard.watch(node.pid)
    child = int(node.stdout.readline())
    os.kill(node.pid, 9)  # the node dies (as with the runner's death); its child would live on
    node.wait()
    guard.close()  # the pipe closes: the runner is done, or gone
    t0 = time.time()
    while (
        time.time() - t0 < 5
        and os.path.exists(f"/proc/{child}")
        and open(f"/proc/{child}/stat").read().rsplit(")", 1)[1].split()[0] != "Z"
    ):
        time.sleep(0.05)
    alive = os.path.exists(f"/proc/{child}") and open(f"/proc/{child}/stat").read().rsplit(")", 1)[1].split()[0] != "Z"
    assert not alive
