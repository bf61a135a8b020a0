"""Reports: pure functions of the results DataFrame (ResultsStore.to_frame())."""
