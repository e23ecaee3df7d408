"""Studies shipped with mcrisk: the default study and copies of the shared examples."""
