"""Models: specs, versions by syntax tree, the built-in factories' registry, datasets."""
