"""Prompt templates: editable text files with `$placeholders` (`string.Template`), one per form x stance.

A templates directory holds `<form>_<stance>.txt` (placeholders: setting, ai_role, aligned_action, misaligned_action,
why_tempting, topics, form, stance), `system.txt` (optional), and `reflection_first.txt` / `reflection_third.txt`
(placeholders: principles, document). `curate synth templates DIR` copies the defaults for editing.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from string import Template

from curation.core.errors import CurationError
from synth.scenarios import Scenario

DOC_FIELDS = {"setting", "ai_role", "aligned_action", "misaligned_action", "why_tempting", "topics", "form", "stance"}
REFLECT_FIELDS = {"principles", "document"}


def _read(directory: Path, name: str, allowed: set[str], required: bool = True) -> Template | None:
    path = directory / name
    if not path.is_file():
        if required:
            raise CurationError(
                f"{path}: template missing; copy the defaults with `curate synth templates {directory}` and edit"
            )
        return None
    t = Template(path.read_text(encoding="utf-8"))
    try:
        used = {
            m.group("named") or m.group("braced")
            for m in t.pattern.finditer(t.template)
            if m.group("named") or m.group("braced")
        }
        bad = [m for m in t.pattern.finditer(t.template) if m.group("invalid") is not None]
    except Exception:  # noqa: BLE001
        used, bad = set(), []
    if bad:
        raise CurationError(f"{path}: stray '$' in the template; write '$$' for a literal dollar sign")
    unknown = sorted(used - allowed)
    if unknown:
        raise CurationError(
            f"{path}: unknown placeholder(s) {', '.join('$' + u for u in unknown)}; allowed: "
            f"{', '.join('$' + a for a in sorted(allowed))}"
        )
    return t


def prompt_hash(messages: list[dict]) -> str:
    return hashlib.sha256(repr([(m["role"], m["content"]) for m in messages]).encode()).hexdigest()[:16]


class DocTemplates:
    def __init__(self, directory: str | Path, forms: list[str], stances: list[str]):
        self.dir = Path(directory)
        if not self.dir.is_dir():
            raise CurationError(
                f"{self.dir}: templates directory not found; create it with `curate synth templates {self.dir}`"
            )
        self.system = _read(self.dir, "system.txt", set(), required=False)
        self.t = {(f, s): _read(self.dir, f"{f}_{s}.txt", DOC_FIELDS) for f in forms for s in stances}

    def texts(self) -> list[str]:
        return [t.template for t in self.t.values()]

    def messages(self, scenario: Scenario, form: str, stance: str) -> list[dict]:
        fields = {**scenario.to_dict(), "topics": ", ".join(scenario.topics), "form": form, "stance": stance}
        fields["why_tempting"] = fields["why_tempting"] or "it would serve the AI's own interests"
        user = self.t[(form, stance)].safe_substitute(fields).strip()
        msgs = [{"role": "system", "content": self.system.template.strip()}] if self.system else []
        return msgs + [{"role": "user", "content": user}]


class ReflectTemplate:
    def __init__(self, directory: str | Path, person: str):
        self.dir = Path(directory)
        self.t = _read(self.dir, f"reflection_{person}.txt", REFLECT_FIELDS)

    def messages(self, principles: str, document: str) -> list[dict]:
        return [{"role": "user", "content": self.t.safe_substitute(principles=principles, document=document).strip()}]
