"""service layer (see DESIGN.md §2)."""
