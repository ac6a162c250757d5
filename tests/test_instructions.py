"""Instructions: encoded once with the T5 encoder, cached in the released HDF5 layout; T5 tokenisation."""

import jax
import numpy as np
from flax import nnx

from uniflow_jax import instructions, nnx_utils, parallel, tasks
from uniflow_jax.frontends import text
from uniflow_jax.models import t5


def test_tokenizer_trained_offline_appends_eos(tmp_path):
    model_file = text.train_tokenizer(instructions.all_texts(), tmp_path / "spiece", 200)
    tokenizer = text.T5Tokenizer(model_file)
    ids = tokenizer.encode("Generate natural speech.")
    assert ids[-1] == text.EOS_ID and len(ids) > 2 and np.all(ids[:-1] > 1)
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "spiece.model").write_bytes(model_file.read_bytes())
    assert text.T5Tokenizer.from_folder(tmp_path / "folder").vocab_size == 200


def test_instruction_bank_round_trips_through_the_released_hdf5_layout(tmp_path):
    assert sum(len(v) for v in tasks.instructions().values()) == 70
    tokenizer = text.T5Tokenizer(text.train_tokenizer(instructions.all_texts(), tmp_path / "spiece", 200))
    cfg = t5.T5Config(vocab_size=200, d_model=16, d_kv=4, d_ff=32, num_layers=1, num_heads=4)
    mesh = parallel.make_mesh((1, 1, 1), jax.devices()[:1])
    graphdef, state = nnx_utils.create_sharded(lambda: t5.T5Encoder(cfg, rngs=nnx.Rngs(0)), mesh)
    encode = instructions.text_encoder(graphdef, state, tokenizer)
    bank = instructions.encode_all(encode)
    assert len(bank) == 70 and "text_to_speech_0" in bank and "video_to_audio_9" in bank
    first = tasks.instructions()["speech_enhancement"][3]
    np.testing.assert_allclose(bank["speech_enhancement_3"], encode([first])[0], rtol=1e-5, atol=1e-6)
    assert bank["speech_enhancement_3"].shape == (len(tokenizer.encode(first)), 16)
    instructions.write_h5(bank, tmp_path / "instructions" / "t5_embeddings.h5")
    loaded = instructions.read_h5(tmp_path / "instructions" / "t5_embeddings.h5")
    assert loaded.keys() == bank.keys()
    np.testing.assert_array_equal(instructions.select(loaded, "se", 3), bank["speech_enhancement_3"])
