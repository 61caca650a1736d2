"""Griffe extension: Sphinx cross-reference roles in docstrings become mkdocstrings links.

The package's numpydoc docstrings refer to other objects the Sphinx way
(``:func:`convert```, ``:class:`~spikeconverter.plugin.ILIF```). mkdocstrings links with
Markdown references instead (``[`convert`][convert]``), resolved in the docstring's scope
(``scoped_crossrefs``) or relative to it (``relative_crossrefs`` for a leading dot). Rewriting
the roles keeps the docstrings readable in a terminal and makes every reference a link that
``mkdocs build --strict`` checks: a reference to a name that does not exist fails the build.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:py:)?(?:func|class|meth|attr|data|mod|obj|exc|const):`(~?)([^`<]+)`")
# other projects' objects: no inventory of their docs is fetched (the site builds offline), so
# references to them stay code without a link
EXTERNAL = {"torch", "lava", "norse", "numpy", "np", "scipy", "matplotlib", "tqdm", "sklearn",
            "nir", "nirtorch", "PIL", "torchvision"}


def rewrite(text: str) -> str:
    """``text`` with every Sphinx role replaced by a Markdown cross-reference.

    >>> rewrite("see :func:`~spikeconverter.coding.encode` and :class:`Graph`")
    'see [`encode`][spikeconverter.coding.encode] and [`Graph`][Graph]'
    >>> rewrite(":class:`torch.nn.Module`")
    '`torch.nn.Module`'
    """

    def link(m: re.Match) -> str:
        short, target = m.group(1), m.group(2).strip()
        title = target.lstrip(".").rsplit(".", 1)[-1] if short else target.lstrip(".")
        if target.split(".", 1)[0] in EXTERNAL:
            return f"`{title}`"
        return f"[`{title}`][{target}]"

    return ROLE.sub(link, text)


class SphinxRoles(griffe.Extension):
    """Rewrite the roles of every docstring as it is loaded."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = rewrite(obj.docstring.value)
