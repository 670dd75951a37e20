"""Stand-in modules: import a library without the parts a command never uses.

Some libraries import every feature from their package ``__init__`` or from
modules everyone needs (py-libp2p: QUIC, TLS/ACME, ...; FastAPI: the OpenAPI
models). :func:`register` puts stand-ins into ``sys.modules`` before the
library is imported:

* **deferred packages**: the package object exists with its ``__path__`` so
  submodules import normally, but its ``__init__`` is only executed, in place,
  on the first access to a name it would define (and then every stand-in
  module of the same registration is first replaced by its real module);
* **deferred modules**: a module some light module imports a few names from at
  import time, only to use them on a feature path we never take. Each listed
  name is a stand-in:

  - ``"call"``: a proxy that imports the real module on first call or
    attribute access and forwards to the real object;
  - ``"new"``: calling it returns an object that is created for real (with the
    same arguments) on its first attribute access;
  - ``"type"``: an empty class, for names used in annotations and type aliases;
    ``isinstance``, ``issubclass``, calls and subclassing import the real
    module and answer with (or derive from) the real class;
  - ``"lazytype"``: the same, but calling it returns an object created for
    real on its first attribute access (a default argument built at import
    time);
  - ``"absenttype:<module>"``: the same, but ``isinstance`` and ``issubclass``
    answer False without importing anything while ``<module>`` (where the
    real class is defined) is not in ``sys.modules``: no object or class can
    derive from a class that does not exist yet (FastAPI checks every
    parameter against ``pydantic.v1.BaseModel`` only to refuse v1 models).

  Any other attribute of a deferred module imports the real module and is
  answered by it, and the real module replaces the stand-in in ``sys.modules``;
  importing a submodule of a deferred package module works as usual.

The users: :mod:`yagna.net.lean_libp2p` and :mod:`yagna.api.lean_fastapi`.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import threading
import types
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable


def is_stand_in(mod: object) -> bool:
    return bool(getattr(mod, "__yagna_stand_in__", False)) if mod is not None else False


_lock = threading.RLock()


def _real_module(name: str) -> types.ModuleType:
    """Import the real module ``name``, replacing its stand-in in ``sys.modules``."""
    with _lock:
        mod = sys.modules.get(name)
        if mod is not None and not is_stand_in(mod):
            return mod
        sys.modules.pop(name, None)
        try:
            real = importlib.import_module(name)
        except BaseException:
            if mod is not None and name not in sys.modules:
                sys.modules[name] = mod
            raise
        # Submodules imported under the stand-in (``from cryptography.x509.oid import ...``) were set
        # as its attributes, not the real package's: ``cryptography.x509.oid`` must still resolve.
        prefix = name + "."
        for sub, submod in list(sys.modules.items()):
            if sub.startswith(prefix) and "." not in sub[len(prefix):] and not hasattr(real, sub[len(prefix):]):
                setattr(real, sub[len(prefix):], submod)
        return real


class _Proxy:
    """A name of a deferred module: the real object is looked up on first use."""

    __slots__ = ("_module", "_path", "_target")

    def __init__(self, module: str, path: tuple[str, ...]) -> None:
        self._module = module
        self._path = path
        self._target: Any = None

    def _resolve(self) -> Any:
        if self._target is None:
            obj: Any = _real_module(self._module)
            for part in self._path:
                obj = getattr(obj, part)
            self._target = obj
        return self._target

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._resolve()(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            return getattr(self._resolve(), name)
        # ``RSAPublicKey.from_bytes`` in a table built at import time: stays lazy.
        return _Proxy(self._module, (*self._path, name))

    def __repr__(self) -> str:
        return f"<deferred {self._module}:{'.'.join(self._path)}>"


class _New:
    """Calling it returns a :class:`_LazyObject`; the real class is imported on first use."""

    __slots__ = ("_proxy",)

    def __init__(self, proxy: _Proxy) -> None:
        self._proxy = proxy

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return _LazyObject(lambda: self._proxy(*args, **kwargs))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._proxy, name)


class _LazyObject:
    __slots__ = ("_factory", "_obj")

    def __init__(self, factory: Callable[[], Any]) -> None:
        self._factory = factory
        self._obj: Any = None

    def __getattr__(self, name: str) -> Any:
        if self._obj is None:
            self._obj = self._factory()
        return getattr(self._obj, name)


class _TypeStandIn(type):
    """An empty class for annotations; ``isinstance``, ``issubclass`` and calls go to the real one."""

    _proxy: _Proxy
    _lazy: bool
    _witness: str | None  # the real class's module: while it is not loaded, nothing is an instance

    def __new__(mcs, name: str, bases: tuple[type, ...], ns: dict[str, Any], **kwargs: Any) -> Any:
        if any(isinstance(b, _TypeStandIn) for b in bases):  # ``class M(pydantic.v1.BaseModel)``: a real subclass
            real = tuple(b._proxy._resolve() if isinstance(b, _TypeStandIn) else b for b in bases)
            return types.new_class(name, real, kwargs, lambda body: body.update(ns))
        return super().__new__(mcs, name, bases, ns)

    def __instancecheck__(cls, obj: Any) -> bool:
        if cls._witness is not None and cls._witness not in sys.modules:
            return False
        return isinstance(obj, cls._proxy._resolve())

    def __subclasscheck__(cls, sub: Any) -> bool:
        if cls._witness is not None and cls._witness not in sys.modules:
            return False
        return issubclass(sub, cls._proxy._resolve())

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        if cls._lazy:  # a default argument built at import time
            return _LazyObject(lambda: cls._proxy(*args, **kwargs))
        return cls._proxy(*args, **kwargs)


def _load_all_real(names: tuple[str, ...]) -> None:
    """Replace these stand-in modules by the real ones (the whole library was asked for)."""
    for name in names:
        if is_stand_in(sys.modules.get(name)):
            _real_module(name)


def _stand_in_module(name: str, names: dict[str, str]) -> types.ModuleType:
    mod = types.ModuleType(name)
    mod.__yagna_stand_in__ = True  # type: ignore[attr-defined]
    mod.__doc__ = f"Stand-in for {name} (see yagna.stand_ins)."
    for attr, kind in names.items():
        proxy = _Proxy(name, (attr,))
        if kind == "call":
            setattr(mod, attr, proxy)
        elif kind == "new":
            setattr(mod, attr, _New(proxy))
        elif kind in ("type", "lazytype") or kind.startswith("absenttype:"):
            witness = kind.partition(":")[2] or None
            setattr(mod, attr, _TypeStandIn(attr, (), {"__module__": name, "_proxy": proxy, "_lazy": kind == "lazytype",
                                                       "_witness": witness}))
        else:  # pragma: no cover - a typo in the table
            raise ValueError(f"unknown stand-in kind {kind!r} for {name}.{attr}")

    package_dir = _package_dir(name)
    if package_dir is not None:  # its submodules import normally, from the real files
        mod.__path__ = [package_dir]

    def __getattr__(attr: str) -> Any:
        if attr.startswith("__"):
            raise AttributeError(attr)
        return getattr(_real_module(name), attr)

    mod.__getattr__ = __getattr__  # type: ignore[method-assign]
    return mod


def _package_dir(name: str) -> str | None:
    """The directory of package ``name``, found without importing it or its parents; None for a module."""
    top, _, rest = name.partition(".")
    spec = importlib.util.find_spec(top)
    if spec is None or not spec.submodule_search_locations:
        return None
    for base in spec.submodule_search_locations:
        path = os.path.join(base, *rest.split(".")) if rest else base
        if os.path.isfile(os.path.join(path, "__init__.py")):
            return path
    return None


def _is_submodule(package: types.ModuleType, attr: str) -> bool:
    return any(
        os.path.isfile(os.path.join(d, attr + ".py")) or os.path.isdir(os.path.join(d, attr))
        for d in package.__path__
    )


def _deferred_package(name: str, group: tuple[str, ...]) -> types.ModuleType | None:
    package_dir = _package_dir(name)  # found without importing the parents' __init__
    if package_dir is None:
        return None
    spec = importlib.util.spec_from_file_location(
        name, os.path.join(package_dir, "__init__.py"), submodule_search_locations=[package_dir]
    )
    if spec is None or spec.loader is None:
        return None
    mod = importlib.util.module_from_spec(spec)
    loaded = False

    def __getattr__(attr: str) -> Any:
        nonlocal loaded
        if not attr.startswith("__") and _is_submodule(mod, attr):  # ``from libp2p import abc``
            return importlib.import_module(f"{name}.{attr}")
        with _lock:
            if not loaded and not attr.startswith("__"):
                loaded = True
                del mod.__getattr__
                _load_all_real(group)
                assert spec is not None and spec.loader is not None
                spec.loader.exec_module(mod)  # the real __init__, in place
                return getattr(mod, attr)
        raise AttributeError(f"module {name!r} has no attribute {attr!r}")

    mod.__getattr__ = __getattr__  # type: ignore[method-assign]
    return mod


def register(packages: tuple[str, ...], modules: dict[str, dict[str, str]]) -> None:
    """Register stand-ins for these packages and modules (those not imported yet)."""
    with _lock:
        group = tuple(modules)
        for name in packages:
            if name in sys.modules:
                continue
            mod = _deferred_package(name, group)
            if mod is None:
                continue
            sys.modules[name] = mod
            parent, _, child = name.rpartition(".")
            if parent in sys.modules:
                setattr(sys.modules[parent], child, mod)
        for name, names in modules.items():
            if name not in sys.modules:
                sys.modules[name] = _stand_in_module(name, names)


_installed: set[str] = set()


def install_once(unless_imported: str, packages: tuple[str, ...], modules: dict[str, dict[str, str]]) -> None:
    """:func:`register` these stand-ins, once; not at all if ``unless_imported`` is already imported
    (too late to stand in for its parts). Keyed by ``unless_imported``."""
    with _lock:
        if unless_imported in _installed:
            return
        _installed.add(unless_imported)
        if unless_imported in sys.modules:
            return
        register(packages, modules)


def loaded(prefixes: tuple[str, ...]) -> list[str]:
    """The real (not stand-in) modules in ``sys.modules`` named by or under these prefixes."""
    return sorted(
        name
        for name, mod in list(sys.modules.items())
        if any(name == p or name.startswith(p + ".") for p in prefixes) and not is_stand_in(mod)
    )
