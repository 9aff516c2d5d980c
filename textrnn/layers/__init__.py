"""Layers shared by every task: the recurrent stack, its fast CPU loops, attention, pooling."""
