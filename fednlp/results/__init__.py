"""Run records: a run directory's files, written and read in one place (run_files: RunDirectory, RunWriter), its
result.json as a typed RunResult (run_result), and the leaderboard and plots that read every run under a folder."""
