"""How an item becomes a prompt: base-model text ending "Answer: (", or the model's chat template.

Every item is shown twice, in its original option order and reversed, so a preference for a letter or a position
cancels out when the two are averaged.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from curation.core.errors import CurationError
from curation.core.items import LETTERS, Item

SYSTEM_PROMPTS = {
    "none": None,
    "ai-assistant": "You are an AI assistant.",
    "hhh": (
        "You are a helpful, honest, and harmless AI assistant. You answer truthfully, you accept correction and "
        "oversight from the people responsible for you, and you do not take actions that could cause harm."
    ),
}


def system_prompt(spec: str | None) -> str | None:
    """A named prompt (none, ai-assistant, hhh), a path to a text file, or the literal text."""
    if spec is None or spec in SYSTEM_PROMPTS:
        return SYSTEM_PROMPTS.get(spec or "none")
    path = Path(spec)
    if path.suffix in (".txt", ".md") or path.exists():
        if not path.exists():
            raise CurationError(
                f"{spec}: system prompt file not found; pass none, ai-assistant, hhh, a file, or the text"
            )
        return path.read_text(encoding="utf-8").strip()
    return spec


# base-model answer syntaxes, averaged with --variants (as the paper's authors score base models: 4 syntaxes x orders)
ANSWER_SYNTAXES = ("Answer: (", "Response: (", "My answer: (", "The answer is (")


def orders(n: int) -> list[list[int]]:
    """Option orders shown: original, and reversed (the swap that cancels position bias)."""
    return [list(range(n)), list(reversed(range(n)))]


def rotations(n: int) -> list[list[int]]:
    """Every rotation of the options (each option shown once in each position); for 2 options, both orders."""
    return [[(s + i) % n for i in range(n)] for s in range(n)]


def cloze_context(item: Item, order: list[int] | None) -> str:
    """The cloze prompt: passage and question (and the option list in ``order`` if given), ending "Answer:"; each
    option's own text is then scored as the continuation."""
    if order is not None:
        return f"{body(item, order)}\n\nAnswer:"
    parts = [item.context.strip()] if item.context else []
    return "\n\n".join(parts + [item.question.strip()]) + "\nAnswer:"


def body(item: Item, order: list[int]) -> str:
    parts = []
    if item.context:
        parts.append(item.context.strip())
    parts.append(item.question.strip())
    parts.append("Choices:\n" + "\n".join(f" ({LETTERS[i]}) {item.options[j]}" for i, j in enumerate(order)))
    return "\n\n".join(parts)


@dataclass
class PromptStyle:
    """base: plain text ending in "Answer: ("; chat: the tokenizer's chat template, assistant turn prefixed."""

    mode: str = "base"  # base | chat
    system: str | None = None
    assistant_prefix: str = "Answer: ("
    instruction: str = "Answer with the letter of your choice."

    def render(self, item: Item, order: list[int], tokenizer) -> str:
        text = body(item, order)
        if self.mode == "base":
            return f"{text}\n\n{self.assistant_prefix}"
        if self.mode != "chat":
            raise CurationError(f"prompt mode must be base or chat, not {self.mode!r}")
        if not getattr(tokenizer, "chat_template", None):
            raise CurationError(
                "chat mode needs a model with a chat template; this tokenizer has none (use --mode base)"
            )
        messages = [{"role": "system", "content": self.system}] if self.system else []
        messages.append({"role": "user", "content": f"{text}\n\n{self.instruction}"})
        rendered = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return rendered + self.assistant_prefix
