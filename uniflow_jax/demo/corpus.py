"""A small demo corpus for all seven tasks, synthesised offline, in the original manifest format.

Training, evaluation and the tests need data for every task without downloading data sets, so this module
builds it from the sounds of its sibling modules: speech (``speech``: espeak-ng when installed, else the numpy
formant synthesiser of ``synth``), noisy and band-limited copies, sound events and melodies with captions
(``sounds``), sung scores (``singing``) and videos whose flashes coincide with their sounds (``video``).
The same arguments give the same bytes. Layout (format: ``data/README.md``)::

    OUT/corpus.json                        what was built (engine, counts, seed, how durations were found)
    OUT/<split>/<task>/content.jsonl       split = train | val (held out), task = tts svs se sr v2a t2a t2m
    OUT/<split>/<task>/audio.jsonl         targets: wavs/<id>.wav (24 kHz mono, a multiple of 480 samples)
    OUT/spiece.model                       a caption tokenizer (SentencePiece, T5 ids) for models trained on it

    python -m uniflow_jax.demo.corpus --out demo_data
"""

from __future__ import annotations

import json
import pathlib
import shutil
from collections.abc import Callable, Iterator

import h5py
import numpy as np
from absl import app, flags
from scipy import signal
from tqdm import tqdm

from uniflow_jax import tasks
from uniflow_jax.demo.singing import sung_score
from uniflow_jax.demo.sounds import melody, sound_scene
from uniflow_jax.demo.speech import XVECTOR_DIM, Speech, sentence, xvector
from uniflow_jax.demo.speech import speech_engine as open_speech_engine
from uniflow_jax.demo.synth import VOWELS, normalise, resonators
from uniflow_jax.demo.video import VIDEO_CODEC, VIDEO_SIZE, video_scene, write_video
from uniflow_jax.frontends.audio import SAMPLE_RATE, write_audio
from uniflow_jax.frontends.symbols import tts_phone_ids
from uniflow_jax.frontends.text import train_tokenizer
from uniflow_jax.instructions import all_texts

SPLITS = ("train", "val")
TTS_GROUPS = ("phoneme", "phoneme_duration", "xvector")  # the original's HDF5 layout: <group>/<audio_id>

# ---------------------------------------------------------------------------------------------- tasks

Sample = tuple[dict, np.ndarray]  # (content row without the id, target audio)
Builder = Callable[[pathlib.Path, list[str], list[np.random.Generator], Speech], Iterator[Sample]]


def _tts(folder: pathlib.Path, ids: list[str], rngs: list[np.random.Generator], speech: Speech) -> Iterator[Sample]:
    entries = {}
    for key, rng in zip(ids, rngs, strict=True):
        utterance = speech.say(sentence(rng), int(rng.integers(len(speech.speakers))), rng)
        seconds = np.asarray(utterance.samples, np.float64) / SAMPLE_RATE
        entries[key] = (tts_phone_ids(utterance.phones), seconds.astype(np.float32), xvector(utterance.speaker))
        yield {"audio": "phonemes.h5", "text": utterance.text, "speaker": utterance.speaker}, utterance.audio
    with h5py.File(folder / "phonemes.h5", "w") as f:
        for key, (phones, durations, embedding) in entries.items():
            for group, data in zip(TTS_GROUPS, (phones, durations, embedding), strict=True):
                f.create_dataset(f"{group}/{key}", data=data)


_NOISES = ("white", "pink", "babble", "hum")


def _noise(kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """White, pink (1/f), babble-like (speech-shaped noise with syllabic modulation) or mains hum."""
    if kind == "white":
        return rng.standard_normal(n)
    if kind == "pink":
        spectrum = np.fft.rfft(rng.standard_normal(n))
        return np.fft.irfft(spectrum / np.sqrt(np.maximum(np.fft.rfftfreq(n, 1 / SAMPLE_RATE), 20.0)), n)
    t = np.arange(n) / SAMPLE_RATE
    if kind == "hum":
        mains = float(rng.choice([50.0, 60.0]))
        return sum(np.sin(2 * np.pi * k * mains * t) / k for k in range(1, 9)) + 0.05 * rng.standard_normal(n)
    talkers = []
    for _ in range(4):
        formants = VOWELS[str(rng.choice(list(VOWELS)))]
        voice = signal.sosfilt(resonators(formants, (150, 200, 250)), rng.standard_normal(n))
        syllables = np.sin(2 * np.pi * rng.uniform(3, 5) * t + rng.uniform(0, 2 * np.pi)) ** 2
        talkers.append(voice / np.std(voice) * syllables)
    return sum(talkers)


def _se(folder: pathlib.Path, ids: list[str], rngs: list[np.random.Generator], speech: Speech) -> Iterator[Sample]:
    for key, rng in zip(ids, rngs, strict=True):
        clean = speech.say(sentence(rng), int(rng.integers(len(speech.speakers))), rng).audio.astype(np.float64)
        kind, snr = str(rng.choice(_NOISES)), int(rng.choice([0, 5, 10, 15]))
        noise = _noise(kind, len(clean), rng)
        noise *= np.sqrt(np.mean(clean**2) / np.mean(noise**2) / 10 ** (snr / 10))
        noisy, clean = normalise(clean + noise, clean)
        write_audio(folder / "noisy" / f"{key}.wav", noisy)
        yield {"noisy_speech": f"noisy/{key}.wav", "noise": kind, "snr_db": snr}, clean


def _sr(folder: pathlib.Path, ids: list[str], rngs: list[np.random.Generator], speech: Speech) -> Iterator[Sample]:
    for key, rng in zip(ids, rngs, strict=True):
        if rng.random() < 0.5:
            source = "speech"
            full = speech.say(sentence(rng), int(rng.integers(len(speech.speakers))), rng).audio.astype(np.float64)
        else:
            source = "music"
            full = melody(rng, rng.uniform(1.5, 4.0))[0]
        cutoff = int(rng.integers(20, 41)) * 100
        low = signal.sosfiltfilt(signal.butter(8, cutoff, fs=SAMPLE_RATE, output="sos"), full)
        low, full = normalise(low, full)
        write_audio(folder / "low" / f"{key}.wav", low)
        yield {"low_sr_audio": f"low/{key}.wav", "source": source, "cutoff_hz": cutoff}, full


def _t2a(folder: pathlib.Path, ids: list[str], rngs: list[np.random.Generator], speech: Speech) -> Iterator[Sample]:
    for rng in rngs:
        audio, caption = sound_scene(rng)
        yield {"caption": caption}, normalise(audio)[0]


def _t2m(folder: pathlib.Path, ids: list[str], rngs: list[np.random.Generator], speech: Speech) -> Iterator[Sample]:
    for rng in rngs:
        audio, caption = melody(rng, 4.0)
        yield {"caption": caption}, normalise(audio)[0]


def _svs(folder: pathlib.Path, ids: list[str], rngs: list[np.random.Generator], speech: Speech) -> Iterator[Sample]:
    scores = {}
    for key, rng in zip(ids, rngs, strict=True):
        audio, scores[key] = sung_score(rng)
        yield {"midi": "score.json", "text": scores[key]["text"]}, normalise(audio)[0]
    lines = ",\n".join(f"{json.dumps(key)}: {json.dumps(score)}" for key, score in scores.items())
    (folder / "score.json").write_text("{\n" + lines + "\n}\n")  # one score per line


def _v2a(folder: pathlib.Path, ids: list[str], rngs: list[np.random.Generator], speech: Speech) -> Iterator[Sample]:
    for i, (key, rng) in enumerate(zip(ids, rngs, strict=True)):
        fps = (10, 25)[i % 2]
        audio, frames, events = video_scene(rng, fps)
        write_video(folder / "videos" / f"{key}.mp4", frames, fps)
        yield {"video": f"videos/{key}.mp4", "fps": fps, "events": events}, normalise(audio)[0]


BUILDERS: dict[str, Builder] = {"tts": _tts, "svs": _svs, "se": _se, "sr": _sr, "v2a": _v2a, "t2a": _t2a, "t2m": _t2m}


def _write_jsonl(path: pathlib.Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


def build(
    out: str | pathlib.Path, *, seed: int = 0, num_train: int = 64, num_val: int = 16, speech_engine: str = "auto"
) -> dict:
    """Writes the corpus under ``out`` (replacing an earlier demo corpus there) and returns its summary."""
    out = pathlib.Path(out)
    if out.exists() and any(out.iterdir()) and not (out / "corpus.json").exists():
        raise FileExistsError(f"{out} is not empty and holds no demo corpus: choose another --out")
    for split in SPLITS:
        shutil.rmtree(out / split, ignore_errors=True)
    counts = {"train": num_train, "val": num_val}
    bar = tqdm(total=len(BUILDERS) * sum(counts.values()), desc="demo corpus", unit="clip")
    with open_speech_engine(speech_engine) as speech, bar:
        summary = {
            "seed": seed,
            "sample_rate": SAMPLE_RATE,
            "counts": counts,
            "speech_engine": speech.name,
            "speech_synthesiser": speech.description,
            "speakers": list(speech.speakers),
            "tts_durations": speech.durations,
            "xvector": f"stand-in: a fixed unit-norm random {XVECTOR_DIM}-d vector per speaker (seeded by its name)",
            "video": {"codec": VIDEO_CODEC, "size": VIDEO_SIZE, "fps": [10, 25]},
            "seconds": {},
        }
        for split_index, split in enumerate(SPLITS):
            for task, builder in BUILDERS.items():
                folder = out / split / task
                folder.mkdir(parents=True)
                ids = [f"{task}_{split}_{i:04d}" for i in range(counts[split])]
                rngs = [np.random.default_rng([seed, tasks.index(task), split_index, i]) for i in range(len(ids))]
                contents, audios, samples = [], [], 0
                for key, (content, audio) in zip(ids, builder(folder, ids, rngs, speech), strict=True):
                    write_audio(folder / "wavs" / f"{key}.wav", audio)
                    contents.append({"audio_id": key, **content})
                    audios.append({"audio_id": key, "audio": f"wavs/{key}.wav"})
                    samples += len(audio)
                    bar.update()
                _write_jsonl(folder / "content.jsonl", contents)
                _write_jsonl(folder / "audio.jsonl", audios)
                summary["seconds"].setdefault(task, {})[split] = samples / SAMPLE_RATE
    _caption_tokenizer(out)
    (out / "corpus.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


TOKENIZER_VOCAB = 512


def _caption_tokenizer(out: pathlib.Path) -> pathlib.Path:
    """No Flan-T5 tokenizer can be downloaded here: one trained on the corpus's captions and the task
    instructions, the vocabulary that configs/demo.py's T5 embeds."""
    captions = [
        json.loads(line)["caption"]
        for path in sorted(out.glob("*/t2[am]/content.jsonl"))
        for line in path.read_text().splitlines()
    ]
    return train_tokenizer((captions + list(all_texts())) * 4, out / "spiece", TOKENIZER_VOCAB)


FLAGS = flags.FLAGS


def _define_flags() -> None:
    """Defined only when run as a program, so that importing this module adds no flags to another tool."""
    flags.DEFINE_string("out", None, "Folder to write the corpus to.", required=True)
    flags.DEFINE_integer("seed", 0, "Seed of every random draw.")
    flags.DEFINE_integer("num_train", 64, "Clips per task in the train split.")
    flags.DEFINE_integer("num_val", 16, "Clips per task in the held-out val split.")
    flags.DEFINE_enum("speech_engine", "auto", ["auto", "espeak", "numpy"], "auto: espeak-ng when installed.")


def main(argv: list[str]) -> None:
    del argv
    summary = build(
        FLAGS.out, seed=FLAGS.seed, num_train=FLAGS.num_train, num_val=FLAGS.num_val, speech_engine=FLAGS.speech_engine
    )
    print(f"wrote {FLAGS.out}: {summary['speech_synthesiser']} speech, {summary['counts']} clips per task")


if __name__ == "__main__":
    _define_flags()
    app.run(main)
