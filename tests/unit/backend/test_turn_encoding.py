from webui_backend.api.turn_encoding import coalesce, event_dict, sse_frame
from webui_backend.schemas.events import ServerEventEnvelope
from webui_backend.services.turn_events import TurnDelta, TurnEvent, TurnFinished, TurnStarted


def test_encoded_events_match_the_documented_schemas() -> None:
    events: list[TurnEvent] = [
        TurnStarted(1, "fake", 12),
        TurnDelta(2, "héllo"),
        TurnFinished(3, "complete", "eos", 12, 1, 0.1, 2.0, 3.0),
        TurnFinished(4, "error", "error", error_code="runner_unavailable", error_message="down"),
    ]
    for event in events:
        encoded = event_dict("t1", event)
        parsed = ServerEventEnvelope.model_validate(encoded).root
        assert parsed.model_dump() == encoded


def test_coalesce_merges_runs_of_deltas_and_keeps_the_last_seq() -> None:
    batch: list[TurnEvent] = [
        TurnStarted(1, "m", 1),
        TurnDelta(2, "a"),
        TurnDelta(3, "b"),
        TurnDelta(4, "c"),
        TurnFinished(5, "complete", "eos"),
    ]
    out = list(coalesce("t", batch))
    assert [seq for seq, _ in out] == [1, 4, 5]
    assert out[1][1]["text"] == "abc"


def test_sse_frame_format() -> None:
    frame = sse_frame(7, {"type": "turn.delta", "text": "hi\nthere"})
    assert frame == b'id: 7\nevent: turn.delta\ndata: {"type":"turn.delta","text":"hi\\nthere"}\n\n'
