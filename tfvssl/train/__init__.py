"""The generic pretraining trainer: strategy, optimiser and schedules, checkpoints, logs."""
