"""Run records: the files a training run writes (run_files) and the leaderboard that reads them."""
