"""Source adapters: one module per kind of source, behind one protocol (see base)."""
