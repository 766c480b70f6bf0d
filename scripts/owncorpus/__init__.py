"""The project's own labelled detection corpus (issue 14, item 3), generated from each attack
class's grammar, rendered in GoTestWAF's placements and encodings, with benign look-alikes.

    from owncorpus.render import records     # an iterator of corpus records (dicts)

scripts/gen_corpus.py writes them to a gzip'd JSON-lines file; scripts/bench_detect.py --own
judges them. docs/detection.md, "Own corpus", describes the classes, placements and encodings.
"""
