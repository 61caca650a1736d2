"""Griffe extensions for the API reference.

:class:`SphinxRoles`: Sphinx cross-reference roles in docstrings become mkdocstrings links.

The package's numpydoc docstrings refer to other objects the Sphinx way
(``:func:`convert```, ``:class:`~spikeconverter.plugin.ILIF```). mkdocstrings links with
Markdown references instead (``[`convert`][convert]``), resolved in the docstring's scope
(``scoped_crossrefs``) or relative to it (``relative_crossrefs`` for a leading dot). Rewriting
the roles keeps the docstrings readable in a terminal and makes every reference a link that
``mkdocs build --strict`` checks: a reference to a name that does not exist fails the build.

:class:`NamedTupleSignatures`: a NamedTuple (``ILIFParameters``, ``ILIFState``) gets the
constructor Python gives it, its fields in order with their defaults, so that its numpydoc
"Parameters" show the real signature and defaults (griffe reads the fields only as attributes).
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


NAMED_TUPLE_BASES = {"NamedTuple", "StateTuple"}  # StateTuple: Norse's NamedTuple base


class NamedTupleSignatures(griffe.Extension):
    """Give NamedTuple classes an ``__init__`` made of their annotated fields."""

    def on_class_members(self, *, cls: griffe.Class, **kwargs: Any) -> None:
        bases = {str(b).rsplit(".", 1)[-1] for b in cls.bases}
        if "__init__" in cls.members or not bases & NAMED_TUPLE_BASES:
            return
        kind = griffe.ParameterKind.positional_or_keyword
        fields = [m for m in cls.members.values()
                  if m.is_attribute and m.annotation is not None and not m.name.startswith("_")]
        params = griffe.Parameters(griffe.Parameter("self", kind=kind), *(
            griffe.Parameter(f.name, annotation=f.annotation, kind=kind, default=f.value)
            for f in fields))
        cls.set_member("__init__", griffe.Function(
            "__init__", parameters=params, lineno=cls.lineno, endlineno=cls.lineno))
