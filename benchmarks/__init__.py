"""fastcnn's asv benchmarks (see README.md here); ``compare_torch.py`` is a script."""
