"""One generic name -> factory registry, used for students, losses and augmentation rules."""

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from distillery.errors import DistilleryError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps short, stable names (the ones written in params.yaml) to objects.

    >>> LOSSES = Registry("loss")
    >>> @LOSSES.register("mse")
    ... def mse(a, b): ...
    """

    def __init__(self, kind: str, name_attr: str | None = None) -> None:
        self.kind, self.name_attr = kind, name_attr  # name_attr: an attribute that registering sets to the name
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = obj
            if self.name_attr:
                setattr(obj, self.name_attr, name)
            return obj

        return deco

    def get(self, name: str, param: str | None = None) -> T:
        if name not in self._items:
            where = f" (param {param})" if param else ""
            raise DistilleryError(
                f"unknown {self.kind} {name!r}{where}; choose one of: {', '.join(sorted(self._items))}"
            )
        return self._items[name]

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: str) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._items))
