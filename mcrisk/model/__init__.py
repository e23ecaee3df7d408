"""The economics as pure JAX functions: market paths, one system's monthly cash flows, the per-scenario metrics and the IRR. Arrays in, named tuples of arrays out; imports only jax and numpy."""
