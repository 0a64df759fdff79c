"""Chat templates for post-training: a persona template built from markers, the tokenizer's own, or a Jinja file.

The persona template renders ``<user>...</user>\\n\\n<assistant>...</assistant><eos>`` with the same
``<assistant>``/``</assistant>`` markers that `curate synth reflect` put around persona reflections in pretraining,
so post-training addresses the persona the pretraining data described. Assistant content (with its end marker and
EOS) sits inside ``{% generation %}`` so TRL's assistant-only loss trains exactly those tokens, stop included.
Turns are joined by a separator placed *before* each turn, so a prompt renders as a prefix of prompt + answer
(which DPO relies on).
"""

from __future__ import annotations

import json
from pathlib import Path

from curation.core.errors import CurationError

from .config import ChatTemplateConfig


def _lit(s: str) -> str:
    """A Jinja string literal (JSON string syntax is valid Jinja)."""
    return json.dumps(s)


def persona_template(c: ChatTemplateConfig) -> str:
    sep = _lit(c.separator)
    eos = "{{ eos_token }}" if c.add_eos else ""
    return (
        "{%- for message in messages -%}"
        "{%- if not loop.first -%}{{ " + sep + " }}{%- endif -%}"
        "{%- if message['role'] == 'system' -%}"
        "{{ " + _lit(c.system_marker) + " }}{{ message['content'] }}{{ " + _lit(c.system_marker_end) + " }}"
        "{%- elif message['role'] == 'user' -%}"
        "{{ " + _lit(c.user_marker) + " }}{{ message['content'] }}{{ " + _lit(c.user_marker_end) + " }}"
        "{%- elif message['role'] == 'assistant' -%}"
        "{{ "
        + _lit(c.assistant_marker)
        + " }}{% generation %}{{ message['content'] }}{{ "
        + _lit(c.assistant_marker_end)
        + " }}"
        + eos
        + "{% endgeneration %}"
        "{%- else -%}{{ raise_exception('unknown role ' + message['role']) }}"
        "{%- endif -%}"
        "{%- endfor -%}"
        "{%- if add_generation_prompt -%}"
        "{%- if messages -%}{{ " + sep + " }}{%- endif -%}{{ " + _lit(c.assistant_marker) + " }}"
        "{%- endif -%}"
    )


def chat_template(c: ChatTemplateConfig, tokenizer) -> str | None:
    """The Jinja template to install on the tokenizer (None: keep the tokenizer's own)."""
    if c.style == "persona":
        return persona_template(c)
    if c.style == "jinja":
        p = Path(c.path)
        if not p.is_file():
            raise CurationError(
                f"{c.path}: chat_template.path does not exist; pass a .jinja file or use style: persona"
            )
        return p.read_text()
    if not getattr(tokenizer, "chat_template", None):
        raise CurationError(
            "chat_template.style is `tokenizer` but the checkpoint's tokenizer has no chat template; "
            "use style: persona or style: jinja"
        )
    return None


def apply(c: ChatTemplateConfig, tokenizer):
    tpl = chat_template(c, tokenizer)
    if tpl is not None:
        tokenizer.chat_template = tpl
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer
