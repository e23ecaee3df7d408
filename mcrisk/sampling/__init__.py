"""Uniforms by scenario index (random, scrambled Sobol, Latin hypercube), the Gaussian copula, the monthly shocks and the inverse CDFs that map uniforms to inputs."""
