"""connectors layer (see DESIGN.md §2)."""
