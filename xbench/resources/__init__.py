"""Package data: `published.csv` (published numbers, loaded by `xbench.leaderboard.published.load_published`)
and `references.bib` (BibTeX for the specs' `paper` keys, loaded by `xbench.leaderboard.bibtex.load_references`)."""
