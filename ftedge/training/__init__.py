"""The fine-tuning loop, cached features, DDP, metrics and plots."""
