"""A live session: the tandem wired from an audio source to a sink, with its log and its view."""
