"""Knowledge bases: load, split, embed, store, search."""
