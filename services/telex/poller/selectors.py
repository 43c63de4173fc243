"""Per-source selectors: CSS (through cssselect) or XPath, compiled once."""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Any

from lxml import etree

Selector = Callable[[Any], list[Any]]


@lru_cache(maxsize=1024)
def compile_selector(text: str) -> Selector:
    """A function returning the elements ``text`` selects under a node.

    XPath when ``text`` starts with ``/``, ``./`` or ``(``; CSS otherwise. Raises
    :class:`ValueError` saying what is wrong with an invalid selector.
    """
    expression = text.strip()
    if not expression:
        raise ValueError("empty selector")
    if expression.startswith(("/", "./", "(")):
        try:
            xpath = etree.XPath(expression)
        except etree.XPathSyntaxError as exc:
            raise ValueError(f"invalid XPath {expression!r}: {exc}") from None
    else:
        from cssselect import GenericTranslator, SelectorError

        try:
            xpath = etree.XPath(GenericTranslator().css_to_xpath(expression, prefix="descendant::"))
        except SelectorError as exc:
            raise ValueError(f"invalid CSS selector {expression!r}: {exc}") from None

    def select(node: Any) -> list[Any]:
        found = xpath(node)
        return (
            [n for n in found if isinstance(n, etree._Element)] if isinstance(found, list) else []
        )

    return select
