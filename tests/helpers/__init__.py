"""What several test modules share that is not a test: the local cluster fixtures."""
