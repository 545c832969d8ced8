"""Device profiles: the calibrated rates and latencies of one board, each with its source.

A profile is a TOML file (schema in ``timing/profiles/README.md``). Every parameter is an
inline table ``{ value, unit, source, derivation?, estimate?, confidence? }``. Loading checks
the whole file and refuses it with a :class:`~flexserve.errors.ConfigError` that names the
offending parameter: a missing or unknown section or key, a value that is not a positive
finite number (or not an integer where a count is expected), a unit that is not the one the
field is defined in, an empty source, or an estimate without its reasoning.

The loaded :class:`DeviceProfile` exposes plain numbers (``profile.flash.read_latency_s``)
for the cost functions, and keeps the provenance of every number (:meth:`DeviceProfile.param`,
:meth:`DeviceProfile.sources`, :meth:`DeviceProfile.to_dict`) for reports and config dumps.
"""

from __future__ import annotations

import difflib
import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from types import MappingProxyType
from typing import Any

from flexserve.errors import ConfigError

PROFILES_DIR = Path(__file__).resolve().parent / "profiles"
"""Where the bundled profiles live (``<name>.toml``)."""

DEFAULT_PROFILE = "rk3588"

# Units a parameter may be written in. Each field accepts exactly one of them.
UNITS: Mapping[str, str] = MappingProxyType({
    "s": "seconds",
    "B": "bytes",
    "B/s": "bytes per second",
    "ops/s": "arithmetic operations per second (1 MAC = 2 ops)",
    "Hz": "cycles per second",
    "count": "a whole number of things",
    "fraction": "dimensionless, in (0, 1]",
    "ratio": "dimensionless, > 0",
})

CONFIDENCE_LEVELS = ("high", "medium", "low")
_PARAM_KEYS = {"value", "unit", "source", "derivation", "estimate", "confidence"}
_META_SECTION = "profile"
_META_KEYS = {"name", "board", "description"}


def _p(unit: str, kind: type = float) -> Any:
    """A profile field: its unit and its Python type (``int`` for counts and byte sizes)."""
    if unit not in UNITS:
        raise ValueError(f"unknown unit {unit!r}")  # programming error, not user input
    return field(metadata={"unit": unit, "kind": kind})


@dataclass(frozen=True)
class FlashProfile:
    """Storage holding the (encrypted) model files: the TZ-LLM testbed's NVMe SSD."""

    read_bandwidth_bytes_per_s: float = _p("B/s")
    read_latency_s: float = _p("s")
    write_bandwidth_bytes_per_s: float = _p("B/s")


@dataclass(frozen=True)
class DramProfile:
    """Main memory (LPDDR4X)."""

    capacity_bytes: int = _p("B", int)
    peak_bandwidth_bytes_per_s: float = _p("B/s")
    bandwidth_bytes_per_s: float = _p("B/s")
    memcpy_bandwidth_bytes_per_s: float = _p("B/s")


@dataclass(frozen=True)
class CpuProfile:
    """CPU clusters. Per-core rates are for one big (Cortex-A76) core."""

    big_cores: int = _p("count", int)
    little_cores: int = _p("count", int)
    big_core_freq_hz: float = _p("Hz")
    big_core_gemm_int8_ops_per_s: float = _p("ops/s")
    decode_bytes_per_s: float = _p("B/s")
    aes_gcm_decrypt_bytes_per_s_per_core: float = _p("B/s")
    sha256_bytes_per_s_per_core: float = _p("B/s")
    zero_page_bytes_per_s: float = _p("B/s")


@dataclass(frozen=True)
class NpuProfile:
    """The 3-core RKNPU2 and the cost of moving it between worlds."""

    cores: int = _p("count", int)
    peak_int8_ops_per_s: float = _p("ops/s")
    prefill_efficiency: float = _p("fraction")
    decode_bytes_per_s: float = _p("B/s")
    job_launch_s: float = _p("s")
    mode_switch_s: float = _p("s")
    control_plane_reinit_s: float = _p("s")


@dataclass(frozen=True)
class MemoryProfile:
    """Page-level memory management: buddy, CMA (strawman), Flex-Mem, TZASC."""

    page_size_bytes: int = _p("B", int)
    buddy_alloc_per_page_s: float = _p("s")
    buddy_free_per_page_s: float = _p("s")
    cma_alloc_free_per_page_s: float = _p("s")
    cma_migrate_per_page_s: float = _p("s")
    cma_parallel_speedup: float = _p("ratio")
    flexmem_protect_per_page_s: float = _p("s")
    flexmem_unprotect_per_page_s: float = _p("s")
    s2pt_update_per_entry_s: float = _p("s")
    tlb_invalidate_s: float = _p("s")
    page_zero_per_page_s: float = _p("s")
    tzasc_region_config_s: float = _p("s")
    tzasc_regions: int = _p("count", int)


@dataclass(frozen=True)
class TeeProfile:
    """World switches and the secure-world framework's fixed start-up costs."""

    smc_round_trip_s: float = _p("s")
    world_switch_s: float = _p("s")
    framework_boot_s: float = _p("s")
    metadata_parse_s: float = _p("s")
    framework_init_s: float = _p("s")
    tokenizer_init_s: float = _p("s")
    ta_session_open_s: float = _p("s")


@dataclass(frozen=True)
class Stage2Profile:
    """Cost to normal-world apps of running under the stage-2 page table."""

    normal_app_overhead_fraction: float = _p("fraction")
    normal_app_overhead_max_fraction: float = _p("fraction")


SECTIONS: Mapping[str, type] = MappingProxyType({
    "flash": FlashProfile,
    "dram": DramProfile,
    "cpu": CpuProfile,
    "npu": NpuProfile,
    "memory": MemoryProfile,
    "tee": TeeProfile,
    "stage2": Stage2Profile,
})


@dataclass(frozen=True)
class ParamInfo:
    """One parameter with its provenance."""

    key: str  # "section.field"
    value: float | int
    unit: str
    source: str
    derivation: str = ""
    estimate: bool = False
    confidence: str = "medium"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"value": self.value, "unit": self.unit, "source": self.source}
        if self.derivation:
            out["derivation"] = self.derivation
        out["estimate"] = self.estimate
        out["confidence"] = self.confidence
        return out


@dataclass(frozen=True)
class DeviceProfile:
    """A validated device profile. Sections hold plain numbers; provenance is kept aside."""

    name: str
    board: str
    description: str
    origin: str
    flash: FlashProfile
    dram: DramProfile
    cpu: CpuProfile
    npu: NpuProfile
    memory: MemoryProfile
    tee: TeeProfile
    stage2: Stage2Profile
    _params: Mapping[str, ParamInfo] = field(repr=False, compare=False)

    def param(self, key: str) -> ParamInfo:
        """Provenance of ``"section.field"``."""
        try:
            return self._params[key]
        except KeyError:
            raise ConfigError(f"profile {self.name!r} has no parameter {key!r}") from None

    def params(self) -> list[ParamInfo]:
        """Every parameter, in file order (sections, then fields, as defined)."""
        return list(self._params.values())

    def estimates(self) -> list[ParamInfo]:
        """The parameters that are engineering estimates rather than sourced figures."""
        return [p for p in self._params.values() if p.estimate]

    def sources(self) -> list[str]:
        """Every distinct citation, in order of first use."""
        return list(dict.fromkeys(p.source for p in self._params.values()))

    def to_dict(self) -> dict[str, Any]:
        """The effective configuration, in the TOML layout (re-loadable with
        :func:`profile_from_dict`)."""
        out: dict[str, Any] = {
            _META_SECTION: {"name": self.name, "board": self.board,
                            "description": self.description},
        }
        for section in SECTIONS:
            out[section] = {}
        for info in self._params.values():
            section, key = info.key.split(".", 1)
            out[section][key] = info.to_dict()
        return out


def available_profiles() -> list[str]:
    """Names of the bundled profiles."""
    return sorted(p.stem for p in PROFILES_DIR.glob("*.toml"))


def load_profile(name_or_path: str | Path = DEFAULT_PROFILE) -> DeviceProfile:
    """Load a bundled profile by name (``"rk3588"``) or a profile TOML file by path."""
    path = _resolve(name_or_path)
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"cannot read device profile {str(path)!r}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"device profile {str(path)!r} is not valid TOML: {exc}") from None
    return profile_from_dict(data, origin=str(path))


def _resolve(name_or_path: str | Path) -> Path:
    if isinstance(name_or_path, Path):
        return name_or_path
    text = str(name_or_path)
    if text.endswith(".toml") or "/" in text or "\\" in text:
        return Path(text)
    candidate = PROFILES_DIR / f"{text}.toml"
    if not candidate.is_file():
        names = ", ".join(available_profiles()) or "none"
        raise ConfigError(f"unknown device profile {text!r} (bundled: {names}); "
                          "pass a name or a path to a .toml file")
    return candidate


def profile_from_dict(data: Mapping[str, Any], origin: str = "<dict>") -> DeviceProfile:
    """Validate a parsed profile and build the :class:`DeviceProfile`."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{origin}: a device profile must be a table")
    _check_names(set(data), {_META_SECTION, *SECTIONS}, origin, "section")
    meta = _read_meta(data.get(_META_SECTION), origin)
    params: dict[str, ParamInfo] = {}
    sections: dict[str, Any] = {}
    for section, cls in SECTIONS.items():
        table = data.get(section)
        if table is None:
            raise ConfigError(f"{origin}: missing section [{section}]")
        if not isinstance(table, Mapping):
            raise ConfigError(f"{origin}: [{section}] must be a table")
        expected = {f.name for f in fields(cls)}
        _check_names(set(table), expected, origin, f"key in [{section}]")
        values: dict[str, Any] = {}
        for f in fields(cls):
            info = _read_param(f"{section}.{f.name}", table[f.name], f.metadata, origin)
            params[info.key] = info
            values[f.name] = info.value
        sections[section] = cls(**values)
    return DeviceProfile(origin=origin, _params=MappingProxyType(params), **meta, **sections)


def _check_names(found: set[str], expected: set[str], origin: str, what: str) -> None:
    for name in sorted(found - expected):
        hint = difflib.get_close_matches(name, sorted(expected), n=1)
        suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
        raise ConfigError(f"{origin}: unknown {what} {name!r}{suggestion}")
    if what != "section":
        for name in sorted(expected - found):
            section = what.removeprefix("key in ")
            raise ConfigError(f"{origin}: missing parameter {name!r} in {section}")


def _read_meta(meta: Any, origin: str) -> dict[str, str]:
    if not isinstance(meta, Mapping):
        raise ConfigError(f"{origin}: missing section [{_META_SECTION}] (name, board, description)")
    _check_names(set(meta), _META_KEYS, origin, f"key in [{_META_SECTION}]")
    out: dict[str, str] = {}
    for key in sorted(_META_KEYS):
        value = meta[key]
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"{origin}: [{_META_SECTION}] {key} must be a non-empty string")
        out[key] = value.strip()
    return out


def _read_param(key: str, raw: Any, meta: Mapping[str, Any], origin: str) -> ParamInfo:
    where = f"{origin}: parameter {key}"
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where} must be an inline table "
                          "{ value = ..., unit = ..., source = ... }, got a bare value")
    unknown = set(raw) - _PARAM_KEYS
    if unknown:
        raise ConfigError(f"{where} has unknown field(s) {sorted(unknown)}; "
                          f"allowed: {sorted(_PARAM_KEYS)}")
    for required in ("value", "unit", "source"):
        if required not in raw:
            raise ConfigError(f"{where} is missing {required!r}")
    value = _read_value(raw["value"], meta, where)
    unit = raw["unit"]
    if unit != meta["unit"]:
        raise ConfigError(f"{where} must be given in unit {meta['unit']!r} "
                          f"({UNITS[meta['unit']]}), got {unit!r}")
    source = raw["source"]
    if not isinstance(source, str) or not source.strip():
        raise ConfigError(f"{where} needs a non-empty source (citation)")
    derivation = raw.get("derivation", "")
    if not isinstance(derivation, str):
        raise ConfigError(f"{where}: derivation must be a string")
    estimate = raw.get("estimate", False)
    if not isinstance(estimate, bool):
        raise ConfigError(f"{where}: estimate must be true or false")
    if estimate and not derivation.strip():
        raise ConfigError(f"{where} is an estimate and must say why in 'derivation'")
    confidence = raw.get("confidence", "low" if estimate else "medium")
    if confidence not in CONFIDENCE_LEVELS:
        raise ConfigError(f"{where}: confidence must be one of {list(CONFIDENCE_LEVELS)}")
    return ParamInfo(key=key, value=value, unit=unit, source=source.strip(),
                     derivation=derivation.strip(), estimate=estimate, confidence=confidence)


def _read_value(value: Any, meta: Mapping[str, Any], where: str) -> float | int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{where}: value must be a number, got {type(value).__name__}")
    if not math.isfinite(value):
        raise ConfigError(f"{where}: value must be finite, got {value}")
    if value <= 0:
        raise ConfigError(f"{where}: value must be positive, got {value}")
    if meta["unit"] == "fraction" and value > 1:
        raise ConfigError(f"{where}: a fraction must be at most 1, got {value}")
    if meta["kind"] is int:
        if float(value) != int(value):
            raise ConfigError(f"{where}: value must be a whole number, got {value}")
        return int(value)
    return float(value)
