"""The keys read model: one document per user with a key directory, behind `keys:devices`.

It shows each device's public identity keys, when they were published, its signed prekey and how
many one-time prekeys it has left. It never hands a one-time prekey out: `keys:bundle` is decided by
the `keys:<user_id>` aggregate, so a view rebuilt from the log cannot bring a claimed key back.
"""

from __future__ import annotations

from typing import Any

from domain import catalog as ev
from domain.envelope import EventEnvelope
from domain.keys import keys_user_in
from projections.base import Doc, IndexSpec


class KeysProjection:
    name: str = "keys"
    indexes: tuple[IndexSpec, ...] = ()
    # None: a user's document holds all their devices, and a device is published again.
    creating_events: frozenset[str] = frozenset()

    def doc_ids(self, event: EventEnvelope) -> list[str]:
        user_id = keys_user_in(event.stream_id)
        return [user_id] if user_id is not None and event.type in ev.KEYS_EVENTS else []

    def apply(self, doc: Doc | None, doc_id: str, event: EventEnvelope) -> Doc | None:
        payload = ev.parse_payload(event.type, event.payload)
        devices: dict[str, Doc] = {k: dict(v) for k, v in (doc or {}).get("devices", {}).items()}
        match payload:
            case ev.DeviceKeysPublished() as p:
                before = devices.get(p.device_id)
                kept = 0 if before is None or p.identity_changed else int(before["one_time_prekeys_available"])
                highest = max(
                    [-1 if before is None else int(before["highest_key_id"])] + [k.key_id for k in p.one_time_prekeys]
                )
                devices[p.device_id] = {
                    "device_id": p.device_id,
                    "identity_key": p.identity_key,
                    "identity_dh_key": p.identity_dh_key,
                    "signed_prekey": p.signed_prekey.model_dump(),
                    "published_at": p.published_at,
                    "one_time_prekeys_available": kept + len(p.one_time_prekeys),
                    "highest_key_id": highest,
                }
            case ev.OneTimePrekeysAdded() as p:
                if p.device_id not in devices:
                    return doc
                device = devices[p.device_id]
                device["one_time_prekeys_available"] = int(device["one_time_prekeys_available"]) + len(
                    p.one_time_prekeys
                )
                device["highest_key_id"] = max([int(device["highest_key_id"])] + [k.key_id for k in p.one_time_prekeys])
            case ev.PrekeysClaimed() as p:
                for claim in p.claims:
                    if claim.device_id in devices:
                        device = devices[claim.device_id]
                        device["one_time_prekeys_available"] = max(0, int(device["one_time_prekeys_available"]) - 1)
            case _:
                return doc
        return {"user_id": doc_id, "devices": devices, "version": event.stream_version}

    def holding(self, user_id: str) -> dict[str, Any] | None:
        return None  # public keys only (docs/THREAT-MODEL.md); an erased user's bundles are refused

    def redact(self, doc: Doc, user_id: str) -> Doc:
        return doc
