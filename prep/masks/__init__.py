"""Foreground masks for the store's masks table (`animbench prep ... --masks synthetic|DIR|graphonomy`):
where each stored frame's mask comes from (sources.py) and the segmentation backend (graphonomy.py,
graphonomy_net.py)."""
