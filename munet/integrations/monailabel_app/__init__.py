"""MONAI Label app serving this bundle (automatic and interactive segmentation, training).

Needs the optional ``monailabel`` extra (``bash scripts/setup_env.sh --with-monailabel``);
start it with ``bash scripts/start_monailabel.sh <studies>`` (web app: :mod:`.server`, MONAI
Label's own with the label, infer and train requests checked). Nothing here is imported by the
bundle's own workflows; :mod:`.results`, :mod:`.classes` and :mod:`.checks` import no monailabel
code so they can be tested without it.
"""
