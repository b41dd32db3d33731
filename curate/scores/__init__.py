"""Per-example scores: one module per method (el2n, grand, rho, gio)."""
