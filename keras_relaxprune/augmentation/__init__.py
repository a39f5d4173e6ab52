"""Network augmentation: `add_gates` inserts a gate per channel group and the budget layer."""
