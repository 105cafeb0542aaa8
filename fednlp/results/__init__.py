"""Run records: a run directory's files, written and read in one place (run_files: RunDirectory, RunWriter), its
result.json as a typed RunResult (run_result) with its provenance block (provenance), and what reads every run
under a folder: the leaderboard with chance marks (leaderboard, chance), `fednlp compare` (compare), the docs'
tables rebuilt from records (docs_tables) and plots."""
