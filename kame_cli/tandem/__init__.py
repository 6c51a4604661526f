"""The tandem measured from session logs: per user turn, when the informed oracle reached the voice
against a cascade (used by `kame bench tandem`, `kame replay` and `kame plot`)."""
