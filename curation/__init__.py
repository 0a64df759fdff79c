"""The toolkit's library below the command: the kernel (`core/`), the language-model layer (`lm/`), and the classify
(`classify/`) and mix (`mix/`) stages. The command itself, which composes the stages, is the `curate` package."""
