"""The layers that augmentation inserts: `ChannelGate` and `PruningBudget`."""
