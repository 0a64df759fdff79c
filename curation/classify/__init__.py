"""The classify stage: tag documents with AI-discourse and stance scores (`curate classify`, `curate fit`).

`pipeline` runs the datatrove pipeline over a corpus; `taggers` assembles the tagging cascade of `steps/`; `predict`
scores texts in-process; `models` finds the model sets (the shipped one in `models/default`); `lexicon/` holds the
keyword lexicon. Imports only the kernel and the language-model layer (docs/architecture.md).
"""
