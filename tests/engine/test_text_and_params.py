import pytest

from engine.errors import InvalidInput
from engine.params import SynthesisParams, chunk_schedule
from engine.settings import EngineSettings
from engine.text import check_text, split_pieces


def test_check_text_rejects_empty_and_too_long():
    with pytest.raises(InvalidInput) as exc:
        check_text("   \n ", 100)
    assert exc.value.field == "text" and "empty" in exc.value.reason
    with pytest.raises(InvalidInput) as exc:
        check_text("x" * 101, 100)
    assert exc.value.field == "text" and "101" in exc.value.reason and "100" in exc.value.reason
    assert check_text("  a   b ", 100) == "a b"


def test_split_pieces_keeps_sentences_whole_and_under_limit():
    text = "One two three. Four five six! Seven eight nine? Ten eleven twelve."
    pieces = split_pieces(text, 32)
    assert pieces == ["One two three. Four five six!", "Seven eight nine?", "Ten eleven twelve."]
    assert " ".join(pieces).split() == text.split()  # nothing lost, order kept


def test_split_pieces_cuts_an_overlong_sentence_at_commas_then_spaces():
    sentence = "alpha beta, gamma delta epsilon, " + "word " * 40 + "end."
    pieces = split_pieces(sentence, 50)
    assert all(len(p) <= 50 for p in pieces)
    assert " ".join(pieces).split() == sentence.split()


def test_chunk_schedule_grows_to_the_chunk_size():
    sched = chunk_schedule(12, 50)
    assert [next(sched) for _ in range(6)] == [12, 24, 48, 50, 50, 50]
    sched = chunk_schedule(80, 50)
    assert next(sched) == 50


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("exaggeration", 3.0),
        ("temperature", 0.0),
        ("cfg_weight", -0.1),
        ("chunk_size", 9),
        ("chunk_size", 201),
        ("min_p", 1.5),
        ("top_p", 0.0),
        ("repetition_penalty", 0.5),
        ("max_new_tokens", 0),
        ("seed", -1),
        ("temperature", float("nan")),
    ],
)
def test_params_out_of_range_name_the_field(field, value):
    with pytest.raises(InvalidInput) as exc:
        SynthesisParams(**{field: value}).validated()
    assert exc.value.field == field
    assert "between" in exc.value.reason


def test_params_in_range_pass():
    p = SynthesisParams(exaggeration=2.0, cfg_weight=0.0, chunk_size=10, seed=0)
    assert p.validated() is p


def test_settings_from_env_parses_types_and_rejects_garbage():
    s = EngineSettings.from_env({"CHATTERBOX_CHUNK_SIZE": "80", "CHATTERBOX_WATERMARK": "false"})
    assert s.chunk_size == 80 and s.watermark is False
    with pytest.raises(ValueError, match="CHATTERBOX_"):
        EngineSettings.from_env({"CHATTERBOX_CHUNK_SIZE": "lots"})


def test_flow_steps_default_to_upstreams_ten_and_stay_in_range():
    assert EngineSettings.from_env({}).flow_steps == 10
    assert EngineSettings.from_env({"CHATTERBOX_FLOW_STEPS": "2"}).flow_steps == 2
    for bad in ("0", "101"):
        with pytest.raises(ValueError, match=r"CHATTERBOX_FLOW_STEPS must be 1\.\.100"):
            EngineSettings.from_env({"CHATTERBOX_FLOW_STEPS": bad})
