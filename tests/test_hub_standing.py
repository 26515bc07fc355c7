"""A node's standing with its hub, as its status, ``swarmget status``, ``swarmget doctor``
and the portal's peers page tell it: "registering" while the first attempt is under way is
neither "no hub" nor a failure (before, the status had no hub at all then, and doctor said
the node ran without one)."""

from __future__ import annotations

from swarmget.cli.operator import hub_words
from swarmget.core.lifecycle import HubStanding, parse_standing
from swarmget.doctor import node_hub_check
from swarmget.net.hub_client import Registered
from swarmget.net.membership import MembershipState
from swarmget.node.hub_standing import membership_json as _membership_json
from swarmget.node.hub_standing import standing_of
from swarmget.web.views import self_row

HUB = "http://10.0.0.1:7400"


def _registered() -> Registered:
    return Registered(
        node_id="n" * 8, address="10.0.0.2", group="10.0.0.0/24", url="http://10.0.0.2:7401",
        ttl=40.0, heartbeat_interval=5.0,
    )  # fmt: skip


def test_a_starting_node_is_registering_then_what_its_attempts_say() -> None:
    starting = MembershipState.starting(HUB)
    assert starting.standing is HubStanding.REGISTERING
    assert (starting.registered, starting.hub_url, starting.error) == (None, HUB, None)
    failed = MembershipState(registered=None, failures=1, error="hub down", hub_url=HUB)
    assert failed.standing is HubStanding.NOT_REGISTERED
    ok = MembershipState(registered=_registered(), hub_url=HUB)
    assert ok.standing is HubStanding.REGISTERED
    # a heartbeat that failed since keeps the registration (and says why)
    late = MembershipState(registered=_registered(), failures=2, error="timed out", hub_url=HUB)
    assert late.standing is HubStanding.REGISTERED


def test_the_status_json_carries_the_standing_as_its_value() -> None:
    shown = _membership_json(MembershipState.starting(HUB))
    assert shown == {
        "state": "registering", "registered": False, "failures": 0, "error": None,
        "hub_url": HUB,
    }  # fmt: skip
    assert parse_standing(shown["state"]) is HubStanding.REGISTERING
    assert _membership_json(MembershipState(registered=_registered()))["state"] == "registered"


def test_parse_standing_refuses_what_it_does_not_know() -> None:
    assert parse_standing("not_registered") is HubStanding.NOT_REGISTERED
    for odd in (None, "", "Registered", 1, "gone"):
        assert parse_standing(odd) is None


def test_status_words_for_each_standing() -> None:
    assert hub_words(None) == "none (downloads run alone)"
    registering = _membership_json(MembershipState.starting(HUB))
    assert hub_words(registering) == f"registering with {HUB} (its first attempt is under way)"
    ok = _membership_json(MembershipState(registered=_registered(), hub_url=HUB))
    assert hub_words(ok) == f"registered with {HUB}"
    failed = _membership_json(
        MembershipState(registered=None, failures=1, error="403 [group_not_allowed]", hub_url=HUB)
    )
    # rich markup in an error is shown as text, not taken as markup
    assert hub_words(failed) == f"not registered with {HUB} (403 \\[group_not_allowed])"
    # an older node's status has no "state": its "registered" is all it tells
    assert hub_words({"registered": True, "hub_url": HUB}) == f"registered with {HUB}"
    old_failed = {"registered": False, "hub_url": HUB, "error": "refused"}
    assert hub_words(old_failed) == f"not registered with {HUB} (refused)"


def test_doctor_does_not_call_a_registering_node_hubless() -> None:
    check = node_hub_check(_membership_json(MembershipState.starting(HUB)))
    assert not check.ok
    assert check.detail == f"registering with {HUB}: its first attempt has not ended yet"
    assert "again" in (check.hint or "")
    assert not node_hub_check(None).ok
    assert "without a hub" in node_hub_check(None).detail
    assert node_hub_check(_membership_json(MembershipState(registered=_registered()))).ok


def test_an_old_node_without_a_state_is_read_by_registered() -> None:
    assert standing_of({"registered": True}) is HubStanding.REGISTERED
    assert standing_of({"registered": False}) is HubStanding.NOT_REGISTERED
    assert standing_of({"registered": "yes", "state": "odd"}) is HubStanding.NOT_REGISTERED


def test_the_portal_says_it_in_this_nodes_row() -> None:
    def last_seen(hub: object) -> str:
        return self_row({"node_id": "me", "hub": hub}, address="10.0.0.2:7401").last_seen

    assert last_seen(_membership_json(MembershipState(registered=_registered()))) == "now"
    registering = last_seen(_membership_json(MembershipState.starting(HUB)))
    assert registering == f"registering with {HUB} (its first attempt is under way)"
    failed = MembershipState(registered=None, failures=1, error="hub down", hub_url=HUB)
    assert last_seen(_membership_json(failed)) == f"not registered with {HUB} (hub down)"
    assert last_seen(None) == "none (downloads run alone)"
    assert last_seen("junk") == "none (downloads run alone)"  # not a mapping: no hub shown
