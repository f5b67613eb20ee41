"""Find, load and query plugins.

Built-in modules in :data:`DEFAULT_PLUGINS` are registered exactly as a
vendor's entry point is, then every entry point of the ``detectflow`` group.
Loading happens once, on first use, never at import time. A plugin that
fails to import, or implements a hook that does not exist, is recorded in
:attr:`PluginRegistry.failures` by name and left out; the rest keep working.
"""

from __future__ import annotations

import importlib
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import metadata
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, TypeVar, cast

import pluggy

from detectflow.core import hookspecs
from detectflow.core.errors import PluginError
from detectflow.core.normalize import DEFAULT_LABEL_MAP
from detectflow.core.settings import Settings

if TYPE_CHECKING:
    from detectflow.core.adapter import ProviderAdapter
    from detectflow.core.hookspecs import FrameSourceFactory, ResultSinkFactory
    from detectflow.core.models import Detection, DetectionEvent, Frame, ProviderConfig

__all__ = [
    "DEFAULT_PLUGINS",
    "SOURCE_PLUGINS",
    "PluginFailure",
    "PluginInfo",
    "PluginRegistry",
    "get_registry",
    "reset_registry",
]

log = logging.getLogger(__name__)

F = TypeVar("F")

DEFAULT_PLUGINS: tuple[str, ...] = (
    "detectflow.adapters.http",
    "detectflow.adapters.grpc.adapter",
    "detectflow.adapters.kserve.adapter",
    "detectflow.adapters.mqtt",
    "detectflow.publish.plugin",
)
"""Built-in provider adapters and publishers, registered when the registry loads."""

SOURCE_PLUGINS: tuple[str, ...] = (
    "detectflow.flows.source_sql",
    "detectflow.flows.source_redis",
    "detectflow.flows.source_mqtt",
    "detectflow.flows.source_file",
    "detectflow.flows.source_video",
)
"""Built-in frame sources, registered on first use of :meth:`PluginRegistry.frame_sources`:
they import the dataflow engine (Bytewax), which a server process never needs."""


@dataclass(frozen=True, slots=True)
class PluginFailure:
    name: str
    error: str


@dataclass(frozen=True, slots=True)
class PluginInfo:
    name: str
    package: str
    version: str
    hooks: tuple[str, ...]
    provider_types: tuple[str, ...] = ()


@dataclass
class PluginRegistry:
    """A pluggy manager plus what detectflow learned while loading it."""

    pm: pluggy.PluginManager
    failures: list[PluginFailure] = field(default_factory=list)
    _origins: dict[str, tuple[str, str]] = field(default_factory=dict)
    _label_map: tuple[tuple[object, ...], Mapping[str, str]] | None = None
    _blocked: tuple[str, ...] = ()
    _sources_loaded: bool = False

    # -- loading ---------------------------------------------------------

    def register(self, plugin: object, name: str, package: str, version: str) -> bool:
        """Register one plugin; on a contract error record it and return False."""
        try:
            self.pm.register(plugin, name=name)
        except (pluggy.PluginValidationError, ValueError) as exc:
            self.failures.append(PluginFailure(name, str(exc)))
            log.warning("plugin %s rejected: %s", name, exc)
            return False
        try:
            self.pm.check_pending()
        except pluggy.PluginValidationError as exc:
            self.pm.unregister(plugin)
            self.failures.append(PluginFailure(name, str(exc)))
            log.warning("plugin %s rejected: %s", name, exc)
            return False
        self._origins[name] = (package, version)
        return True

    def load_module(self, module_name: str, *, name: str, package: str, version: str) -> None:
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:
            self.failures.append(PluginFailure(name, f"import failed: {exc!r}"))
            log.warning("plugin %s failed to import: %r", name, exc)
            return
        self.register(module, name, package, version)

    def load_entry_points(self, blocked: tuple[str, ...] = ()) -> None:
        for ep in metadata.entry_points(group=hookspecs.PROJECT_NAME):
            if ep.name in blocked or self.pm.has_plugin(ep.name):
                continue
            dist = ep.dist
            package = dist.name if dist else "?"
            version = dist.version if dist else "?"
            try:
                plugin = ep.load()
            except Exception as exc:
                self.failures.append(PluginFailure(ep.name, f"import failed: {exc!r}"))
                log.warning("plugin %s failed to import: %r", ep.name, exc)
                continue
            self.register(plugin, ep.name, package, version)

    # -- querying --------------------------------------------------------

    def plugins(self) -> list[PluginInfo]:
        infos = []
        for name, plugin in self.pm.list_name_plugin():
            if name is None:
                continue
            package, version = self._origins.get(name, ("?", "?"))
            hooks = tuple(sorted(c.name for c in self.pm.get_hookcallers(plugin) or ()))
            types: tuple[str, ...] = ()
            if "detectflow_provider_types" in hooks:
                impl = getattr(plugin, "detectflow_provider_types")  # noqa: B009
                types = tuple(sorted(cls.provider_type for cls in impl()))
            infos.append(PluginInfo(name, package, version, hooks, types))
        return sorted(infos, key=lambda i: i.name)

    def provider_types(self) -> dict[str, type[ProviderAdapter]]:
        found: dict[str, type[ProviderAdapter]] = {}
        # pluggy returns results last-registered first; apply oldest first.
        for classes in reversed(self.pm.hook.detectflow_provider_types()):
            for cls in classes:
                previous = found.get(cls.provider_type)
                if previous is not None and previous is not cls:
                    log.warning(
                        "provider type %r: %s.%s replaces %s.%s",
                        cls.provider_type,
                        cls.__module__,
                        cls.__qualname__,
                        previous.__module__,
                        previous.__qualname__,
                    )
                found[cls.provider_type] = cls
        return found

    def create_adapter(self, config: ProviderConfig) -> ProviderAdapter:
        types = self.provider_types()
        cls = types.get(config.provider_type)
        if cls is None:
            known = ", ".join(sorted(types)) or "none"
            raise PluginError(
                f"no plugin provides provider type {config.provider_type!r} (known: {known})"
            )
        return cls(config)

    def label_map(self) -> Mapping[str, str]:
        """The merged table, built again only when the plugins providing one change
        (it is read for every frame)."""
        impls = tuple(impl.function for impl in self.pm.hook.detectflow_label_map.get_hookimpls())
        if self._label_map is not None and self._label_map[0] == impls:
            return self._label_map[1]
        merged = dict(DEFAULT_LABEL_MAP)
        for extra in reversed(self.pm.hook.detectflow_label_map()):
            merged.update({k.lower(): v for k, v in extra.items()})
        self._label_map = (impls, MappingProxyType(merged))
        return self._label_map[1]

    def transform(self, frame: Frame, detections: list[Detection]) -> list[Detection]:
        """Run the transform chain, oldest plugin first."""
        for impl in self.pm.hook.detectflow_transform_detections.get_hookimpls():
            args = _accepted(impl, frame=frame, detections=detections)
            try:
                result = cast("list[Detection] | None", impl.function(**args))
            except Exception as exc:
                raise PluginError(f"plugin {impl.plugin_name} transform failed: {exc!r}") from exc
            if result is not None:
                detections = list(result)
        return detections

    def notify_detection(self, detection: Detection) -> None:
        self._notify(self.pm.hook.detectflow_on_detection, detection=detection)

    def notify_event(self, event: DetectionEvent) -> None:
        self._notify(self.pm.hook.detectflow_on_event, event=event)

    def _notify(self, caller: Any, **kwargs: Any) -> None:
        for impl in caller.get_hookimpls():
            try:
                impl.function(**_accepted(impl, **kwargs))
            except Exception:
                log.exception("plugin %s failed in %s", impl.plugin_name, caller.name)

    def has_notifiers(self) -> bool:
        return bool(
            self.pm.hook.detectflow_on_detection.get_hookimpls()
            or self.pm.hook.detectflow_on_event.get_hookimpls()
        )

    def load_sources(self) -> None:
        """Register the built-in frame sources (once); a flow or ``detectflow plugins`` calls it."""
        with _sources_lock:  # flows of several threads start at once
            if self._sources_loaded:
                return
            version = metadata.version("detectflow")
            for name in SOURCE_PLUGINS:
                if name not in self._blocked and not self.pm.has_plugin(name):
                    self.load_module(name, name=name, package="detectflow", version=version)
            self._sources_loaded = True

    def frame_sources(self) -> dict[str, FrameSourceFactory]:
        """Every source factory by URL scheme; a plugin's wins over a built-in's."""
        self.load_sources()
        impls = self.pm.hook.detectflow_frame_sources.get_hookimpls()
        builtin = [i for i in impls if i.plugin_name in SOURCE_PLUGINS]
        others = [i for i in impls if i.plugin_name not in SOURCE_PLUGINS]
        merged: dict[str, FrameSourceFactory] = {}
        for impl in [*builtin, *others]:  # registration order: later ones win
            found = cast("Mapping[str, FrameSourceFactory]", impl.function() or {})
            merged.update(found)
        return merged

    def sinks(self) -> dict[str, ResultSinkFactory]:
        return _merge(self.pm.hook.detectflow_sinks())


def _accepted(impl: pluggy.HookImpl, **kwargs: Any) -> dict[str, Any]:
    """Only the arguments a hookimpl declares: pluggy lets impls take fewer than the spec."""
    return {name: kwargs[name] for name in impl.argnames}


def _merge(results: list[Mapping[str, F]]) -> dict[str, F]:
    merged: dict[str, F] = {}
    for result in reversed(results):
        merged.update(result)
    return merged


def _new_registry(settings: Settings) -> PluginRegistry:
    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    registry = PluginRegistry(pm, _blocked=settings.blocked_plugins)
    version = metadata.version("detectflow")
    for module_name in DEFAULT_PLUGINS:
        if module_name in settings.blocked_plugins:
            continue
        registry.load_module(module_name, name=module_name, package="detectflow", version=version)
    if not settings.disable_plugin_autoload:
        registry.load_entry_points(settings.blocked_plugins)
    return registry


_lock = threading.Lock()
_sources_lock = threading.Lock()
_registry: PluginRegistry | None = None


def get_registry(settings: Settings | None = None) -> PluginRegistry:
    """The process-wide registry, loaded on first call and only then."""
    global _registry
    with _lock:
        if _registry is None:
            _registry = _new_registry(settings or Settings.from_env())
        return _registry


def reset_registry() -> None:
    """Forget the loaded registry (tests; after installing a plugin)."""
    global _registry
    with _lock:
        _registry = None
