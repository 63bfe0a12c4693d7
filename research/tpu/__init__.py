"""TPU tools: slice topologies and the TPU compiler (slices), and the ahead-of-time compile of a
config's real train step for a named topology (preflight)."""
