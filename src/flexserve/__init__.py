"""FlexServe: fast and secure on-device LLM serving on an emulated TrustZone SoC."""

__version__ = "0.1.0"
