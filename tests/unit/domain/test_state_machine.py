"""Random command sequences against one conversation, checked against a small model.

Each rule predicts the outcome (refusal code, number of events) from the model, runs the command
through the decider as the handler does (tests/unit/domain/harness.py), and updates the model
only when the command was accepted. Invariants are checked after every step.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import event as note
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from domain import decider
from domain.catalog import CATALOG, parse_payload
from domain.conversation import ConversationState, conversation_id_of, conversation_stream_id, direct_conversation_id
from domain.envelope import CommandEnvelope
from tests.unit.domain.harness import Result, Stream, command, fold, fold_messages

USERS = ("u0", "u1", "u2", "u3", "u4")
PAIR = ("u0", "u1")  # the direct conversation's two users
GROUP_ID = "00000000-0000-4000-8000-0000000000a1"
MISSING = "missing-message"

users = st.sampled_from(USERS)
actors = st.integers(0, 19)  # mapped by ConversationMachine.actor: mostly admins and members
versions = st.sampled_from(["none", "none", "none", "current", "stale", "ahead"])
picks = st.integers(0, 12)


def sometimes(machine: ConversationMachine) -> bool:
    """Departures empty a conversation fast, and then everything is not_found: offer them on a
    third of the steps."""
    return len(machine.issued) % 3 == 0


class ConversationMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.stream: Stream | None = None
        # the model
        self.kind = "group"
        self.created = False
        self.version = 0
        self.title: str | None = None
        self.members: dict[str, str] = {}  # user -> role
        self.joined: dict[str, int] = {}
        self.next_join = 0
        self.last_seq = 0
        self.markers: dict[str, int] = {}
        self.messages: dict[str, tuple[str, bool]] = {}  # id -> (sender, deleted)
        self.reactions: set[tuple[str, str, str]] = set()  # (message, emoji, user)
        # history
        self.issued: list[tuple[CommandEnvelope, Result]] = []
        self.previous_members: set[str] = set()
        self.previous_markers: dict[str, int] = {}
        self.validated = 0

    # -- running commands --------------------------------------------------------------------------

    @property
    def s(self) -> Stream:
        assert self.stream is not None
        return self.stream

    @property
    def state(self) -> ConversationState:
        assert isinstance(self.s.state, ConversationState)
        return self.s.state

    def expected_version(self, choice: str) -> int | None:
        return {"none": None, "current": self.version, "stale": self.version - 1, "ahead": self.version + 1}[choice]

    def gate(self, actor: str, expected: int | None) -> str | None:
        """The refusal every command but create starts with."""
        if not self.created or actor not in self.members:
            return "not_found"
        if expected is not None and expected != self.version:
            return "conflict"
        return None

    def execute(
        self, type_: str, actor: str, payload: dict[str, Any], expected: int | None, code: str | None, events: int = 1
    ) -> Result:
        """Run a command, check its outcome against the prediction, count its events."""
        if type_ != "conversation:create":
            payload = {"conversation_id": conversation_id_of(self.s.stream_id), **payload}
        cmd = command(
            type_, actor, self.s.stream_id, payload, command_id=f"cmd-{len(self.issued)}", expected_version=expected
        )
        state, length = self.s.state, len(self.s.log)
        result = self.s.run(cmd)
        self.issued.append((cmd, result))
        note(f"{type_} -> {result.code or 'ok'}")
        assert result.code == code, (type_, actor, payload, result, code)
        if code is None:
            assert len(result.events) == events, (type_, result)
            assert result.data["version"] == self.version + events
            self.version += events
        else:
            assert self.s.state == state and len(self.s.log) == length
        return result

    def actor(self, n: int) -> str:
        """0..3: an admin, 4..13: a participant, else anyone (falling through when there is none)."""
        admins = sorted(user for user, role in self.members.items() if role == "admin")
        if n < 4 and admins:
            return admins[n % len(admins)]
        if n < 14 and self.members:
            return sorted(self.members)[n % len(self.members)]
        return USERS[n % len(USERS)]

    def message(self, pick: int) -> str:
        ids = list(self.messages)
        return ids[-1 - pick % len(ids)] if ids and pick < 10 else MISSING

    def join(self, user: str, role: str) -> None:
        self.members[user] = role
        self.joined[user] = self.next_join
        self.next_join += 1

    def departure_events(self, user: str) -> int:
        remaining = {other: role for other, role in self.members.items() if other != user}
        promotes = self.kind == "group" and remaining and "admin" not in remaining.values()
        return 2 if promotes else 1

    def depart(self, user: str) -> None:
        del self.members[user]
        self.markers.pop(user, None)
        if self.kind == "group" and self.members and "admin" not in self.members.values():
            heir = min(self.members, key=self.joined.__getitem__)
            self.members[heir] = "admin"

    # -- rules -------------------------------------------------------------------------------------

    @initialize(
        kind=st.sampled_from(["group", "direct"]),
        blank=st.integers(0, 5),
        others=st.lists(users, min_size=1, max_size=4),
    )
    def start(self, kind: str, blank: int, others: list[str]) -> None:
        """Mostly start from a created conversation; sometimes from nothing."""
        self.kind = kind
        cid = direct_conversation_id(*PAIR) if kind == "direct" else GROUP_ID
        self.stream = Stream(conversation_stream_id(cid))
        if blank == 5:
            return
        if kind == "group":
            self.create_group(USERS[0], others, "Team", "none")
        else:
            self.create_direct(PAIR, "none")

    @precondition(lambda self: self.kind == "group")
    @rule(
        actor=users,
        others=st.lists(users, max_size=4),
        title=st.sampled_from([None, "Team", "  "]),
        choice=versions,
    )
    def create_group(self, actor: str, others: list[str], title: str | None, choice: str) -> None:
        expected = self.expected_version(choice)
        if title is None or not title.strip():
            code: str | None = "invalid"
        elif self.created:
            code = "conflict"
        else:
            code = None if expected in (None, 0) else "conflict"
        payload = {"kind": "group", "participant_ids": others} | ({"title": title} if title is not None else {})
        result = self.execute("conversation:create", actor, payload, expected, code)
        if result.ok:
            self.created, self.title = True, title
            for user in dict.fromkeys([actor, *others]):
                self.join(user, "admin" if user == actor else "member")

    @precondition(lambda self: self.kind == "direct")
    @rule(
        pair=st.one_of(st.sampled_from([PAIR, PAIR[::-1]]), st.tuples(users, users)),
        choice=versions,
    )
    def create_direct(self, pair: tuple[str, str], choice: str) -> None:
        actor, peer = pair
        expected = self.expected_version(choice)
        events = 1
        if actor == peer or {actor, peer} != set(PAIR):
            code: str | None = "invalid"
        elif expected is not None and expected != self.version:
            code = "conflict"
        else:
            code = None
            events = 0 if actor in self.members else 1
        result = self.execute(
            "conversation:create", actor, {"kind": "direct", "participant_ids": [peer]}, expected, code, events
        )
        assert result.data.get("conversation_id", conversation_id_of(self.s.stream_id)) == conversation_id_of(
            self.s.stream_id
        )
        if result.ok and events:
            if self.created:
                self.join(actor, "member")
            else:
                self.created = True
                self.join(actor, "admin")
                self.join(peer, "member")

    @rule(who=actors, added=st.lists(users, min_size=1, max_size=3), choice=versions)
    def add_participants(self, who: int, added: list[str], choice: str) -> None:
        actor = self.actor(who)
        expected = self.expected_version(choice)
        new = [user for user in dict.fromkeys(added) if user not in self.members]
        code = self.gate(actor, expected)
        if code is None and (self.kind == "direct" or self.members[actor] != "admin"):
            code = "forbidden"
        result = self.execute(
            "conversation:add-participants", actor, {"user_ids": added}, expected, code, len(new) and 1
        )
        if result.ok:
            for user in new:
                self.join(user, "member")

    @precondition(sometimes)
    @rule(who=actors, whom=users, choice=versions)
    def remove_participant(self, who: int, whom: str, choice: str) -> None:
        actor = self.actor(who)
        expected = self.expected_version(choice)
        code = self.gate(actor, expected)
        if code is None and self.kind == "direct":
            code = "forbidden"
        elif code is None and whom != actor and self.members[actor] != "admin":
            code = "forbidden"  # a member may only remove (that is, leave) themselves
        elif code is None and whom not in self.members:
            code = "not_found"
        events = self.departure_events(whom) if code is None else 0
        result = self.execute("conversation:remove-participant", actor, {"user_id": whom}, expected, code, events)
        if result.ok:
            kinds = [event.type for event in result.events]
            assert kinds[0] == ("ParticipantLeft" if whom == actor else "ParticipantRemoved")
            self.depart(whom)

    @precondition(sometimes)
    @rule(who=actors, choice=versions)
    def leave(self, who: int, choice: str) -> None:
        actor = self.actor(who)
        expected = self.expected_version(choice)
        code = self.gate(actor, expected)
        events = self.departure_events(actor) if code is None else 0
        if self.execute("conversation:leave", actor, {}, expected, code, events).ok:
            self.depart(actor)

    @rule(who=actors, title=st.sampled_from(["Team", "Other"]), choice=versions)
    def rename(self, who: int, title: str, choice: str) -> None:
        actor = self.actor(who)
        expected = self.expected_version(choice)
        code = self.gate(actor, expected)
        if code is None and (self.kind == "direct" or self.members[actor] != "admin"):
            code = "forbidden"
        events = 0 if title == self.title else 1
        if self.execute("conversation:rename", actor, {"title": title}, expected, code, events).ok:
            self.title = title

    @rule(who=actors, body=st.sampled_from(["hi", " spaced body "]), choice=versions)
    def send(self, who: int, body: str, choice: str) -> None:
        actor = self.actor(who)
        expected = self.expected_version(choice)
        result = self.execute("message:send", actor, {"body": body}, expected, self.gate(actor, expected))
        if result.ok:
            self.last_seq += 1
            assert result.data["seq"] == self.last_seq
            self.messages[result.data["message_id"]] = (actor, False)

    @rule(who=actors, pick=picks, choice=versions)
    def edit(self, who: int, pick: int, choice: str) -> None:
        actor = self.actor(who)
        expected, message_id = self.expected_version(choice), self.message(pick)
        code = self.gate(actor, expected)
        if code is None and message_id == MISSING:
            code = "not_found"
        elif code is None and self.messages[message_id][0] != actor:
            code = "forbidden"
        elif code is None and self.messages[message_id][1]:
            code = "conflict"
        self.execute("message:edit", actor, {"message_id": message_id, "body": "edited"}, expected, code)

    @rule(who=actors, pick=picks, choice=versions)
    def delete(self, who: int, pick: int, choice: str) -> None:
        actor = self.actor(who)
        expected, message_id = self.expected_version(choice), self.message(pick)
        code = self.gate(actor, expected)
        if code is None and message_id == MISSING:
            code = "not_found"
        elif code is None and self.messages[message_id][0] != actor:
            code = "forbidden"
        events = 0 if code is None and self.messages[message_id][1] else 1
        if self.execute("message:delete", actor, {"message_id": message_id}, expected, code, events).ok:
            self.messages[message_id] = (actor, True)

    @rule(who=actors, pick=picks, emoji=st.sampled_from(["👍", "🎉"]), on=st.booleans(), choice=versions)
    def react(self, who: int, pick: int, emoji: str, on: bool, choice: str) -> None:
        actor = self.actor(who)
        expected, message_id = self.expected_version(choice), self.message(pick)
        code = self.gate(actor, expected)
        if code is None and message_id == MISSING:
            code = "not_found"
        elif code is None and self.messages[message_id][1]:
            code = "conflict"
        key = (message_id, emoji, actor)
        events = 0 if (key in self.reactions) == on else 1
        payload = {"message_id": message_id, "emoji": emoji, "on": on}
        if self.execute("message:react", actor, payload, expected, code, events).ok:
            (self.reactions.add if on else self.reactions.discard)(key)

    @rule(who=actors, seq=st.integers(0, 12), choice=versions)
    def read(self, who: int, seq: int, choice: str) -> None:
        actor = self.actor(who)
        expected = self.expected_version(choice)
        code = self.gate(actor, expected)
        target = min(seq, self.last_seq)
        events = 1 if target > self.markers.get(actor, 0) else 0
        if self.execute("message:read", actor, {"seq": seq}, expected, code, events).ok and events:
            self.markers[actor] = target

    @precondition(lambda self: bool(self.issued))
    @rule(pick=st.integers(0, 1000), altered=st.booleans())
    def repeat(self, pick: int, altered: bool) -> None:
        """A command id seen before returns the remembered result and appends nothing, even when
        the payload differs (the command log is keyed by command_id)."""
        cmd, first = self.issued[pick % len(self.issued)]
        if altered:
            cmd = cmd.model_copy(update={"payload": {**cmd.payload, "body": "different"}})
        state, length = self.s.state, len(self.s.log)
        assert self.s.run(cmd) == first
        assert self.s.state == state and len(self.s.log) == length

    # -- invariants --------------------------------------------------------------------------------

    @invariant()
    def versions_count_events(self) -> None:
        if self.stream is None:
            return
        log = self.s.log
        assert self.state.version == len(log) == self.version
        assert [event.stream_version for event in log] == list(range(1, len(log) + 1))

    @invariant()
    def participants_follow_the_model(self) -> None:
        if self.stream is None:
            return
        assert {user: member.role for user, member in self.state.members.items()} == self.members
        assert self.state.created == self.created
        if self.kind == "group" and self.members:
            assert "admin" in self.members.values()

    @invariant()
    def seq_is_gap_free_and_only_senders_change_messages(self) -> None:
        if self.stream is None:
            return
        sent = [event for event in self.s.log if event.type == "MessageSent"]
        assert [event.payload["seq"] for event in sent] == list(range(1, len(sent) + 1))
        assert self.state.last_seq == len(sent) == self.last_seq
        senders = {event.payload["message_id"]: event.payload["sender_id"] for event in sent}
        for event in self.s.log:
            if event.type in ("MessageEdited", "MessageDeleted"):
                assert event.actor_id == senders[event.payload["message_id"]] == event.payload["sender_id"]
        for message_id, (sender, deleted) in self.messages.items():
            ref = self.s.refs[message_id]
            assert (ref.sender_id, ref.deleted) == (sender, deleted)
            for emoji, reacted in ref.reactions.items():
                assert list(reacted) == sorted(user for m, e, user in self.reactions if (m, e) == (message_id, emoji))
        assert {(m, e, u) for m, ref in self.s.refs.items() for e, us in ref.reactions.items() for u in us} == (
            self.reactions
        )

    @invariant()
    def read_markers_never_decrease_nor_pass_the_last_seq(self) -> None:
        if self.stream is None:
            return
        markers = dict(self.state.read_markers)
        assert markers == self.markers
        assert set(markers) <= set(self.members)
        assert all(0 < seq <= self.state.last_seq for seq in markers.values())
        for user in self.previous_members & set(self.members):
            assert markers.get(user, 0) >= self.previous_markers.get(user, 0)
        self.previous_members, self.previous_markers = set(self.members), markers

    @invariant()
    def the_log_replays_into_the_same_state(self) -> None:
        if self.stream is None:
            return
        assert fold(self.s.stream_id, self.s.log) == self.state
        assert fold_messages(self.s.log) == self.s.refs
        stored = json.loads(json.dumps(decider.state_to_dict(self.state)))
        assert decider.state_from_dict(stored) == self.state
        for event in self.s.log[self.validated :]:
            assert event.schema_version == CATALOG[event.type].version
            parse_payload(event.type, event.payload)
        self.validated = len(self.s.log)


TestConversationMachine = ConversationMachine.TestCase
