"""Everything that exists for CPU speed: C++ kernels called from XLA:CPU and formulations of the
conv layer with nn.Conv's parameters and math. The core reaches it through one seam,
`research.models.conv_block`."""
