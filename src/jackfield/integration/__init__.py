"""integration layer (see DESIGN.md §2)."""
