"""lhymirror: complete, verified, offline mirrors of Hung-yi Lee's NTU Machine Learning course."""

__version__ = "0.1.0"
