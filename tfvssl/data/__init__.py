"""Reading, sampling, augmenting and generating video data."""
