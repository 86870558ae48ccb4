"""An example velesio backend: a character-level Markov chain trained on a bundled tale."""
