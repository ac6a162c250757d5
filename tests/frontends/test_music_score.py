"""SVS music scores (``lyrics<sep>notes<sep>durations``) → one phone, note, duration and slur flag per phone."""

import pytest

from uniflow_jax.frontends import score, symbols

TABLE = """| ni     | n i    |
| hao    | h ao   | a third column is ignored

wo | uo
"""


@pytest.fixture
def table(tmp_path):
    path = tmp_path / "m4singer_pinyin2ph.txt"
    path.write_text(TABLE, encoding="utf-8")
    return score.read_pinyin_table(path)


def test_the_table_format(table):
    assert table == {"AP": ["<AP>"], "SP": ["<SP>"], "ni": ["n", "i"], "hao": ["h", "ao"], "wo": ["uo"]}


def test_words_slurs_rests_breaths_and_dropped_punctuation(table):
    parsed = score.parse_music_score(
        "AP你好，我SP<sep>rest | C4 | D4 E4 | G#3/Ab3 | rest<sep>0.2|0.4|0.3 0.35|0.5|0.1", table
    )
    assert parsed.phones == ["<AP>", "n", "i", "h", "ao", "ao", "uo", "<SP>"]
    assert parsed.notes == ["rest", "C4", "C4", "D4", "D4", "E4", "G#3/Ab3", "rest"]
    assert parsed.durations == [0.2, 0.4, 0.4, 0.3, 0.3, 0.35, 0.5, 0.1]
    assert parsed.slurs == [0, 0, 0, 0, 0, 1, 0, 0]  # the second note of 好 holds its last phone
    assert [symbols.note_to_midi(n) for n in parsed.notes] == [0, 60, 60, 62, 62, 64, 56, 0]
    assert list(symbols.svs_phone_ids(parsed.phones)[:2]) == [3, 3 + 33]  # ids = 3 + index in the set: <AP> 0, n 33
    assert score.total_seconds("AP你<sep>rest | C4<sep>0.2 | 0.4 0.1") == pytest.approx(0.7)


@pytest.mark.parametrize(
    "music_score, message",
    [
        ("你好<sep>C4 | D4", "a music score is 'lyrics<sep>notes<sep>durations', got 2 part"),
        ("你好吗<sep>C4 | D4 | E4<sep>1 | 1 | 1", r"2 lyric word\(s\) but 3 note group\(s\).*dropped: ma"),
        ("你好<sep>C4 | D4 E4<sep>1 | 1", r"word 2: 2 note\(s\) but 1 duration\(s\)"),
        ("你<sep>C4<sep>long", "word 1: durations must be seconds, got 'long'"),
        ("。<sep><sep>", "no lyrics"),
    ],
)
def test_malformed_scores_are_explained(table, music_score, message):
    with pytest.raises(ValueError, match=message):
        score.parse_music_score(music_score, table)


def test_a_malformed_table_line_is_named(tmp_path):
    path = tmp_path / "table.txt"
    path.write_text("| ni | n i |\n| hao |\n", encoding="utf-8")
    with pytest.raises(ValueError, match=f"{path}:2: expected"):
        score.read_pinyin_table(path)
