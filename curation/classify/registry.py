"""The open registry of classify taggers (as Dolma's tagger registry): a name, its config section and a step factory.

A new tagger is a config section (a `TaggerConfig`) and a factory (or a `TaggerStep` subclass) registered with
`register_tagger`; `ClassifyConfig` accepts and validates a top-level section of that name without being edited.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pydantic import Field

from curation.core.config import Strict
from curation.core.errors import CurationError


class TaggerConfig(Strict):
    """The base of every tagger's config section: `enabled` decides whether the stage runs."""

    DOCS = "docs/classify.md"
    enabled: bool = Field(True, description="run this stage")


@dataclass(frozen=True)
class Tagger:
    name: str
    config: type[TaggerConfig]
    factory: Callable  # (ClassifyConfig, ModelSet) -> a datatrove step whose `columns()` names what it adds


TAGGERS: dict[str, Tagger] = {}  # in cascade order: each stage reads the scores of the ones registered before it


def register_tagger(name: str, config: type[TaggerConfig]):
    """Registers the decorated factory (or step class), called as `factory(cfg, models)`, under `name`.

    Its section of the classify config is `cfg.<name>` (YAML: a top-level `<name>:` mapping), validated by `config`.
    Stages run in registration order, so a new one runs after the shipped ones and sees their scores.
    """
    if not name.isidentifier():
        raise ValueError(f"tagger name {name!r}: use a Python identifier (it is a config section)")
    if not (isinstance(config, type) and issubclass(config, TaggerConfig)):
        raise TypeError(f"tagger {name!r}: its config must subclass TaggerConfig (it needs `enabled`)")

    def wrap(factory: Callable) -> Callable:
        old = TAGGERS.get(name)
        if old is not None and getattr(old.factory, "__qualname__", None) != getattr(factory, "__qualname__", 0):
            raise ValueError(f"tagger {name!r} is already registered (by {old.factory!r}); pick another name")
        TAGGERS[name] = Tagger(name, config, factory)
        return factory

    return wrap


def tagger(name: str) -> Callable:
    """The factory of a stage; building it checks the step's `_requires_dependencies` (datatrove does, in `__new__`)."""
    try:
        factory = TAGGERS[name].factory
    except KeyError:
        raise CurationError(f"unknown tagging stage {name!r}; known stages: {', '.join(TAGGERS)}") from None

    def build(cfg, models):
        try:
            return factory(cfg, models)
        except ImportError as e:  # datatrove's message names the package and its pip install line
            raise CurationError(f"classify stage {name!r}: {e} Or disable it: `{name}.enabled: false`") from None

    return build
