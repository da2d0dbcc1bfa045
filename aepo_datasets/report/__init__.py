"""What a run reports: run_info.json, the summary, statistics, quality measures and plots, packaged metrics."""
