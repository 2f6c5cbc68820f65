"""testing layer (see DESIGN.md §2)."""
