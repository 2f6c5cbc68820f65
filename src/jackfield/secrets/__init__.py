"""secrets layer (see DESIGN.md §2)."""
