"""fastcnn's asv benchmarks (see README.md here); stand-alone scripts live in tools/."""
