"""``python -m tvcli.bench``: the 1-D solver benchmark (:func:`tvcli.bench.tv1d.main`)."""

from tvcli.bench.tv1d import main

main()
