"""English transcript → ARPAbet phones: the CMU dictionary, the letter-to-sound fallback, the original's pauses."""

import pytest

from uniflow_jax import resources
from uniflow_jax.frontends import g2p, symbols

PHONE_SET = set(resources.load_json("tts_phone_set.json"))


def test_dictionary_words_with_pauses_at_the_ends():
    assert g2p.phonemize("hello world") == ["<eps>", "HH", "AH0", "L", "OW1", "W", "ER1", "L", "D", "<eps>"]


def test_punctuation_is_a_pause_and_case_accents_and_curly_apostrophes_do_not_matter():
    phones = g2p.phonemize("Hello, World! Don’t   café?")
    assert phones == g2p.phonemize("hello , world ! don't cafe ?")
    assert phones.count("<eps>") == 4 and phones[-1] == "<eps>" and phones[-2] != "<eps>"  # no doubled end pause
    assert phones[phones.index("<eps>", 1) - 1] == "OW1"  # the comma's pause follows "hello"


def test_numbers_are_spelled_out():
    assert g2p.number_to_words("0") == "zero"
    assert g2p.number_to_words("1,234") == "one thousand two hundred thirty four"
    assert g2p.number_to_words("2000000") == "two million"
    assert g2p.number_to_words("3.05") == "three point zero five"
    assert g2p.number_to_words("007") == "zero zero seven"
    assert g2p.phonemize("3 cats") == g2p.phonemize("three cats")


def test_an_unknown_word_gets_rule_phones_from_the_set():
    assert "zyloph" not in g2p._dictionary()
    phones = g2p.phonemize("zyloph")[1:-1]
    assert phones == g2p.letter_to_sound("zyloph") == ["Z", "IH1", "L", "AA0", "F"]
    for word in ("flibbertigibbet", "quixotically", "knightwatch", "yoyogi", "cyprexa", "ae"):
        phones = g2p.letter_to_sound(word)
        assert phones and set(phones) <= PHONE_SET, (word, phones)
        assert sum(p.endswith("1") for p in phones) == 1, (word, phones)  # one primary stress
    assert g2p.letter_to_sound("kite") == ["K", "AY1", "T"]  # the silent e lengthens the vowel
    assert g2p.letter_to_sound("cell") == ["S", "EH1", "L"]  # soft c, one l
    assert g2p.letter_to_sound("zzz") == ["Z"]  # no vowel, no stress


def test_transcript_phones_map_to_ids_and_outsiders_to_spn():
    ids = symbols.tts_phone_ids(g2p.phonemize("Hello there."), oov="spn")
    assert ids[0] == ids[-1] == 0  # <eps> is id 0
    spn = symbols.tts_phone_ids(["spn"])[0]
    assert list(symbols.tts_phone_ids(["HH", "QQ1"], oov="spn")) == [36, spn]
    with pytest.raises(ValueError, match="unknown ARPAbet phone: QQ1"):
        symbols.tts_phone_ids(["HH", "QQ1"])


def test_a_transcript_without_words_is_an_error():
    with pytest.raises(ValueError, match="no English words"):
        g2p.phonemize("... 你好 !")
