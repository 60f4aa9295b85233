"""Stand-alone scripts (see README.md here): run them, or import them from tests;
nothing here runs at import."""
