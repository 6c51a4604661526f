"""`kame plot`: a session's timeline on one clock, drawn with matplotlib (imported only here)."""
