"""One runner per inference backend (Polygraphy-style lifecycle)."""
