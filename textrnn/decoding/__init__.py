"""In-graph decoding: sampling filters for language models; greedy and beam search."""
