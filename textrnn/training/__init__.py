"""Training shared by every task.

fit.py        train(task, config, run_dir): data, build under the strategy, fit, keep the best
run_dir.py    the run directory's files: config, state, weights (the contract of a run)
weights.py    loading weights files, older layouts included
backup.py     step-level backups and resume after a crash
strategy.py   tf.distribute strategy, seeds, precision
optimizer.py  optimizer, learning-rate schedule, XLA flag
callbacks.py  NaN guard, atomic checkpoints, one line per epoch
"""
