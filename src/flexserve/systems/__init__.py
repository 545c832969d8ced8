"""The paper's four systems as configurations of one code base (docs/systems.md)."""
