"""protocol layer (see DESIGN.md §2)."""
