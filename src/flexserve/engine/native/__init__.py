"""Small C helpers for the engine, compiled once with the system C compiler and cached."""
