"""One module of Falcon resources per dialect."""
