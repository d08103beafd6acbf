"""verigrad: proves gradients right or shows exactly where they are wrong."""
