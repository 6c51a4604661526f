"""kame: a local voice assistant on Sakana AI's KAME tandem architecture."""

__version__ = "0.1.0"
