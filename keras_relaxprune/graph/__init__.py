"""The model as a graph of channels: flat graph, channel maps, tracing of
channel groups, protection."""
