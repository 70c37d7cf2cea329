"""Network → core: what adapters hand over is checked and cleaned here before it is matched."""
