"""One module per benchmark section; each has ``run(quick) -> Section | list[Section]``."""
