"""Pure-Python twins of the compiled modules: same names, same behaviour, readable spec."""
